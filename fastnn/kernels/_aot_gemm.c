/* fastnn's own float32 GEMM for AVX-512 and AVX2 CPUs: C = alpha op(A) op(B) + beta C, row-major.
 *
 * Why: the MLP's GEMMs are small (a batch of 16-256 rows times layers of 10-1024), where a BLAS library's
 * per-call work (argument checks, packing both operands, its thread hand-off) is a large share of the call, and
 * where NumPy's OpenBLAS may be running AVX2 kernels on an AVX-512 CPU (OPENBLAS_CORETYPE, or a build that does
 * not know the CPU). Measured per call, one thread, 2-vCPU AVX-512 EPYC (docs/performance.md, "fastnn's own
 * GEMM"): 1.5-2.2x OpenBLAS's Haswell kernels at the training step's shapes, on a par with its SkylakeX ones.
 * Its threads (below) are why a busy machine no longer slows every call.
 *
 * How: a register tile of MR rows x NR columns (AVX-512: 14 x 32 in 28 zmm accumulators; AVX2: 6 x 16 in 12 ymm),
 * accumulated over the whole of K (the step's K is at most a few thousand, and B's panel of NR columns stays in
 * L1/L2 for all row tiles); _aot_gemm_kernel.h holds the tiles, once per instruction set.
 * op(A) is never packed: each k broadcasts one element of op(A) per tile row, contiguous along k (A) or along the
 * rows (A^T); rows of A 4 KiB apart (one L1 set) go 8 at a time on AVX-512. Nor is op(B) = B of a narrow layer: each k
 * loads two vectors of B's row k. op(B) = B^T, and B whose rows lie PACK_LDB floats or more apart, are packed a
 * panel (KC x NR) at a time into a stack buffer. Column tails are masked loads and stores; row tails are tiles of
 * fewer rows, each its own unrolled copy. beta == 0 never reads C (NaN in C is ignored, as BLAS does).
 * Calls of 2M multiply-adds or more are shared among threads (below). Each tile is summed whole by one thread,
 * so results are the same bits whatever the thread count or the machine's load.
 *
 * The kernels call it through fastnn_sgemm (_aot_blas.c) when fastnn_aot_set_gemm enables it; everything else
 * goes to NumPy's OpenBLAS.
 *
 * fastnn_srows, the product of a few rows by W (the single-row predict), uses the same vectors whatever the GEMM:
 * below sgemm's reach (it packs all of W for one row), where the JIT's loop stored its outputs at every k.
 */
#include <stdint.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define KC 256 /* rows of a packed panel of op(B): 256 x 32 floats = 32 KiB on the stack */
#ifndef PACK_LDB
#define PACK_LDB 512 /* op(B) = B is packed from this leading dimension (floats) on */
#endif
#define ALIASED 1024 /* floats: rows of op(A) this far apart (4 KiB) map to one L1 set */
#define ROW_VECS 16  /* fastnn_srows: vectors of outputs per pass over a row (AVX2 128 columns, AVX-512 256) */

/* Rows of op(A) a multiple of 4 KiB apart share one of L1's 64 sets: 14 of them overflow its 12 ways at every k (a
 * 1024-wide layer's activations: 1.5x slower), so such A goes mr_aliased rows to a tile instead of mr. Each sum is
 * the same whichever rows share a tile, so this changes no bits. ars: the distance between rows of op(A), floats. */
static inline int tile_rows(int64_t ars, int mr, int mr_aliased) { return ars % ALIASED == 0 ? mr_aliased : mr; }

/* One call's work: panels of NR columns, cut into pieces of whole row tiles. */
typedef struct job job_t;
typedef struct {
    void (*piece)(const job_t *j, int64_t p, int64_t r0, int64_t r1); /* rows [r0, r1) of panel p */
    int nr, mr, mr_aliased;                                           /* a tile's columns and rows */
    /* 0, or the bytes of op(A) a row block spans: the rows of op(A) are then taken a block at a time through every
     * panel, so that the block stays in L2 while the panels pass (instead of op(A) streaming from L3 once per
     * panel). Which rows share a block changes no bits. */
    int64_t a_block;
    int pack_group; /* panels packed together when op(B) is packed: one piece's columns */
} kernel_t;
struct job {
    int ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    int64_t rows, chunks, panels; /* a piece's rows (whole tiles), the pieces of each panel, the panels */
    int64_t cols;                 /* a panel's columns: the kernel's nr, times its pack_group when op(B) is packed */
    float alpha, beta;
    const float *A, *B;
    float *C;
    const kernel_t *kernel;
};

/* Piece i of the job: in blocks of rows through every panel (kernel->a_block), else panel after panel. */
static void do_piece(const job_t *j, int64_t i)
{
    int64_t p = j->kernel->a_block ? i % j->panels : i / j->chunks;
    int64_t r0 = (j->kernel->a_block ? i / j->panels : i % j->chunks) * j->rows;
    j->kernel->piece(j, p, r0, r0 + j->rows < j->M ? r0 + j->rows : j->M);
}

/* The rows of a block: whole tiles of `unit` rows of op(A) (K long) spanning at most a_block bytes, at least one. */
static int64_t rows_in(int64_t a_block, int64_t K, int64_t unit)
{
    int64_t rows = a_block / (4 * (K > 1 ? K : 1)) / unit * unit;
    return rows < unit ? unit : rows;
}

/* The rows of a piece on one thread: a block of them, or all M without blocks or when op(B) is packed (a packed
 * panel is packed once, for all rows; the piece then blocks its rows itself). */
static int64_t block_rows(const kernel_t *kernel, int tb, int64_t ldb, int64_t M, int64_t K, int64_t unit)
{
    if (!kernel->a_block || tb || ldb >= PACK_LDB)
        return M;
    int64_t rows = rows_in(kernel->a_block, K, unit);
    return rows < M ? rows : M;
}

/* AVX-512: tiles of 14 rows x 32 columns, 28 zmm accumulators; masked loads and stores cost nothing extra. */
#define ISA __attribute__((target("avx512f")))
#define SFX(name) name##_avx512
#define VEC __m512
#define MASK __mmask16
#define VW 16
#define MR 14
#define MR_ALIASED 8
#define MASK_OF(rest) ((rest) >= 16 ? (__mmask16)0xFFFF : (rest) <= 0 ? (__mmask16)0 : (__mmask16)((1u << (rest)) - 1u))
#define LOAD(full, m, p) ((void)(full), _mm512_maskz_loadu_ps(m, p))
#define STORE(full, m, p, x) ((void)(full), _mm512_mask_storeu_ps(p, m, x))
#define ZERO() _mm512_setzero_ps()
#define SET1(x) _mm512_set1_ps(x)
#define MUL(a, b) _mm512_mul_ps(a, b)
#define FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define FULL_TILES 0
#define A_BLOCK 0
#define PACK_GROUP 1
#include "_aot_gemm_kernel.h"
#undef ISA
#undef SFX
#undef VEC
#undef MASK
#undef VW
#undef MR
#undef MR_ALIASED
#undef MASK_OF
#undef LOAD
#undef STORE
#undef ZERO
#undef SET1
#undef MUL
#undef FMADD
#undef FULL_TILES
#undef A_BLOCK
#undef PACK_GROUP

/* AVX2 + FMA: 16 ymm registers hold tiles of 6 rows x 16 columns (12 accumulators, two vectors of B, one of A).
 * Masked moves are slow here (vmaskmovps), so only a panel's tail uses them. Six rows stay within L1's ways
 * when they are 4 KiB apart. */
#define ISA __attribute__((target("avx2,fma")))
#define SFX(name) name##_avx2
#define VEC __m256
#define MASK __m256i
#define VW 8
#define MR 6
#define MR_ALIASED 6
#define MASK_OF(rest) _mm256_cmpgt_epi32(_mm256_set1_epi32(rest), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define LOAD(full, m, p) ((full) ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m))
#define STORE(full, m, p, x) ((full) ? _mm256_storeu_ps(p, x) : _mm256_maskstore_ps(p, m, x))
#define ZERO() _mm256_setzero_ps()
#define SET1(x) _mm256_set1_ps(x)
#define MUL(a, b) _mm256_mul_ps(a, b)
#define FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FULL_TILES 1
#define A_BLOCK (128 * 1024)
#define PACK_GROUP 4
#include "_aot_gemm_kernel.h"

/* -- Two threads or more --------------------------------------------------------------------------------------
 * The caller and sleeping helper threads share a call's pieces: each takes the next one from a shared ticket
 * until none is left, and the caller returns when every piece is done. A helper that the OS does not run soon
 * (another process on its core) takes nothing, and the caller does its share: the call is never slower than
 * on one thread by more than the one piece a helper may still be finishing. OpenBLAS's threads instead each own
 * a fixed share, which is how a busy machine made every call wait (docs/performance.md, "A busy machine").
 * Helpers sleep on a condition variable between calls (after a short spin, the calls of a training step come
 * back to back) and cost nothing while fastnn is idle. */
#define MAX_HELPERS 7
#define THREADED_MIN_WORK (1LL << 21) /* multiply-adds: below this, waking a helper costs more than it saves */
#define HELPER_SPIN_NS 50000          /* a helper polls this long for the next call before it sleeps */
#define SOLO_MIN_NS 2000000  /* after a stall, one thread for 2 ms, ... */
#define SOLO_MAX_NS 50000000 /* ... doubling up to 50 ms while stalls go on */
#define STALL_NS 20000       /* a wait this much longer than two of the caller's pieces counts as a stall */

static job_t job;
static _Atomic uint64_t ticket; /* generation (24 bits) | pieces (20) | next piece (20) */
static _Atomic int64_t done;    /* pieces finished in this generation */
static _Atomic int busy;        /* a call is using the helpers (another thread's call then runs alone) */
static _Atomic uint64_t posted; /* the generation helpers should work on */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int helpers; /* started so far */
/* A helper descheduled in the middle of a piece makes the caller wait for it: a busy machine, or another
 * library's threads spinning on the other core (OpenBLAS's spin ~80 ms after each of its threaded calls). After
 * such a wait the calls run on one thread for solo_ns; each further stall doubles that, a call the helpers served
 * promptly halves it. */
static int64_t solo_until, solo_ns = SOLO_MIN_NS;

#define T_GEN(t) ((t) >> 40)
#define T_PIECES(t) (((t) >> 20) & 0xFFFFF)
#define T_NEXT(t) ((t) & 0xFFFFF)

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Takes and does pieces of generation gen until none is left; returns how many. */
static int64_t take_pieces(uint64_t gen)
{
    int64_t taken = 0;
    for (;;) {
        uint64_t t = atomic_load_explicit(&ticket, memory_order_acquire);
        if (T_GEN(t) != gen || T_NEXT(t) >= T_PIECES(t))
            return taken;
        if (!atomic_compare_exchange_weak_explicit(&ticket, &t, t + 1, memory_order_acq_rel, memory_order_relaxed))
            continue;
        do_piece(&job, (int64_t)T_NEXT(t)); /* job is this generation's until every piece is done */
        atomic_fetch_add_explicit(&done, 1, memory_order_release);
        taken++;
    }
}

static void *helper(void *unused)
{
    (void)unused;
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = atomic_load_explicit(&posted, memory_order_acquire);
        for (int64_t start = now_ns(); gen == seen && now_ns() - start < HELPER_SPIN_NS;) {
            _mm_pause();
            gen = atomic_load_explicit(&posted, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&sleep_lock);
            while ((gen = atomic_load_explicit(&posted, memory_order_acquire)) == seen)
                pthread_cond_wait(&wake, &sleep_lock);
            pthread_mutex_unlock(&sleep_lock);
        }
        seen = gen;
        take_pieces(gen);
    }
    return NULL;
}

static void forget_helpers(void) { helpers = 0; } /* a forked child has none of its parent's threads */

static int start_helpers(int wanted)
{
    static int registered;
    if (!registered) {
        pthread_atfork(NULL, NULL, forget_helpers);
        registered = 1;
    }
    while (helpers < wanted) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, helper, NULL);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        helpers++;
    }
    return helpers < wanted ? helpers : wanted;
}

/* All of a job's pieces on this thread, in order. */
static void alone(const job_t *j)
{
    for (int64_t i = 0; i < j->chunks * j->panels; i++)
        do_piece(j, i);
}

static void sgemm(const kernel_t *kernel, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                  int threads)
{
    int packed = tb || ldb >= PACK_LDB;
    int64_t cols = packed ? (int64_t)kernel->nr * kernel->pack_group : kernel->nr;
    int64_t panels = (N + cols - 1) / cols;
    int64_t unit = tile_rows(ta ? 1 : lda, kernel->mr, kernel->mr_aliased);
    int64_t rows = block_rows(kernel, tb, ldb, M, K, unit);
    job_t one = {ta, tb, M, N, K, lda, ldb, ldc, rows, rows ? (M + rows - 1) / rows : 0, panels, cols, alpha, beta,
                 A, B, C, kernel};
    int expected = 0;
    if (threads < 2 || M * N * K < THREADED_MIN_WORK || M == 0 || panels == 0 ||
        !atomic_compare_exchange_strong(&busy, &expected, 1)) {
        alone(&one);
        return;
    }
    if (solo_until && now_ns() < solo_until) {
        alone(&one);
        atomic_store(&busy, 0);
        return;
    }
    int n_helpers = start_helpers(threads - 1 < MAX_HELPERS ? threads - 1 : MAX_HELPERS);
    /* pieces: about 4 per thread, of whole tiles of rows within a panel (and within a block) */
    int64_t per_panel = (4 * (n_helpers + 1) + panels - 1) / panels, tiles = (M + unit - 1) / unit;
    if (per_panel > tiles)
        per_panel = tiles;
    rows = ((tiles + per_panel - 1) / per_panel) * unit;
    one.rows = rows < one.rows ? rows : one.rows;
    one.chunks = (M + one.rows - 1) / one.rows;
    int64_t pieces = panels * one.chunks;
    if (n_helpers == 0 || pieces > 0xFFFFF) {
        alone(&one);
        atomic_store(&busy, 0);
        return;
    }
    job = one;
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    uint64_t gen = (T_GEN(atomic_load(&ticket)) + 1) & 0xFFFFFF;
    if (gen == 0)
        gen = 1; /* helpers start having seen generation 0 */
    atomic_store_explicit(&ticket, gen << 40 | (uint64_t)pieces << 20, memory_order_release);
    atomic_store_explicit(&posted, gen, memory_order_release);
    pthread_mutex_lock(&sleep_lock);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&sleep_lock);
    int64_t t0 = now_ns(), mine = take_pieces(gen), t1 = now_ns();
    /* a helper may still be finishing a piece; if it takes long, its core may be shared with us: yield it */
    for (int polls = 0; atomic_load_explicit(&done, memory_order_acquire) < pieces; polls++) {
        if (polls < 4096)
            _mm_pause();
        else
            sched_yield();
    }
    if (mine < pieces) { /* the helpers did some: how long did their last piece keep us? */
        int64_t waited = now_ns() - t1, piece_ns = mine ? (t1 - t0) / mine : 0;
        if (waited > 2 * piece_ns + STALL_NS) {
            solo_until = now_ns() + solo_ns;
            solo_ns = solo_ns * 2 < SOLO_MAX_NS ? solo_ns * 2 : SOLO_MAX_NS;
        } else if (solo_ns > SOLO_MIN_NS) {
            solo_ns /= 2;
        }
    }
    atomic_store_explicit(&busy, 0, memory_order_release);
}

/* The best instruction set this CPU runs fastnn's GEMM with: 3 (AVX-512), 2 (AVX2 and FMA) or 0 (neither). */
int fastnn_own_sgemm_available(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 3;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 2 : 0;
}

/* out[i, :] = b + sum_k X[i, k] W[k, :] for the M rows of X (row-major; ldx, ldw, ldo: the rows' distances in floats),
 * with the best set this CPU has; the single-row predict's product (numba_cpu._affine_rows). Returns 0, having done
 * nothing, on a CPU without AVX2 and FMA: the caller loops itself. */
int fastnn_srows(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const float *W, int64_t ldw,
                 const float *b, float *out, int64_t ldo)
{
    static _Atomic int level = -1;
    int set = atomic_load_explicit(&level, memory_order_relaxed);
    if (set < 0)
        atomic_store_explicit(&level, set = fastnn_own_sgemm_available(), memory_order_relaxed);
    if (set == 3)
        rows_avx512(M, N, K, X, ldx, W, ldw, b, out, ldo);
    else if (set == 2)
        rows_avx2(M, N, K, X, ldx, W, ldw, b, out, ldo);
    return set >= 2;
}

/* C = alpha op(A) op(B) + beta C with the kernels of set `level` (2 or 3; at most fastnn_own_sgemm_available()). */
void fastnn_own_sgemm(int level, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads)
{
    sgemm(level == 3 ? &kernel_avx512 : &kernel_avx2, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

#else /* not x86 with GCC or Clang: never enabled */

int fastnn_srows(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const float *W, int64_t ldw,
                 const float *b, float *out, int64_t ldo)
{
    (void)M, (void)N, (void)K, (void)X, (void)ldx, (void)W, (void)ldw, (void)b, (void)out, (void)ldo;
    return 0;
}

int fastnn_own_sgemm_available(void) { return 0; }

void fastnn_own_sgemm(int level, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads)
{
    (void)level, (void)threads, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B;
    (void)ldb, (void)beta;
    (void)C, (void)ldc;
}

#endif

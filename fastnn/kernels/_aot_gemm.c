/* fastnn's own float32 GEMM for AVX-512 CPUs: C = alpha op(A) op(B) + beta C, row-major.
 *
 * Why: the MLP's GEMMs are small (a batch of 16-256 rows times layers of 10-1024), where a BLAS library's
 * per-call work (argument checks, packing both operands, its thread hand-off) is a large share of the call, and
 * where NumPy's OpenBLAS may be running AVX2 kernels on an AVX-512 CPU (OPENBLAS_CORETYPE, or a build that does
 * not know the CPU). Measured per call, one thread, 2-vCPU AVX-512 EPYC (docs/performance.md, "fastnn's own
 * GEMM"): 1.5-2.2x OpenBLAS's Haswell kernels at the training step's shapes, on a par with its SkylakeX ones.
 *
 * How: a register tile of MR rows x NR = 32 columns (28 zmm accumulators), accumulated over the whole of K
 * (the step's K is at most a few thousand, and B's 32-column panel stays in L1/L2 for all row tiles).
 * op(A) is never packed: each k broadcasts one element of op(A) per tile row, contiguous along k (A) or along the
 * rows (A^T); rows of A 4 KiB apart (one L1 set) go 8 at a time. Nor is op(B) = B of a narrow layer: each k
 * loads two vectors of B's row k. op(B) = B^T, and B whose rows lie PACK_LDB floats or more apart, are packed a
 * panel (KC x 32) at a time into a stack buffer. Column tails are masked loads and stores; row tails are tiles of
 * fewer rows, each its own unrolled copy. beta == 0 never reads C (NaN in C is ignored, as BLAS does).
 * Calls of 2M multiply-adds or more are shared among threads (below). Each tile is summed whole by one thread,
 * so results are the same bits whatever the thread count or the machine's load.
 *
 * The kernels call it through fastnn_sgemm (_aot_blas.c) when fastnn_aot_set_gemm enables it; everything else
 * goes to NumPy's OpenBLAS.
 */
#include <stdint.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define MR 14
#define NV 2
#define NR (16 * NV)
#define KC 256        /* rows of a packed panel of op(B): 256 x 32 floats = 32 KiB on the stack */
#ifndef PACK_LDB
#define PACK_LDB 512 /* op(B) = B is packed from this leading dimension (floats) on */
#endif
#define ALIASED 1024  /* floats: rows of op(A) this far apart (4 KiB) map to one L1 set, ... */
#define MR_ALIASED 8  /* ... so they go in tiles of this many rows */
#define AVX512 __attribute__((target("avx512f")))

/* One tile: C[0:mr, 0:nn] = alpha * sum_k a(r, k) b[k, :] (+ beta C). a(r, k) = a[r * ars + k * aks]. */
AVX512 __attribute__((always_inline)) static inline void tile(const int mr, int64_t K, const float *a, int64_t ars,
                                                                int64_t aks, const float *b, int64_t ldb, float *c,
                                                                int64_t ldc, int nn, float alpha, float beta)
{
    __m512 acc[MR][NV];
    __mmask16 mask[NV];
    for (int v = 0; v < NV; v++) {
        int rest = nn - 16 * v;
        mask[v] = rest >= 16 ? (__mmask16)0xFFFF : rest <= 0 ? (__mmask16)0 : (__mmask16)((1u << rest) - 1u);
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = _mm512_maskz_loadu_ps(mask[v], b + k * ldb + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(a[r * ars + k * aks]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float *cp = c + r * ldc + 16 * v;
            __m512 x = _mm512_mul_ps(al, acc[r][v]);
            if (beta != 0.0f)
                x = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(mask[v], cp), x);
            _mm512_mask_storeu_ps(cp, mask[v], x);
        }
}

#define TILE(m)                                                                                                   \
    case m:                                                                                                       \
        tile(m, K, a, ars, aks, b, ldb, c, ldc, nn, alpha, beta);                                                 \
        break;

/* Rows of op(A) a multiple of 4 KiB apart share one of L1's 64 sets: a tile's 14 overflow its 12 ways at every k
 * (a 1024-wide layer's activations: 1.5x slower). Such A goes 8 rows at a time. Each sum is the same whichever
 * rows share a tile, so this changes no bits. ars: the distance between rows of op(A), in floats. */
static inline int tile_rows(int64_t ars) { return ars % ALIASED == 0 ? MR_ALIASED : MR; }

/* The row tiles of one 32-column panel (b: its first column; c: C's). */
AVX512 static void panel(int64_t M, int64_t K, const float *A, int64_t ars, int64_t aks, const float *b, int64_t ldb,
                         float *C, int64_t ldc, int nn, float alpha, float beta)
{
    const int rows = tile_rows(ars);
    for (int64_t i0 = 0; i0 < M; i0 += rows) {
        int mr = M - i0 < rows ? (int)(M - i0) : rows;
        const float *a = A + i0 * ars;
        float *c = C + i0 * ldc;
        switch (mr) {
            TILE(1) TILE(2) TILE(3) TILE(4) TILE(5) TILE(6) TILE(7) TILE(8) TILE(9) TILE(10) TILE(11) TILE(12)
            TILE(13) TILE(14)
        }
    }
}

/* One piece of the work: rows [r0, r1) of the 32-column panel p. */
typedef struct {
    int ta, tb;
    int64_t M, N, K, lda, ldb, ldc, rows; /* rows: of each piece (whole tiles) */
    float alpha, beta;
    const float *A, *B;
    float *C;
} job_t;

AVX512 static void piece(const job_t *j, int64_t p, int64_t r0, int64_t r1)
{
    int64_t ars = j->ta ? 1 : j->lda, aks = j->ta ? j->lda : 1, j0 = p * NR, K = j->K;
    int nn = j->N - j0 < NR ? (int)(j->N - j0) : NR;
    const float *A = j->A + r0 * ars;
    float *C = j->C + r0 * j->ldc + j0;
    if (!j->tb && j->ldb < PACK_LDB) {
        panel(r1 - r0, K, A, ars, aks, j->B + j0, j->ldb, C, j->ldc, nn, j->alpha, j->beta);
        return;
    }
    /* Packed: the panel's columns of op(B), KC rows of K at a time, contiguous. op(B) = B^T (B is N x K, its rows
     * j0.. are the panel's columns) always; op(B) = B when its rows lie so far apart that each k of a tile would
     * touch another page. The first chunk takes the caller's beta, the rest add to C: per tile, the same sums in
     * the same order however the work is split. */
    float packed[KC * NR] __attribute__((aligned(64)));
    for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += KC) {
        int64_t kc = K - k0 < KC ? K - k0 : KC;
        if (j->tb) {
            for (int jj = 0; jj < nn; jj++) {
                const float *row = j->B + (j0 + jj) * j->ldb + k0;
                for (int64_t k = 0; k < kc; k++)
                    packed[k * NR + jj] = row[k];
            }
        } else {
            for (int64_t k = 0; k < kc; k++) {
                const float *row = j->B + (k0 + k) * j->ldb + j0;
                for (int jj = 0; jj < nn; jj++)
                    packed[k * NR + jj] = row[jj];
            }
        }
        panel(r1 - r0, kc, A + k0 * aks, ars, aks, packed, NR, C, j->ldc, nn, j->alpha, k0 == 0 ? j->beta : 1.0f);
    }
}

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
        /* piece T_NEXT(t) of generation gen: job is that generation's until every piece is done */
        int64_t per_panel = (job.M + job.rows - 1) / job.rows, i = (int64_t)T_NEXT(t);
        int64_t r0 = (i % per_panel) * job.rows, r1 = r0 + job.rows < job.M ? r0 + job.rows : job.M;
        piece(&job, i / per_panel, r0, r1);
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

AVX512 static void sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                                int threads)
{
    job_t one = {ta, tb, M, N, K, lda, ldb, ldc, M, alpha, beta, A, B, C};
    int64_t panels = (N + NR - 1) / NR;
    int expected = 0;
    if (threads < 2 || M * N * K < THREADED_MIN_WORK || M == 0 || panels == 0 ||
        !atomic_compare_exchange_strong(&busy, &expected, 1)) {
        for (int64_t p = 0; p < panels; p++)
            piece(&one, p, 0, M);
        return;
    }
    if (solo_until && now_ns() < solo_until) {
        for (int64_t p = 0; p < panels; p++)
            piece(&one, p, 0, M);
        atomic_store(&busy, 0);
        return;
    }
    int n_helpers = start_helpers(threads - 1 < MAX_HELPERS ? threads - 1 : MAX_HELPERS);
    /* pieces: about 4 per thread, of whole tiles of rows within a panel */
    int64_t unit = tile_rows(ta ? 1 : lda);
    int64_t per_panel = (4 * (n_helpers + 1) + panels - 1) / panels, tiles = (M + unit - 1) / unit;
    if (per_panel > tiles)
        per_panel = tiles;
    one.rows = ((tiles + per_panel - 1) / per_panel) * unit;
    per_panel = (M + one.rows - 1) / one.rows;
    int64_t pieces = panels * per_panel;
    if (n_helpers == 0 || pieces > 0xFFFFF) {
        for (int64_t p = 0; p < panels; p++)
            piece(&one, p, 0, M);
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

int fastnn_own_sgemm_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

void fastnn_own_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads)
{
    sgemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

#else /* not x86 with GCC or Clang: never enabled */

int fastnn_own_sgemm_available(void) { return 0; }

void fastnn_own_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads)
{
    (void)threads, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B;
    (void)ldb, (void)beta;
    (void)C, (void)ldc;
}

#endif

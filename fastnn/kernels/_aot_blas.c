/* The GEMM of the ahead-of-time kernels (fastnn.kernels.aot).
 *
 * The compiled kernels call fastnn_sgemm / fastnn_dgemm by name, as under the JIT, where the names are
 * registered with LLVM (fastnn/kernels/_blas.py). Here they are defined in the extension itself and forward
 * to NumPy's ILP64 cblas_?gemm, whose addresses fastnn.kernels.aot.load() hands over at import, before any
 * kernel runs -- or, for float32 when load() enables it, to fastnn's own GEMM (_aot_gemm.c). Signatures:
 * fastnn.kernels._blas.gemm_sig.
 */
#include <stddef.h>
#include <stdint.h>

typedef void (*sgemm_t)(int32_t, int32_t, int32_t, int64_t, int64_t, int64_t, float, const void *, int64_t,
                        const void *, int64_t, float, void *, int64_t);
typedef void (*dgemm_t)(int32_t, int32_t, int32_t, int64_t, int64_t, int64_t, double, const void *, int64_t,
                        const void *, int64_t, double, void *, int64_t);

static sgemm_t sgemm_ptr;
static dgemm_t dgemm_ptr;
static int (*blas_threads)(void); /* the BLAS's thread count now (openblas_get_num_threads), or NULL */
static int own_sgemm;             /* float32 GEMMs to fastnn_own_sgemm with this instruction set (0: none) */

int fastnn_own_sgemm_available(void);
void fastnn_own_sgemm(int level, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads);

/* Sets the BLAS's GEMMs (and its thread-count query, may be NULL) and which of fastnn's own float32 GEMMs to take:
 * 0 none; 3 the AVX-512 one where the CPU has AVX-512 (FASTNN_GEMM=auto: on AVX2 CPUs OpenBLAS's kernels measured
 * faster); 2 the AVX2 one (FASTNN_GEMM=avx2). Returns the one taken (0: the BLAS's). */
int fastnn_aot_set_gemm(void *sgemm, void *dgemm, void *get_threads, int own)
{
    sgemm_ptr = (sgemm_t)sgemm;
    dgemm_ptr = (dgemm_t)dgemm;
    blas_threads = (int (*)(void))get_threads;
    int best = fastnn_own_sgemm_available();
    own_sgemm = own == 3 ? (best == 3 ? 3 : 0) : own == 2 && best >= 2 ? 2 : 0;
    return own_sgemm;
}

enum { ROW_MAJOR = 101, TRANS = 112 };

void fastnn_sgemm(int32_t order, int32_t ta, int32_t tb, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
                  int64_t lda, const void *b, int64_t ldb, float beta, void *c, int64_t ldc)
{
    /* fastnn's GEMM takes as many threads as the BLAS is allowed now: fastnn's thread rule and the user's limits
     * (threadpoolctl, OPENBLAS_NUM_THREADS) set that number, and it follows. */
    if (own_sgemm && order == ROW_MAJOR)
        fastnn_own_sgemm(own_sgemm, ta == TRANS, tb == TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                         blas_threads ? blas_threads() : 1);
    else
        sgemm_ptr(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void fastnn_dgemm(int32_t order, int32_t ta, int32_t tb, int64_t m, int64_t n, int64_t k, double alpha, const void *a,
                  int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc)
{
    dgemm_ptr(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Numba's runtime (nrt.cpp, linked into the same extension by pycc) counts its allocations when asked: the
 * tests check through these that a training step allocates nothing per batch. */
void NRT_MemSys_enable_stats(void);
size_t NRT_MemSys_stats_enabled(void);
size_t NRT_MemSys_get_stats_alloc(void);

/* Turns the counting on; returns whether it is on. */
size_t fastnn_aot_count_allocations(void)
{
    NRT_MemSys_enable_stats();
    return NRT_MemSys_stats_enabled();
}

size_t fastnn_aot_allocations(void)
{
    return NRT_MemSys_get_stats_alloc();
}

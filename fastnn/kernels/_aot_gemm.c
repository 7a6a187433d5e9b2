/* fastnn's own float32 GEMM for AVX-512 CPUs: C = alpha op(A) op(B) + beta C, row-major, one thread.
 *
 * Why: the MLP's GEMMs are small (a batch of 16-256 rows times layers of 10-1024), where a BLAS library's
 * per-call work (argument checks, packing both operands, its thread hand-off) is a large share of the call, and
 * where NumPy's OpenBLAS may be running AVX2 kernels on an AVX-512 CPU (OPENBLAS_CORETYPE, or a build that does
 * not know the CPU). Measured per call, one thread, 2-vCPU AVX-512 EPYC (docs/performance.md, "fastnn's own
 * GEMM"): 1.5-2.2x OpenBLAS's Haswell kernels at the training step's shapes, on a par with its SkylakeX ones.
 *
 * How: a register tile of MR rows x NR = 32 columns (28 zmm accumulators), accumulated over the whole of K
 * (the step's K is at most a few thousand, and B's 32-column panel stays in L1/L2 for all row tiles).
 * Neither operand is packed when op(B) = B: each k loads two vectors of B's row k and broadcasts one element of
 * op(A) per tile row, which is contiguous along k (A) or along the rows (A^T). op(B) = B^T is packed a panel
 * (KC x 32) at a time into a stack buffer. Column tails are masked loads and stores; row tails are tiles of fewer
 * rows, each its own unrolled copy. beta == 0 never reads C (NaN in C is ignored, as BLAS does).
 * Results are deterministic: the sums run in the same order whatever the thread count or the machine's load.
 *
 * The kernels call it through fastnn_sgemm (_aot_blas.c) when fastnn_aot_set_gemm enables it; everything else
 * goes to NumPy's OpenBLAS.
 */
#include <stdint.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

#define MR 14
#define NV 2
#define NR (16 * NV)
#define KC 256 /* rows of a packed B^T panel: 256 x 32 floats = 32 KiB on the stack */
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

/* The row tiles of one 32-column panel (b: its first column; c: C's). */
AVX512 static void panel(int64_t M, int64_t K, const float *A, int64_t ars, int64_t aks, const float *b, int64_t ldb,
                         float *C, int64_t ldc, int nn, float alpha, float beta)
{
    for (int64_t i0 = 0; i0 < M; i0 += MR) {
        int mr = M - i0 < MR ? (int)(M - i0) : MR;
        const float *a = A + i0 * ars;
        float *c = C + i0 * ldc;
        switch (mr) {
            TILE(1) TILE(2) TILE(3) TILE(4) TILE(5) TILE(6) TILE(7) TILE(8) TILE(9) TILE(10) TILE(11) TILE(12)
            TILE(13) TILE(14)
        }
    }
}

AVX512 static void sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    int64_t ars = ta ? 1 : lda, aks = ta ? lda : 1;
    float packed[KC * NR] __attribute__((aligned(64)));
    for (int64_t j0 = 0; j0 < N; j0 += NR) {
        int nn = N - j0 < NR ? (int)(N - j0) : NR;
        if (!tb) {
            panel(M, K, A, ars, aks, B + j0, ldb, C + j0, ldc, nn, alpha, beta);
            continue;
        }
        /* op(B) = B^T: B is N x K; its rows j0.. are this panel's columns. K in chunks of KC, the first with the
         * caller's beta, the rest adding to C. */
        for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            for (int jj = 0; jj < nn; jj++) {
                const float *row = B + (j0 + jj) * ldb + k0;
                for (int64_t k = 0; k < kc; k++)
                    packed[k * NR + jj] = row[k];
            }
            panel(M, kc, A + k0 * aks, ars, aks, packed, NR, C + j0, ldc, nn, alpha, k0 == 0 ? beta : 1.0f);
        }
    }
}

int fastnn_own_sgemm_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

void fastnn_own_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    sgemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#else /* not x86 with GCC or Clang: never enabled */

int fastnn_own_sgemm_available(void) { return 0; }

void fastnn_own_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb, (void)beta;
    (void)C, (void)ldc;
}

#endif

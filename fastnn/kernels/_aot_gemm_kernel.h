/* One instruction set's tiles, panels and pieces of fastnn's GEMM, and its product of a few rows (_aot_gemm.c
 * includes this once per set).
 *
 * Before including, the includer defines:
 *   ISA          the functions' target attribute, e.g. __attribute__((target("avx512f")))
 *   SFX(name)    name with the set's suffix (tile_avx512, ...)
 *   VEC, MASK    the vector type and the type of a column mask
 *   VW, MR, MR_ALIASED   floats per vector; rows per tile; rows per tile when op(A)'s rows are 4 KiB apart
 *   MASK_OF(rest)        the mask of the first min(rest, VW) lanes (rest may be <= 0: no lane)
 *   LOAD(full, m, p), STORE(full, m, p, x)   a vector from / to p, all lanes when full, else the lanes of m
 *   ZERO(), SET1(x), MUL(a, b), FMADD(a, b, c)
 *   A_BLOCK      kernel_t's a_block: 0, or the bytes of op(A) a row block may span
 *   PACK_GROUP   sub-panels of NR_ columns packed together (1: one), each chunk of op(B) packed once for them all
 *   FULL_TILES   1: full-width tiles get their own copy with plain loads and stores (where masked ones cost more)
 * ROW_VECS (the accumulators of fastnn_srows' pass over a row, at most 16) is set once for both.
 * Every output element is the same sum in the same order (k ascending, one fused multiply-add per k, then alpha,
 * then beta C) whatever the set, so both sets give the same bits.
 */
#define NV 2           /* vectors per tile row */
#define NR_ (VW * NV) /* columns of a tile and of a panel */

/* One tile: C[0:mr, 0:nn] = alpha * sum_k a(r, k) b[k, :] (+ beta C). a(r, k) = a[r * ars + k * aks]. full: nn is
 * the whole NR_ columns (plain loads and stores; masked ones only for a panel's tail). */
ISA __attribute__((always_inline)) static inline void SFX(tile)(const int mr, const int full, int64_t K,
                                                               const float *a, int64_t ars, int64_t aks,
                                                               const float *b, int64_t ldb, float *c, int64_t ldc,
                                                               int nn, float alpha, float beta)
{
    VEC acc[MR][NV];
    MASK mask[NV];
    for (int v = 0; v < NV; v++)
        mask[v] = MASK_OF(nn - VW * v);
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = ZERO();
    for (int64_t k = 0; k < K; k++) {
        VEC bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = LOAD(full, mask[v], b + k * ldb + VW * v);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            VEC av = SET1(a[r * ars + k * aks]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = FMADD(av, bv[v], acc[r][v]);
        }
    }
    VEC al = SET1(alpha), be = SET1(beta);
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float *cp = c + r * ldc + VW * v;
            VEC x = MUL(al, acc[r][v]);
            if (beta != 0.0f)
                x = FMADD(be, LOAD(full, mask[v], cp), x);
            STORE(full, mask[v], cp, x);
        }
}

/* The row tiles of one panel (b: its first column; c: C's), of tile_rows() rows. */
ISA static void SFX(panel)(int64_t M, int64_t K, const float *A, int64_t ars, int64_t aks, const float *b,
                           int64_t ldb, float *C, int64_t ldc, int nn, float alpha, float beta)
{
    const int rows = tile_rows(ars, MR, MR_ALIASED);
    for (int64_t i0 = 0; i0 < M; i0 += rows) {
        int mr = M - i0 < rows ? (int)(M - i0) : rows;
        const float *a = A + i0 * ars;
        float *c = C + i0 * ldc;
#define TILE(m)                                                                                                       \
    case m:                                                                                                           \
        if (FULL_TILES && nn == NR_)                                                                                  \
            SFX(tile)(m, 1, K, a, ars, aks, b, ldb, c, ldc, nn, alpha, beta);                                         \
        else                                                                                                          \
            SFX(tile)(m, 0, K, a, ars, aks, b, ldb, c, ldc, nn, alpha, beta);                                         \
        break;
        switch (mr) {
            TILE(1) TILE(2) TILE(3) TILE(4) TILE(5) TILE(6)
#if MR > 6
            TILE(7) TILE(8) TILE(9) TILE(10) TILE(11) TILE(12) TILE(13) TILE(14)
#endif
        }
#undef TILE
    }
}

/* Rows [r0, r1) of panel p: NR_ columns, or PACK_GROUP * NR_ when op(B) is packed (j->cols). */
ISA static void SFX(piece)(const job_t *j, int64_t p, int64_t r0, int64_t r1)
{
    int64_t ars = j->ta ? 1 : j->lda, aks = j->ta ? j->lda : 1, j0 = p * j->cols, K = j->K;
    int ncols = j->N - j0 < j->cols ? (int)(j->N - j0) : (int)j->cols;
    const float *A = j->A + r0 * ars;
    float *C = j->C + r0 * j->ldc + j0;
    if (!j->tb && j->ldb < PACK_LDB) {
        SFX(panel)(r1 - r0, K, A, ars, aks, j->B + j0, j->ldb, C, j->ldc, ncols, j->alpha, j->beta);
        return;
    }
    /* Packed: the columns of op(B), KC rows of K at a time, contiguous, NR_ columns to a sub-panel. op(B) = B^T (B
     * is N x K, its rows j0.. are the columns) always; op(B) = B when its rows lie so far apart that each k of a
     * tile would touch another page. The first chunk takes the caller's beta, the rest add to C: per tile, the same
     * sums in the same order however the work is split. With several sub-panels (PACK_GROUP), the rows go through
     * them a block at a time (A_BLOCK bytes of op(A)): the block stays in L2 for all of them. */
    float packed[PACK_GROUP][KC * NR_] __attribute__((aligned(64)));
    int subs = (ncols + NR_ - 1) / NR_;
    for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += KC) {
        int64_t kc = K - k0 < KC ? K - k0 : KC;
        for (int q = 0; q < subs; q++) {
            int c0 = q * NR_, nn = ncols - c0 < NR_ ? ncols - c0 : NR_;
            if (j->tb) {
                for (int jj = 0; jj < nn; jj++) {
                    const float *row = j->B + (j0 + c0 + jj) * j->ldb + k0;
                    for (int64_t k = 0; k < kc; k++)
                        packed[q][k * NR_ + jj] = row[k];
                }
            } else {
                for (int64_t k = 0; k < kc; k++) {
                    const float *row = j->B + (k0 + k) * j->ldb + j0 + c0;
                    for (int jj = 0; jj < nn; jj++)
                        packed[q][k * NR_ + jj] = row[jj];
                }
            }
        }
        int64_t block = subs > 1 && A_BLOCK ? rows_in(A_BLOCK, kc, tile_rows(ars, MR, MR_ALIASED)) : r1 - r0;
        for (int64_t b0 = 0; b0 < r1 - r0; b0 += block) {
            int64_t rows = r1 - r0 - b0 < block ? r1 - r0 - b0 : block;
            const float *a = A + b0 * ars + k0 * aks;
            for (int q = 0; q < subs; q++) {
                int c0 = q * NR_, nn = ncols - c0 < NR_ ? ncols - c0 : NR_;
                SFX(panel)(rows, kc, a, ars, aks, packed[q], NR_, C + b0 * j->ldc + c0, j->ldc, nn, j->alpha,
                           k0 == 0 ? j->beta : 1.0f);
            }
        }
    }
}

/* -- A few rows (fastnn_srows): out[i, :] = b + sum_k x[i, k] W[k, :] ---------------------------------------------
 * The single-row predict's product: W is read once per row, in storage order, while the row's outputs stay in
 * ROW_VECS accumulators for the whole of K (the JIT's loop, numba_cpu._affine_rows_loop, loads and stores them at
 * every k). Rows of W that meet a zero input are skipped, as there (a branch per input: a list of the nonzero ones,
 * made without branches, measured no faster on real images). Per output the same fused multiply-adds in the
 * same order (k ascending, starting from b), so the same bits as that loop and on either set. */

/* One pass over a row of x for nv vectors of outputs (the last one masked to `rest` lanes, 1..VW). */
ISA __attribute__((always_inline)) static inline void SFX(row_pass)(const int nv, int64_t K, const float *x,
                                                                   const float *w, int64_t ldw, const float *b,
                                                                   float *out, int rest)
{
    VEC acc[ROW_VECS];
    MASK last = MASK_OF(rest);
#pragma GCC unroll 16
    for (int v = 0; v < nv; v++)
        acc[v] = LOAD(v < nv - 1, last, b + VW * v);
    for (int64_t k = 0; k < K; k++, w += ldw) {
        float xk = x[k];
        if (xk != 0.0f) { /* NaN is not zero: it reaches every output, as in the loop */
            VEC s = SET1(xk);
#pragma GCC unroll 16
            for (int v = 0; v < nv; v++)
                acc[v] = FMADD(s, LOAD(v < nv - 1, last, w + VW * v), acc[v]);
        }
    }
#pragma GCC unroll 16
    for (int v = 0; v < nv; v++)
        STORE(v < nv - 1, last, out + VW * v, acc[v]);
}

ISA static void SFX(rows)(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const float *W, int64_t ldw,
                          const float *b, float *out, int64_t ldo)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j0 = 0; j0 < N; j0 += ROW_VECS * VW) {
            int cols = N - j0 < ROW_VECS * VW ? (int)(N - j0) : ROW_VECS * VW;
            int nv = (cols + VW - 1) / VW, rest = cols - (nv - 1) * VW;
            const float *x = X + i * ldx;
            float *o = out + i * ldo + j0;
#define PASS(n)                                                                                                       \
    case n:                                                                                                           \
        SFX(row_pass)(n, K, x, W + j0, ldw, b + j0, o, rest);                                                         \
        break;
            switch (nv) {
                PASS(1) PASS(2) PASS(3) PASS(4) PASS(5) PASS(6) PASS(7) PASS(8)
                PASS(9) PASS(10) PASS(11) PASS(12) PASS(13) PASS(14) PASS(15) PASS(16)
            }
#undef PASS
        }
}

static const kernel_t SFX(kernel) = {SFX(piece), NR_, MR, MR_ALIASED, A_BLOCK, PACK_GROUP};

#undef NV
#undef NR_

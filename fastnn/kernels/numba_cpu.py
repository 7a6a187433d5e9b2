"""Numba-compiled kernels: the same names and signatures as :mod:`numpy_ref`.

Each function only loops over the arrays it is given and writes into the
caller's buffers. Matrix products go through NumPy's OpenBLAS (:func:`._blas.gemm`); the
loops around them fuse what NumPy does in several passes (bias + activation, the
softmax-NLL gradient, optimizer updates). Reductions accumulate in float64
(``acc = 0.0`` is a float64 in Numba); stores cast back to the buffer dtype.
"""
import math

import numpy as np
from numba import carray
from llvmlite import ir
from numba.core import cgutils
from numba.core import types as nbtypes
from numba.extending import intrinsic

from fastnn._config import FAST_FLAGS, jit
from fastnn.kernels._blas import gemm as _gemm
from fastnn.kernels._blas import srows as _srows
from fastnn.kernels.codes import ELU, GELU, LEAKY_RELU, P_B, P_W, RELU, SIGMOID, TANH
from fastnn.kernels.numba_losses import (_sigmoid, _softmax_row, bce, bce_logits, mse, nll_dense, nll_labels,  # noqa: F401
                                         poisson, softmax_xent_dense, softmax_xent_labels)
from fastnn.kernels.numba_optim import adam_update, clip_grad_norm, sgd_update  # noqa: F401

__all__ = ["matmul", "linear_forward", "linear_backward", "linear_backward_sgd", "relu_forward", "relu_backward",
           "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward", "softmax_forward",
           "softmax_backward", "dropout", "softmax_xent_labels", "softmax_xent_dense", "nll_labels", "nll_dense",
           "mse", "bce_logits", "bce", "poisson", "clip_grad_norm", "sgd_update", "adam_update", "activation_forward",
           "act_backward", "mlp_forward"]

# fastnn_srows fuses each multiply-add, as _affine_rows_loop does only under the fastmath flags (``contract``).
_ROWS_IN_C = "contract" in FAST_FLAGS


@intrinsic
def _pointer(typingctx, address, zero):
    """``address`` (an int64 of a layer table) as a pointer to values of ``zero``'s type."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return nbtypes.CPointer(zero)(nbtypes.int64, zero), codegen


SCRATCH = 256  # float64 values of the stack buffer a column sum accumulates in


@intrinsic
def _scratch(typingctx):
    """A pointer to :data:`SCRATCH` float64 values on the caller's stack: no allocation per call (the compiled
    step makes none per batch), and memory the compiler knows no other array shares, so loops over it vectorise.
    Valid until the calling function returns."""
    def codegen(context, builder, signature, args):
        buffer = cgutils.alloca_once(builder, ir.ArrayType(ir.DoubleType(), SCRATCH))
        return builder.bitcast(buffer, ir.DoubleType().as_pointer())
    return nbtypes.CPointer(nbtypes.float64)(), codegen


@jit
def _bias_grad(g, b, lr, wd_b, step):
    """The bias gradient ``sum_i g[i, j]`` into ``b`` (``step`` False), or the SGD step ``b -= lr (sum_i g[i, j] +
    wd_b b)`` (``step`` True). Each sum is a float64 accumulated row after row: the order, and so the bits, of a
    sum down each column, but passes along the rows, which vectorise (a 256 x 1024 gradient: 36 against 830 us;
    docs/performance.md, "Where a batch's time goes")."""
    scratch = carray(_scratch(), (SCRATCH,))
    for j0 in range(0, b.shape[0], SCRATCH):
        w = min(SCRATCH, b.shape[0] - j0)
        acc, out = scratch[:w], b[j0:j0 + w]
        for j in range(w):
            acc[j] = 0.0
        for i in range(g.shape[0]):
            row = g[i, j0:j0 + w]
            for j in range(w):
                acc[j] += row[j]
        for j in range(w):
            out[j] = out[j] - lr * (acc[j] + wd_b * out[j]) if step else acc[j]


@jit
def _vec(address, n, zero):
    """The ``n`` values at ``address`` as a 1-D array of ``zero``'s dtype: a view, owned by the caller."""
    return carray(_pointer(address, zero), (n,))


@jit
def _mat(address, n, m, zero):
    """As :func:`_vec`, an (n, m) C-contiguous matrix."""
    return carray(_pointer(address, zero), (n, m))


@jit
def matmul(A, B, out):
    _gemm(A, False, B, False, 1.0, 0.0, out)
    return out


@jit
def linear_forward(X, W, b, act, alpha, out):
    _gemm(X, False, W, False, 1.0, 0.0, out)
    _bias_act(out, b, act, alpha)
    return out


@jit(fast=True)
def _bias_act(out, b, act, alpha):
    """``out = act(out + b)``: :func:`linear_forward` after its product."""
    n, m = out.shape
    # One pass over `out` for bias and activation instead of two; the branch
    # on `act` sits outside the loops so each loop vectorises.
    if act == RELU:
        for i in range(n):
            for j in range(m):
                v = out[i, j] + b[j]
                out[i, j] = 0 if v <= 0 else v  # NaN propagates, as np.maximum in the twin
    elif act == SIGMOID:
        for i in range(n):
            for j in range(m):
                out[i, j] = _sigmoid(out[i, j] + b[j])
    elif act == TANH and out.itemsize == 4:
        for i in range(n):
            for j in range(m):
                out[i, j] = _tanh32(out[i, j] + b[j])
    elif act == TANH:
        for i in range(n):
            for j in range(m):
                out[i, j] = math.tanh(out[i, j] + b[j])
    elif act == LEAKY_RELU:
        slope = out.dtype.type(alpha)
        for i in range(n):
            for j in range(m):
                v = out[i, j] + b[j]
                out[i, j] = v if v > 0 else slope * v
    elif act == ELU or act == GELU:
        for i in range(n):
            for j in range(m):
                out[i, j] = _act_scalar(act, alpha, out[i, j] + b[j])
    else:
        for i in range(n):
            for j in range(m):
                out[i, j] += b[j]


@jit
def _finite_sums(out, b):
    """Whether every ``out[i, j] + b[j]`` is finite: ``v - v`` is 0 exactly then (NaN for NaN and inf). No fastmath
    here, which could assume neither occurs; the flags' OR vectorises without it."""
    bad = 0
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            v = out[i, j] + b[j]
            bad |= 0 if v - v == 0 else 1
    return bad == 0


@jit
def _act_scalar(act, alpha, v):
    """``act(v)`` for one value: the activations without a vectorised loop of their own."""
    if act == RELU:
        return v if v > 0 else v * 0
    if act == SIGMOID:
        return _sigmoid(v)
    if act == TANH:
        return math.tanh(v)
    if act == LEAKY_RELU:
        return v if v > 0 else v * alpha
    if act == ELU:
        return v if v > 0 else alpha * math.expm1(v)
    if act == GELU:
        # tanh approximation, as PyTorch's approximate="tanh": 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
        return 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    return v


@jit
def activation_forward(act, alpha, x, out):
    n, m = x.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = _act_scalar(act, alpha, x[i, j])
    return out


@jit
def linear_backward(X, W, g, dW, db, dX):
    _gemm(X, True, g, False, 1.0, 0.0, dW)
    _bias_grad(g, db, 0.0, 0.0, False)
    if dX is not None:
        _gemm(g, False, W, True, 1.0, 0.0, dX)


@jit
def linear_backward_sgd(X, W, g, b, lr, wd_W, wd_b, dX):
    if dX is not None:
        _gemm(g, False, W, True, 1.0, 0.0, dX)  # with W before its update
    _bias_grad(g, b, lr, wd_b, True)
    if wd_W != 0:
        # The decay as its own pass, p - (lr wd) p rounded once per element as PyTorch does; folding
        # the factor 1 - lr wd into the GEMM's beta rounds it to float32 and the error compounds per step.
        decay = lr * wd_W
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                W[i, j] = W[i, j] - decay * W[i, j]
    _gemm(X, True, g, False, -lr, 1.0, W)  # W -= lr X^T g: one BLAS call, no dW


@jit(fast=True)
def relu_forward(x, out):
    n, m = x.shape
    for i in range(n):
        for j in range(m):
            v = x[i, j]
            out[i, j] = 0 if v <= 0 else v  # NaN fails `v <= 0` and propagates
    return out


@jit(fast=True)
def relu_backward(y, g, out):
    n, m = y.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = g[i, j] if y[i, j] > 0 else 0
    return out


@jit
def sigmoid_forward(x, out):
    n, m = x.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = _sigmoid(x[i, j])
    return out


@jit(fast=True)
def sigmoid_backward(y, g, out):
    n, m = y.shape
    for i in range(n):
        for j in range(m):
            s = y[i, j]
            out[i, j] = g[i, j] * (s * (1 - s))
    return out


@jit(fast=True)
def _tanh32(v):
    """float32 tanh as a rational function: it vectorises, unlike the libm call (no SVML in
    PyPI's llvmlite). Coefficients: Eigen's ``generic_fast_tanh_float`` (a 13/6 minimax fit).
    Max relative error 2.7e-7 (about 2 ulp, tested); beyond the clamp float32 tanh is 1 to
    within that error; NaN fails both comparisons and propagates."""
    c = np.float32(7.90531110763549805)
    v = c if v > c else v
    v = -c if v < -c else v
    x2 = v * v
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return v * p / q


@jit(fast=True)
def tanh_forward(x, out):
    n, m = x.shape
    if out.itemsize == 4:
        for i in range(n):
            for j in range(m):
                out[i, j] = _tanh32(x[i, j])
    else:  # float64 keeps libm's correctly rounded tanh: gradient checks run here
        for i in range(n):
            for j in range(m):
                out[i, j] = math.tanh(x[i, j])
    return out


@jit(fast=True)
def tanh_backward(y, g, out):
    n, m = y.shape
    for i in range(n):
        for j in range(m):
            t = y[i, j]
            out[i, j] = g[i, j] * (1 - t * t)
    return out


# splitmix64 (Steele, Lea & Flood 2014): a counter-based generator, so a dropout mask is a function of
# (key, row, column) that both twins, and the forward and backward passes, compute alike. One 64-bit
# hash gives the uniforms of two neighbouring columns (its low and high 32 bits).
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)


@jit
def _hash(key, idx):
    z = key + np.uint64(idx) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@jit
def dropout(x, p, key, row, out):
    n, m = x.shape
    scale = x.dtype.type(1.0 / (1.0 - p))
    zero = x.dtype.type(0)
    # keep where the 32-bit uniform u satisfies u / 2^32 >= p, i.e. u >= ceil(p 2^32): integer compares
    threshold = np.uint64(math.ceil(p * 4294967296.0))
    k = np.uint64(key)
    pairs, even = (m + 1) // 2, m // 2
    for i in range(n):
        base = (row + i) * pairs
        for jj in range(even):
            h = _hash(k, base + jj)
            out[i, 2 * jj] = x[i, 2 * jj] * (scale if (h & _LOW32) >= threshold else zero)  # NaN * 0 stays NaN
            out[i, 2 * jj + 1] = x[i, 2 * jj + 1] * (scale if (h >> np.uint64(32)) >= threshold else zero)
        if m % 2:
            h = _hash(k, base + even)
            out[i, m - 1] = x[i, m - 1] * (scale if (h & _LOW32) >= threshold else zero)
    return out


@jit
def softmax_forward(x, out):
    for i in range(x.shape[0]):
        _softmax_row(x, i, out)
    return out


@jit
def softmax_backward(s, g, out):
    n, m = s.shape
    for i in range(n):
        dot = 0.0
        for j in range(m):
            dot += g[i, j] * s[i, j]
        for j in range(m):
            out[i, j] = s[i, j] * (g[i, j] - dot)
    return out


@jit(fast=True)
def act_backward(act, alpha, x, y, g):
    """``g *= act'`` in place, from the cached output ``y`` (or the input ``x`` for NEEDS_INPUT codes)."""
    n, m = g.shape
    zero = g.dtype.type(0)
    # Selects, not conditional stores: a store under a branch does not vectorise and mispredicts on ReLU's
    # random pattern (256 x 128: 29 against 4.8 us); the bits are the same.
    if act == RELU:
        for i in range(n):
            for j in range(m):
                g[i, j] = g[i, j] if y[i, j] > 0 else zero
    elif act == SIGMOID:
        for i in range(n):
            for j in range(m):
                s = y[i, j]
                g[i, j] = g[i, j] * (s * (1 - s))
    elif act == TANH:
        for i in range(n):
            for j in range(m):
                t = y[i, j]
                g[i, j] = g[i, j] * (1 - t * t)
    elif act == LEAKY_RELU:
        slope = g.dtype.type(alpha)
        for i in range(n):
            for j in range(m):
                gij = g[i, j]  # slope >= 0: y > 0 exactly where x > 0
                g[i, j] = gij if y[i, j] > 0 else gij * slope
    elif act == ELU:
        for i in range(n):
            for j in range(m):
                v = x[i, j]
                if not v > 0:  # exp is a call: only where it is needed
                    g[i, j] = g[i, j] * (alpha * math.exp(v))
    elif act == GELU:
        for i in range(n):
            for j in range(m):
                v = x[i, j] * 1.0
                t = math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))
                dt = (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3 * 0.044715 * v * v)
                g[i, j] = g[i, j] * (0.5 * (1.0 + t) + 0.5 * v * dt)


# -- inference ------------------------------------------------------------------------------------

# Batches of up to this many rows skip BLAS in mlp_forward: sgemm packs all of W whatever the row
# count, and for one row that costs several times the arithmetic (tests/test_kernels.py checks both paths).
ROW_LOOP_MAX = 4


@jit(fast=True)
def _affine_rows(X, W, b, out):
    """``out = X W + b`` one row at a time, ``out[i] = b + sum_k X[i, k] W[k]``: W is read once per row in
    storage order. Reading W is the cost, so the rows of W that meet a zero input (half the pixels of an image,
    the units a ReLU switched off) are skipped; with finite weights that changes nothing, as ``x + 0 w == x``.
    float32 goes to ``fastnn_srows``, which keeps ``out[i]`` in registers over the whole of K (single-row
    predict of 784-128-64-10: docs/performance.md, "Single-row predict"), with the same bits as the loop."""
    if _ROWS_IN_C and out.itemsize == 4 and X.flags.c_contiguous and W.flags.c_contiguous and \
            b.flags.c_contiguous and out.flags.c_contiguous:
        if _srows(X.shape[0], W.shape[1], X.shape[1], X.ctypes, max(1, X.shape[1]), W.ctypes, max(1, W.shape[1]),
                  b.ctypes, out.ctypes, max(1, out.shape[1])):
            return
    _affine_rows_loop(X, W, b, out)


@jit(fast=True)
def _affine_rows_loop(X, W, b, out):
    """:func:`_affine_rows` in Numba alone: ``out[i]`` is loaded and stored at every k (the inner loop over it
    vectorises)."""
    for i in range(X.shape[0]):
        for j in range(W.shape[1]):
            out[i, j] = b[j]
        for k in range(X.shape[1]):
            x = X[i, k]
            if x != 0:
                for j in range(W.shape[1]):
                    out[i, j] += x * W[k, j]


@jit
def mlp_forward(X, dims, acts, alphas, params, work, out):
    n, L = X.shape[0], acts.shape[0]
    zero = X.dtype.type(0)
    width = 1
    for l in range(1, L):
        width = max(width, dims[l])
    chunk = work.shape[1] // width if L > 1 else n
    finite = True
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        a = X[s:e]
        for l in range(L):
            W, b, w = _mat(params[l, P_W], dims[l], dims[l + 1], zero), _vec(params[l, P_B], dims[l + 1], zero), dims[l + 1]
            dst = out[s:e] if l == L - 1 else work[l % 2, :(e - s) * w].reshape((e - s, w))
            rows = e - s <= ROW_LOOP_MAX
            if rows:
                _affine_rows(a, W, b, dst)
            else:
                _gemm(a, False, W, False, 1.0, 0.0, dst)
            if l == 0:  # the pre-activations, before an activation maps an inf to a finite value (numpy_ref)
                # the row loop's have b in already: adding it again can only overflow, which says "check X"
                finite = _finite_sums(dst, b) and finite
            if rows:
                activation_forward(acts[l], alphas[l], dst, dst)
            else:
                _bias_act(dst, b, acts[l], alphas[l])
            a = dst
    return finite

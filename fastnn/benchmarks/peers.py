"""The strongest peers a user would try for a fast CPU MLP: JAX and torch.compile.

Three trainers with the interface of ``fastnn/benchmarks/test_bench_workloads.py``'s (``Trainer(sizes, loss, lr, X, y,
batch, shuffle, init)``; ``setup() -> (args, kwargs)``, ``run(*args) -> (params, None)``), each doing what fastnn's
``fit`` does: plain SGD on a ReLU MLP ``sizes`` from the weights ``init = [W1, b1, ...]`` (``W`` of shape
(n_in, n_out)), mean softmax cross-entropy (``loss="sce"``, int labels) or mean squared error over all elements
(``"mse"``, targets of shape (n, n_out)), over every row once in the batches fastnn forms: the order ``fit(seed=0)``
draws when ``shuffle`` (:func:`batch_order`), consecutive batches of ``batch`` rows and a shorter last one.

``jax``
    The whole epoch is one ``jax.jit`` call: ``jax.lax.scan`` over the full batches, each gathering its rows from
    the device-resident data by the permutation inside the scan, then the short last batch in the same program.
``jax_step``
    One ``jax.jit`` call per batch (the step gathers its rows from the resident data by the permutation and a
    start offset), parameters donated so XLA may update them in place.
``torch_compile``
    ``torch.compile(fullgraph=True, dynamic=False)`` of the whole step -- gather, forward, backward
    (``torch.func.grad_and_value``) and the SGD update -- called once per batch; one graph per batch shape.
    ``backend="aot_eager"`` traces the same graph without Inductor's C++ code generation (seconds per shape on a
    cold start: docs/performance.md), for the correctness runs.

Compilation happens in :meth:`compile` (called by the first ``run`` if not before), outside any timed region, and
its seconds are kept in ``compile_s``. Each ``run`` ends with the results on the host (``block_until_ready``), so
a timed epoch includes all its work. Threads: XLA's CPU client uses its own pool of every core (it cannot be
resized in a running process); torch.compile's kernels use ``torch.get_num_threads()``.

Absent libraries skip (``pytest.skip``) with one line naming the ``peers`` extra.
"""
import time

import numpy as np
import pytest

_MISSING = "{} not installed: the peer benchmarks need fastnn's 'peers' extra (pip install 'fastnn[peers]')"


def require(module):
    """Import ``module`` ("jax" or "torch") or skip the calling test with one line saying how to get it."""
    try:
        return __import__(module)
    except ImportError:
        pytest.skip(_MISSING.format(module))


def batch_order(n, shuffle, seed=0):
    """The row order of one epoch of ``fit(seed=seed, shuffle=shuffle)``: its generator's first permutation."""
    return np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)


class _Peer:
    """Shared state: the data, the order, the batch layout (``n_full`` full batches, a last one of ``tail`` rows)."""

    def __init__(self, sizes, loss, lr, X, y, batch, shuffle, init):
        self.sizes, self.loss, self.lr, self.batch, self.init = sizes, loss, lr, batch, init
        self.X, self.y = X, y
        self.order = batch_order(len(X), shuffle)
        self.n_full, self.tail = divmod(len(X), batch)
        self.compile_s = None

    def run(self, *params):
        if self.compile_s is None:
            self.compile()
        return self._epoch(*params), None


class _Jax(_Peer):
    def __init__(self, *args):
        super().__init__(*args)
        jax = self.jax = require("jax")
        jnp = jax.numpy
        self.Xd = jax.device_put(self.X)
        self.yd = jax.device_put(self.y.astype(np.int32) if self.loss == "sce" else self.y)
        self.orderd = jax.device_put(self.order.astype(np.int32))
        n_layers, lr = len(self.sizes) - 1, self.lr

        def loss_fn(params, xb, yb):
            z = xb
            for k in range(n_layers):
                z = z @ params[2 * k] + params[2 * k + 1]
                if k < n_layers - 1:
                    z = jnp.maximum(z, 0)
            if self.loss == "mse":
                return jnp.mean((z - yb) ** 2)
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, yb[:, None], axis=1)[:, 0])

        def sgd(params, X, y, idx):
            value, grads = jax.value_and_grad(loss_fn)(params, X[idx], y[idx])
            return [p - lr * g for p, g in zip(params, grads)], value

        self._sgd = sgd

    def setup(self):
        return tuple(self.jax.device_put(p) for p in self.init), {}

    def _host(self, params):
        return [np.asarray(p) for p in self.jax.block_until_ready(params)]


class JaxScan(_Jax):
    """The whole epoch in one jitted program: ``lax.scan`` over the full batches, then the short last one."""

    def __init__(self, *args):
        super().__init__(*args)
        jax, sgd, bs, n_full, tail = self.jax, self._sgd, self.batch, self.n_full, self.tail

        def epoch(params, X, y, order):
            def body(params, idx):
                return sgd(params, X, y, idx)[0], None

            params, _ = jax.lax.scan(body, list(params), order[:n_full * bs].reshape(n_full, bs))
            if tail:
                params = sgd(params, X, y, order[n_full * bs:])[0]
            return params

        self._jit = jax.jit(epoch)

    def compile(self):
        start = time.perf_counter()
        self._compiled = self._jit.lower(self.setup()[0], self.Xd, self.yd, self.orderd).compile()
        self.compile_s = time.perf_counter() - start

    def _epoch(self, *params):
        return self._host(self._compiled(params, self.Xd, self.yd, self.orderd))


class JaxStep(_Jax):
    """One jitted SGD step per batch, the batch's rows gathered inside by ``order[start:start + size]``."""

    def __init__(self, *args):
        super().__init__(*args)
        jax, sgd = self.jax, self._sgd

        def step(params, X, y, order, start, size):
            return sgd(params, X, y, jax.lax.dynamic_slice_in_dim(order, start, size))[0]

        self._step = jax.jit(step, static_argnums=5, donate_argnums=0)

    def compile(self):
        start = time.perf_counter()
        params = list(self.setup()[0])
        for size in (self.batch, self.tail) if self.tail else (self.batch,):
            params = self._step(params, self.Xd, self.yd, self.orderd, 0, size)
        self._host(params)
        self.compile_s = time.perf_counter() - start

    def _epoch(self, *params):
        params, bs, step = list(params), self.batch, self._step
        X, y, order = self.Xd, self.yd, self.orderd
        for b in range(self.n_full):
            params = step(params, X, y, order, b * bs, bs)
        if self.tail:
            params = step(params, X, y, order, self.n_full * bs, self.tail)
        return self._host(params)


class TorchCompile(_Peer):
    """The step (gather, forward, backward, SGD) as one ``torch.compile`` graph per batch shape."""

    def __init__(self, *args, backend="inductor"):
        super().__init__(*args)
        torch = self.torch = require("torch")
        F = torch.nn.functional
        self.Xt, self.yt = torch.from_numpy(self.X), torch.from_numpy(self.y)
        self.ordert = torch.from_numpy(self.order)
        n_layers, lr = len(self.sizes) - 1, self.lr
        loss = F.mse_loss if self.loss == "mse" else F.cross_entropy

        def loss_fn(params, xb, yb):
            z = xb
            for k in range(n_layers):
                z = F.linear(z, params[2 * k], params[2 * k + 1])  # W kept (out, in), as torch.nn.Linear
                if k < n_layers - 1:
                    z = torch.relu(z)
            return loss(z, yb)

        def step(params, X, y, idx):
            grads, _ = torch.func.grad_and_value(loss_fn)(params, X[idx], y[idx])
            return [p - lr * g for p, g in zip(params, grads)]

        # Dynamo caches per code object: every trainer's `step` shares one, and its guards on the captured
        # sizes and lr fail for each new trainer, up to a recompile limit. Start each trainer afresh, as a process.
        torch._dynamo.reset()
        self._step = torch.compile(step, backend=backend, fullgraph=True, dynamic=False)

    def setup(self):
        params = []
        for W, b in zip(self.init[0::2], self.init[1::2]):
            params += [self.torch.from_numpy(W.T.copy()), self.torch.from_numpy(b.copy())]
        return tuple(params), {}

    def compile(self):
        start = time.perf_counter()
        params = list(self.setup()[0])
        for lo, hi in ((0, self.batch), (self.n_full * self.batch, len(self.X))) if self.tail else ((0, self.batch),):
            params = self._step(params, self.Xt, self.yt, self.ordert[lo:hi])
        self.compile_s = time.perf_counter() - start

    def _epoch(self, *params):
        params, bs, step = list(params), self.batch, self._step
        X, y, order = self.Xt, self.yt, self.ordert
        for start in range(0, len(X), bs):
            params = step(params, X, y, order[start:start + bs])
        out = []
        for W, b in zip(params[0::2], params[1::2]):
            out += [W.detach().numpy().T, b.detach().numpy()]
        return out


def jax_predictor(init):
    """``f(X) -> ndarray``: a jitted JAX forward pass of the ReLU MLP ``init``, float32 NumPy in and out."""
    jax = require("jax")
    params = tuple(jax.device_put(p) for p in init)

    @jax.jit
    def forward(params, x):
        for k in range(0, len(params), 2):
            x = x @ params[k] + params[k + 1]
            if k + 2 < len(params):
                x = jax.numpy.maximum(x, 0)
        return x

    return lambda X: np.asarray(forward(params, X))


TRAINERS = {"jax": JaxScan, "jax_step": JaxStep, "torch_compile": TorchCompile}

"""``Sequential``: a stack of layers with forward, backward and parameter access."""
import numpy as np

from fastnn import architecture as _arch
from fastnn import inference
from fastnn import io as _io
from fastnn import preprocessing as _pre
from fastnn import train as _train
from fastnn._check import BOOL, CALLABLE, NONE, PATH, Instance, check
from fastnn._validation import as_float_dtype, check_matrix
from fastnn.layers import LAYERS, Layer, Linear, Sigmoid, Softmax
from fastnn.losses import BCEWithLogitsLoss, SoftmaxCrossEntropy

__all__ = ["Sequential"]


class Sequential:
    """Layers applied in order.

    Parameters
    ----------
    *layers : Layer
        E.g. ``Sequential(Linear(784, 128), ReLU(), Linear(128, 10))``.
        Consecutive ``Linear`` widths and dtypes are checked here, once.
    preprocessing : fastnn.preprocessing.Table or Standardize, optional
        Applied to the features by ``fit``, ``predict``, ``evaluate`` and the ONNX export, saved with the model;
        adapted from the training data first (``Table().adapt(train_table)``). With a ``Table``, those take a
        table (a DataFrame or a mapping of column name to values), its columns matched by name.
    target : fastnn.preprocessing.Labels or Standardize, optional
        ``Labels``: ``fit``/``evaluate`` take the labels as written (text, integers, booleans) and map them to the
        class indices of the outputs; ``target.decode(model.predict(X).argmax(axis=1))`` maps back.
        ``Standardize``: a regression target, standardized for training; ``predict`` returns its units and
        ``evaluate`` the loss in them.

    Attributes
    ----------
    fit_loss : Loss or None
        The loss of the last ``fit``: what ``predict_proba`` takes the outputs to mean when not told.
    """

    def __init__(self, *layers, preprocessing=None, target=None):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        width, dtype = None, None
        for i, layer in enumerate(layers):
            check(f"layer {i}", layer, Instance(Layer, what="a fastnn Layer"))
            n_in = layer._n_in()
            if n_in is None:
                continue
            if width is not None and n_in != width:
                raise ValueError(f"layer {i} ({type(layer).__name__}) expects {n_in} inputs but the "
                                 f"layer before it gives {width}")
            if dtype is not None and layer._dtype() != dtype:
                raise TypeError(f"layer {i} has dtype {layer._dtype()}, expected {dtype} like the layers before it")
            width, dtype = layer.out_features, layer._dtype()
        self.layers = list(layers)
        self.fit_loss = None
        self._output_shape = None
        self.preprocessing = check("preprocessing", preprocessing, NONE, Instance(
            _pre.Table, _pre.Standardize, what="a fastnn.preprocessing Table or Standardize"))
        self.target = check("target", target, NONE, Instance(
            _pre.Labels, _pre.Standardize, what="a fastnn.preprocessing Labels or Standardize"))
        self._check_preprocessing()

    def _check_preprocessing(self):
        """The adapted preprocessing's widths must be the network's (unadapted ones are checked when used)."""
        pre, width = self.preprocessing, None
        if isinstance(pre, _pre.Table):
            width = pre.n_features_out
        elif isinstance(pre, _pre.Standardize):
            width = pre.n_columns
        if width is not None and self.n_features_in is not None and width != self.n_features_in:
            raise ValueError(f"the preprocessing gives {width} features, but the first layer takes "
                             f"{self.n_features_in}")
        n_out = self.n_outputs
        if isinstance(self.target, _pre.Labels) and self.target.n_classes is not None and n_out is not None \
                and n_out != self.target.n_classes and not (n_out == 1 and self.target.n_classes == 2):
            raise ValueError(f"target has {self.target.n_classes} classes, but the model has {n_out} outputs")
        if isinstance(self.target, _pre.Standardize) and self.target.n_columns not in (None, n_out):
            raise ValueError(f"target standardizes {self.target.n_columns} column(s), but the model has {n_out} "
                             "outputs")

    def _features(self, X):
        """``X`` through the preprocessing, in the model's dtype (``X`` itself without preprocessing)."""
        if self.preprocessing is None:
            return X
        self._check_preprocessing()
        return self.preprocessing.transform(X, self.dtype or np.float32)

    def _targets(self, y):
        """``y`` as the network trains on it: class indices (``Labels``) or standardized values."""
        if self.target is None:
            return y
        if isinstance(self.target, _pre.Labels):
            return self.target.encode(y)
        y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        return self.target.transform(y, self.dtype)

    # -- structure ---------------------------------------------------------------
    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __repr__(self):
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Sequential(\n{inner}\n)"

    @property
    def n_features_in(self):
        """Input width, from the first layer that fixes one (``None`` for activations only)."""
        return next((layer._n_in() for layer in self.layers if layer._n_in() is not None), None)

    @property
    def n_outputs(self):
        return next((layer.out_features for layer in reversed(self.layers) if layer._n_in() is not None), None)

    @property
    def dtype(self):
        """dtype of the parameters (float32 or float64), ``None`` without parameters."""
        params = self.parameters()
        return params[0].data.dtype if params else None

    def parameters(self):
        """All :class:`Parameter` objects, in layer order."""
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self):
        """``[("0.W", Parameter), ("0.b", Parameter), ...]``, prefixed by layer index."""
        return [(f"{i}.{p.name}", p) for i, layer in enumerate(self.layers) for p in layer.parameters()]

    def train(self, mode=True):
        """Training mode: ``Dropout`` layers drop (in ``forward``); ``fit`` sets it while it runs. Returns ``self``."""
        mode = check("mode", mode, BOOL)
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self):
        """Inference mode (the default): ``Dropout`` is the identity. ``predict``/``evaluate`` always infer."""
        return self.train(False)

    @property
    def training(self):
        return any(layer.training for layer in self.layers)

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0

    def astype(self, dtype):
        """Convert every parameter to ``dtype`` in place; returns ``self``."""
        dtype = as_float_dtype(dtype)
        for layer in self.layers:
            layer._astype(dtype)
        return self

    # -- math --------------------------------------------------------------------
    def forward(self, X):
        """Run the batch through every layer.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features_in)

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), in the model's dtype.
        """
        out = self._forward(check_matrix(X, "X", n_features=self.n_features_in, dtype=self.dtype))
        self._output_shape = out.shape
        return out

    __call__ = forward

    def backward(self, grad_output):
        """Back-propagate ``dL/d(output)``: fill every ``Parameter.grad``, return ``dL/dX``.

        Parameters
        ----------
        grad_output : array_like of the last forward output's shape

        Returns
        -------
        ndarray of shape (n_samples, n_features_in)
        """
        if self._output_shape is None:
            raise RuntimeError("Sequential.backward() called before forward()")
        g = check_matrix(grad_output, "grad_output", dtype=self.dtype, finite=False)
        if g.shape != self._output_shape:
            raise ValueError(f"grad_output has shape {g.shape}, expected {self._output_shape} "
                             "(the last forward's output)")
        return self._backward(g, need_input_grad=True)

    def _forward(self, X):
        for layer in self.layers:
            X = layer._forward(X)
        return X

    def _backward(self, g, need_input_grad=False):
        # The first layer's dX = g W^T is a full GEMM nobody needs while training.
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i]._backward(g, need_input_grad or i > 0)
        return g

    # -- training ----------------------------------------------------------------
    def fit(self, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True, validation_data=None,
            validation_split=0.0, early_stopping=None, seed=None, verbose=1, callbacks=None, sample_weight=None,
            class_weight=None, clip_grad_norm=None, checkpoint=None, resume=False, allow_changes=None):
        """Train in place with mini-batches.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features_in)
        y : array_like of shape (n_samples,) int labels, or (n_samples, n_outputs)
        loss : Loss or str
            E.g. ``SoftmaxCrossEntropy()`` or ``"MSELoss"``.
        optimizer : Optimizer
            Built on ``self.parameters()``.
        epochs, batch_size : int
            The last batch of an epoch may be smaller.
        shuffle : bool
            A new permutation of the sample *indices* each epoch (the data is not moved).
        validation_data : tuple (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
        validation_split : float in [0, 1)
            Hold out the last fraction of ``X``/``y`` (before shuffling) for validation.
        early_stopping : EarlyStopping or int, optional
            An int is the patience of ``EarlyStopping()`` on ``val_loss`` (or ``loss``),
            restoring the best weights.
        seed : int or None
            Seeds the shuffling and the dropout masks; with the same initial weights, backend and
            BLAS thread count the trained weights are bit-identical.
        verbose : {0, 1, 2}
            0 silent, 1 one line per epoch, 2 also a per-batch bar when stderr is a terminal.
        callbacks : list, optional
            Objects with ``on_epoch_begin(epoch, logs)`` and/or ``on_epoch_end(epoch, logs)`` (returning
            True stops training), and ``set_optimizer(optimizer)``, called once first, when they need it
            (Keras' ``fastnn.lr_scheduler.LearningRateScheduler``). Learning-rate schedulers of
            :mod:`fastnn.lr_scheduler` built on ``optimizer`` are stepped by fit after every epoch or,
            with ``interval="batch"``, after every batch, on the compiled path too.
        sample_weight : array_like of shape (n_samples,), optional
            Non-negative weights: each batch's loss is ``sum w_i l_i / sum w_i``, so a row of weight 0
            has no influence at all. The history's loss is the weighted mean; accuracy is unweighted.
        class_weight : dict or "balanced", optional
            Weights per class (``{class: weight}``, absent classes 1), multiplied into ``sample_weight``;
            ``"balanced"`` is scikit-learn's ``n_samples / (n_classes * bincount(y))``.
        clip_grad_norm : float, optional
            Before every update, scale the gradients so their global 2-norm is at most this
            (PyTorch's ``clip_grad_norm_``; see :func:`fastnn.clip_grad_norm`).
        checkpoint : str or os.PathLike, optional
            Write everything needed to continue (weights, optimizer and scheduler state, the shuffling
            generator, epoch, history, early-stopping state) to this file, atomically, after every epoch,
            with the run's fingerprint: the dtype, loss, optimizer and its settings, batch size, shuffling,
            seed, clipping, the training data's shape, dtype and a hash of a sample of its rows (targets and
            sample weights too), the validation data or split, schedulers and early stopping
            (``fastnn.checkpoint.FINGERPRINT_FIELDS``). While fit runs it holds a lock on ``checkpoint +
            ".lock"``: a second fit on the same path raises ``BlockingIOError`` at once, naming the holder.
        resume : bool
            Continue from ``checkpoint`` if it exists (else start afresh): the run ends with exactly the
            weights of an uninterrupted one (same seed, backend and BLAS thread count). ``epochs`` is the
            total, counting the epochs already done. A checkpoint of another run (a fingerprint field that
            differs) raises ``ValueError`` naming each field, before anything is modified; so does a damaged
            field.
        allow_changes : list of str, optional
            With ``resume``, fingerprint fields that may differ, for a user who means it: e.g.
            ``["optimizer.lr"]`` (the new optimizer's rate replaces the saved one), ``["batch_size"]``, or
            ``["data.shape", "data.hash", "targets.hash"]`` to continue on more data. The run is then no
            longer bit-identical to an uninterrupted one, and the checkpoint records the new settings.

        Returns
        -------
        History

        Notes
        -----
        Stacks of ``Linear`` (each optionally followed by an activation of ``registry.ACTIVATIONS``
        and preceded by a ``Dropout``) ending in a ``Linear``, with ``SoftmaxCrossEntropy``,
        ``BCEWithLogitsLoss``, ``MSELoss`` or ``PoissonLoss`` (or a last ``Sigmoid`` with ``BCELoss``) and ``SGD``,
        ``Adam`` or ``AdamW``, train through one compiled call per epoch, schedules, sample
        weights, dropout and clipping included (``History.fast_path``; ``History.fallback`` says why
        not). With plain SGD
        (no momentum) the update is applied inside the backward GEMM, so ``Parameter.grad``
        is not filled by such a fit.

        Raises
        ------
        FloatingPointError
            When the loss becomes NaN or inf; the message names the epoch and batch
            and the model keeps its last finite weights.
        KeyboardInterrupt
            On Ctrl-C (taken between batches, never mid-update): the model, optimizer and schedulers
            are put back to the end of the last completed epoch; ``.history`` holds the epochs so far.
        TrainingTerminated
            On SIGTERM or SIGHUP, taken the same way (within about 0.1 s: the compiled step trains in
            calls that long); a ``SystemExit`` of status 143 or 129, so an uncaught one ends the program as
            the signal asked. A second signal acts at once. Signals with a handler of the program's own are
            left to it.
        """
        X, y = self._features(X), self._targets(y)
        if validation_data is not None and isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            validation_data = (self._features(validation_data[0]), self._targets(validation_data[1]),
                               *validation_data[2:])
        return _train.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                          shuffle=shuffle, validation_data=validation_data, validation_split=validation_split,
                          early_stopping=early_stopping, seed=seed, verbose=verbose, callbacks=callbacks,
                          sample_weight=sample_weight, class_weight=class_weight, clip_grad_norm=clip_grad_norm,
                          checkpoint=checkpoint, resume=resume, allow_changes=allow_changes)

    def predict(self, X, batch_size=1024):
        """Outputs for ``X`` of shape (n_samples, n_features_in) (or a table, with a ``Table`` preprocessing),
        computed in batches, caching nothing; in the target's units with a ``Standardize`` target."""
        if self.preprocessing is None and self.target is None:
            return inference.predict(self, X, batch_size)
        out = inference.predict(self, self._features(X), batch_size)
        return self.target.inverse(out) if isinstance(self.target, _pre.Standardize) else out

    def predict_proba(self, X, loss=None, batch_size=1024):
        """Probabilities for ``X``: softmax or sigmoid of the outputs, as ``loss`` implies.

        Parameters
        ----------
        loss : Loss or str, optional
            ``SoftmaxCrossEntropy`` (softmax of the logits) or ``BCEWithLogitsLoss`` (sigmoid of each
            output). Not needed when the model ends in ``Softmax`` or ``Sigmoid`` (its outputs are
            probabilities) or was last trained by ``fit`` with one of those losses.
        """
        loss = _train.resolve_loss(loss) if loss is not None else getattr(self, "fit_loss", None)
        last = self.layers[-1]
        if loss is None and isinstance(self.target, _pre.Labels) and not isinstance(last, (Softmax, Sigmoid)):
            loss = SoftmaxCrossEntropy()  # class labels on the outputs: they are logits
        if isinstance(last, (Softmax, Sigmoid)) and not isinstance(loss, (SoftmaxCrossEntropy, BCEWithLogitsLoss)):
            return self.predict(X, batch_size)
        if isinstance(loss, SoftmaxCrossEntropy):
            return inference.probabilities(self.predict(X, batch_size), "softmax")
        if isinstance(loss, BCEWithLogitsLoss):
            return inference.probabilities(self.predict(X, batch_size), "sigmoid")
        raise ValueError("predict_proba needs to know what the outputs are: pass loss=SoftmaxCrossEntropy() or "
                         "BCEWithLogitsLoss() (logits), or end the model in Softmax or Sigmoid"
                         + ("" if loss is None else f"; {type(loss).__name__} gives no probabilities"))

    def summary(self, print_fn=print):
        """A table of the layers with their output widths and parameter counts, as Keras' ``summary``;
        printed with ``print_fn`` (``None``: not printed) and returned."""
        check("print_fn", print_fn, CALLABLE, NONE)
        rows, width = [], self.n_features_in
        for i, layer in enumerate(self.layers):
            width = getattr(layer, "out_features", width)
            count = sum(p.data.size for p in layer.parameters())
            rows.append((f"{i}: {layer!r}", f"(None, {width})", f"{count:,}"))
        total = sum(p.data.size for p in self.parameters())
        header = ("layer", "output shape", "params")
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(3)]
        line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"  # noqa: E731
        rule = "-" * len(line(header))
        text = "\n".join([line(header), rule, *map(line, rows), rule,
                          f"total parameters: {total:,} ({total * (self.dtype or np.dtype(np.float32)).itemsize:,} "
                          f"bytes, {self.dtype})"])
        if print_fn is not None:
            print_fn(text)
        return text

    def evaluate(self, X, y, loss, batch_size=1024, sample_weight=None):
        """``{"loss": mean loss, "accuracy": ...}`` over ``(X, y)`` (accuracy for classification losses;
        the loss weighted by ``sample_weight`` when given). ``y`` as the ``target`` takes it: labels as written,
        or a regression target in its units (the loss is then in those units)."""
        if isinstance(self.target, _pre.Standardize):  # the loss of the outputs in the target's units
            loss = _train.resolve_loss(loss)
            out = np.ascontiguousarray(self.predict(X, batch_size))
            T = loss.check_target(y.to_numpy() if hasattr(y, "to_numpy") else y, out.shape, out.dtype, "y")
            w = None if sample_weight is None else _train._weights(loss, T, sample_weight, None, "")
            return {"loss": loss.value(out, T, w)}
        return _train.evaluate(self, self._features(X), self._targets(y), loss, batch_size, sample_weight)

    def get_config(self):
        return [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers]

    @classmethod
    def _from_config(cls, architecture, arrays=None):
        """Build the model ``architecture`` describes, its parameters taken from ``arrays`` when given.

        ``architecture`` is validated first (see :func:`fastnn.architecture.parameter_specs`); no initialiser runs: without
        ``arrays`` the weights start at zero, for a caller that overwrites them.
        """
        specs = _arch.parameter_specs(architecture)
        if arrays is not None:
            _arch.check_arrays(specs, {name: (a.shape, a.dtype) for name, a in arrays.items()})
        layers = []
        for i, entry in enumerate(architecture):
            layer_cls, config = LAYERS[entry["class"]], dict(entry["config"])
            if layer_cls is Linear:
                name = config.get("init", "he")
                # The file's weights (or zeros) stand in for the initialiser, which would allocate and draw a
                # full random matrix only to have it overwritten.
                W = arrays[f"{i}.W"] if arrays is not None else None

                def init(rng, n_in, n_out, dtype, W=W):
                    return np.zeros((n_in, n_out), dtype) if W is None else W

                config["init"] = init
                layer = layer_cls(**config)
                layer.init = name
            else:
                layer = layer_cls(**config)
            if arrays is not None:
                for p in layer.parameters():
                    p.data = np.ascontiguousarray(arrays[f"{i}.{p.name}"])  # a .npy may be Fortran-ordered
            layers.append(layer)
        return cls(*layers)

    def save(self, path):
        """Write the architecture (JSON) and every parameter to one ``.npz`` file, atomically.

        A crash mid-write leaves any existing file at ``path`` intact.
        """
        _io.write_model(check("path", path, PATH), self.get_config(),
                        {name: p.data for name, p in self.named_parameters()},
                        self._preprocessing_config())

    def _preprocessing_config(self):
        if self.preprocessing is None and self.target is None:
            return None
        self._check_preprocessing()
        return {role: None if obj is None else {"class": type(obj).__name__, "config": obj.get_config()}
                for role, obj in (("features", self.preprocessing), ("target", self.target))}

    @classmethod
    def load(cls, path, *, allow_nonfinite=False):
        """Rebuild a model written by :meth:`save` (no pickle: nothing in the file is executed).

        The declared architecture is checked against the file's members (names, shapes, dtypes, sizes) before
        any array is decompressed or allocated, so a small hostile file cannot make this allocate much.

        Parameters
        ----------
        path : str or os.PathLike
            A regular file; FIFOs and devices are refused.
        allow_nonfinite : bool, default False
            Load weights holding NaN or inf (a model saved after its training diverged). By default such a
            file is refused.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            Naming the file and the fault: not a fastnn model, an unknown layer or config value, members
            that disagree with the architecture, or (unless allowed) a parameter with non-finite values.
        """
        check("allow_nonfinite", allow_nonfinite, BOOL)
        architecture, arrays, extra = _io.read_model(check("path", path, PATH), check=_arch.check_file,
                                                     preprocessing=True)
        try:
            model = cls._from_config(architecture, arrays)
            if extra is not None:
                if set(extra) != {"features", "target"}:
                    raise ValueError(f"preprocessing must have the keys 'features' and 'target', got {sorted(extra)}")
                model.preprocessing, model.target = (
                    None if extra[role] is None else _pre.from_config(extra[role], f"preprocessing {role}")
                    for role in ("features", "target"))
                model._check_preprocessing()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: invalid architecture in model file: {exc}") from exc
        except MemoryError:  # the parameters fit in RAM (checked), their gradients not in what is free now
            n_bytes = sum(a.nbytes for a in arrays.values())
            raise ValueError(f"{path}: not enough free memory for a model of {n_bytes:,} bytes of parameters "
                             "and as many of gradients") from None
        if not allow_nonfinite:
            for name, p in model.named_parameters():
                bad = p.data.size - np.count_nonzero(np.isfinite(p.data))
                if bad:
                    raise ValueError(f"{path}: parameter {name} holds {bad} non-finite value(s) (NaN or inf), "
                                     "as a model saved after its training diverged does; "
                                     "pass allow_nonfinite=True to load it anyway")
        return model

    def copy(self):
        """An independent copy (parameters copied, caches dropped)."""
        clone = self._from_config(self.get_config())
        clone.preprocessing, clone.target = (None if obj is None else type(obj).from_config(obj.get_config())
                                             for obj in (self.preprocessing, self.target))
        for dst, src in zip(clone.parameters(), self.parameters()):
            dst.data = src.data.copy()
            dst.grad = src.grad.copy()
        return clone

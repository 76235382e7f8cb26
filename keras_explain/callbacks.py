"""Keras callbacks that log to TensorBoard while a model trains.

:class:`ExplanationLogger` logs explanation heatmaps, :class:`EmbeddingLogger`
a layer's embeddings for the projector.

Both share one discipline: a bad configuration fails at ``on_train_begin``,
before any epoch; an error in a later epoch becomes a ``RuntimeWarning`` and
training goes on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_explain import _shards, representations, visualize
from keras_explain.analyzers.base import Analyzer
from keras_explain.analyzers.layer_output import LayerOutputs
from keras_explain.analyzers.registry import create_analyzer

SUBDIRECTORY = "explanations"


def _require_tensorboard(owner: str = "ExplanationLogger") -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"{owner} writes TensorBoard files and needs the tensorboard "
            'package: pip install "keras-explainer[tensorboard]".'
        ) from error


def _check_freq(freq: Any) -> int:
    if isinstance(freq, bool) or not isinstance(freq, int | np.integer) or freq < 1:
        raise ValueError(
            f"freq must be an int >= 1 (log every freq epochs). Received: freq={freq!r}."
        )
    return int(freq)


def _warn(owner: str, what: str, error: Exception) -> None:
    """Report an error of a later epoch; the training goes on."""
    warnings.warn(
        f"{owner} {what}; training continues. {type(error).__name__}: {error}",
        RuntimeWarning,
        stacklevel=3,
    )


def _metrics(metrics: Any, masks: Any) -> dict[str, Any]:
    """``{scalar name: metric}`` from names of ``kx.metrics.METRICS`` and callables."""
    from keras_explain.metrics import registry

    if metrics is None:
        return {}
    if isinstance(metrics, str) or callable(metrics) or not isinstance(metrics, Sequence):
        raise TypeError(
            "metrics must be a list of names from kx.metrics.METRICS or callables. "
            f"Received: metrics={metrics!r}; wrap a single metric in a list."
        )
    chosen = registry.check_metrics(
        metrics, masks=masks is not None, caller="ExplanationLogger", callables=True
    )
    return {
        getattr(metric, "__name__", type(metric).__name__) if callable(metric) else metric: metric
        for metric in chosen
    }


class ExplanationLogger(keras.callbacks.Callback):
    """Log per-sample explanation overlays to TensorBoard during training.

    At the end of every ``freq``-th epoch (epochs ``0, freq, 2 freq, ...``, as
    ``keras.callbacks.TensorBoard(histogram_freq=freq)`` counts them) each
    analyzer explains ``x`` with the model's current weights, and the overlays
    (:func:`keras_explain.visualize.overlay`) are written with
    ``tf.summary.image`` under ``log_dir/explanations``, one image tag per
    method holding one image per sample, at ``step=epoch``. The inputs
    themselves are logged once under the tag ``"input"``. Use the same
    ``log_dir`` as a ``keras.callbacks.TensorBoard`` callback to see the
    explanations beside the training curves.

    Analyzers read the model's own variables, so they always explain the
    weights being trained; nothing is copied.

    With ``metrics``, each analyzer's explanations are also scored at the same
    epochs and the mean over the samples is written with ``tf.summary.scalar``
    under the tag ``"{analyzer tag}/{metric}"``: watch deletion AUC or the
    pointing game improve as the model trains. A metric is a column name of
    :data:`keras_explain.metrics.METRICS` (computed as
    :func:`keras_explain.metrics.evaluate` does: ``"deletion_auc"``,
    ``"pointing_game"`` with ``masks``, ...) or a callable
    ``metric(model, x, attributions, target)`` returning one value per sample
    (or one float), logged under its ``__name__``. NaN values (a constant
    explanation) are left out of the mean.

    The configuration is checked before the first epoch: the callback runs
    every analyzer once on ``x`` in ``on_train_begin`` and raises there if
    anything is wrong. An error in a later epoch (e.g. the weights became
    NaN) is reported with ``warnings.warn`` and training goes on; what was
    already written stays on disk (the writer is flushed after every epoch).
    The summary writer is created when first needed and closed at the end of
    training.

    Args:
        analyzers: Either a mapping ``{tag: analyzer}`` of analyzers built on
            the model being trained, or a list of registry names (see
            :func:`keras_explain.analyzers.names`) created with their default
            parameters for the trained model at ``on_train_begin``.
        x: The images to explain, ``(B, H, W, C)`` or ``(B, H, W)``, as the
            model takes them. Keep the batch small (e.g. 8).
        target: What to explain (see :mod:`keras_explain.targets`): None for
            the current prediction, an int, an int array ``(B,)`` (e.g. the
            true labels), ``"all"`` or a callable.
        log_dir: The TensorBoard log directory (default ``"logs"``, as
            ``keras.callbacks.TensorBoard``); summaries go to
            ``log_dir/explanations``.
        freq: Log every ``freq`` epochs (an int >= 1).
        overlay_options: Keyword arguments for
            :func:`keras_explain.visualize.overlay` (``alpha``, ``cmap``,
            ``percentile``, ``reduce``, ``value_range``).
        metrics: Metric names from :data:`keras_explain.metrics.METRICS` or
            callables, logged as scalars per analyzer (default: none).
        masks: Ground-truth masks ``(B, H, W)`` of ``x``, for
            ``"pointing_game"`` and ``"relevance_mass"``.
        vocabulary: For text models (``x`` int token ids ``(B, T)``), the
            words by id (e.g. ``TextVectorization.get_vocabulary()``); without
            it the ids are shown. Token attributions are then written with
            ``tf.summary.text`` (TensorBoard's Text tab), one Markdown table per
            sample (token, score, a bar of ``|score| / max|score|``; padding id
            0 left out), and the input sentences under ``"input"``.

    Raises:
        ValueError: At construction, for a bad ``freq``, an empty
            ``analyzers``, an ``x`` that is neither an image batch nor int token
            ids ``(B, T)``, ``vocabulary`` without token ids, a token id outside
            ``vocabulary``, an unknown
            metric, or a localisation metric without ``masks``. At
            ``on_train_begin``, for an unknown analyzer name or an analyzer
            or metric that fails on ``x`` (wrong shape, bad target,
            unsupported model, masks of the wrong shape); ``"randomization"``
            needs analyzers given by registry name.
        TypeError: At construction, for ``analyzers`` of the wrong type.
        ImportError: At ``on_train_begin``, if tensorboard is not installed.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8, 8, 1)),
        ...                           keras.layers.Conv2D(4, 3, activation="relu"),
        ...                           keras.layers.Flatten(), keras.layers.Dense(3)])
        >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.random((16, 8, 8, 1)), rng.integers(0, 3, 16)
        >>> import tempfile
        >>> log_dir = tempfile.mkdtemp()
        >>> logger = kx.callbacks.ExplanationLogger(["gradient"], x[:4], log_dir=log_dir,
        ...                                         metrics=["deletion_auc"])
        >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    """

    def __init__(
        self,
        analyzers: Mapping[str, Analyzer] | Sequence[str],
        x: Any,
        target: Any = None,
        log_dir: str | os.PathLike = "logs",
        freq: int = 1,
        *,
        overlay_options: Mapping[str, Any] | None = None,
        metrics: Sequence[str | Callable] | None = None,
        masks: Any = None,
        vocabulary: Sequence[str] | None = None,
    ):
        super().__init__()
        freq = _check_freq(freq)
        if isinstance(analyzers, Mapping):
            specs = dict(analyzers)
            for tag, analyzer in specs.items():
                if not isinstance(analyzer, Analyzer):
                    raise TypeError(
                        "analyzers must map tags to analyzers built on the trained model, "
                        f"e.g. {{'gradient': kx.Gradient(model)}}. Received: {tag!r} -> "
                        f"{type(analyzer).__name__}."
                    )
        elif isinstance(analyzers, Sequence) and not isinstance(analyzers, str):
            specs = {}
            for name in analyzers:
                if not isinstance(name, str):
                    raise TypeError(
                        "A list of analyzers must hold registry names such as 'gradient'. "
                        f"Received: {name!r} of type {type(name).__name__}; pass a dict "
                        "{tag: analyzer} for analyzer objects."
                    )
                specs[name] = name
        else:
            raise TypeError(
                "analyzers must be a dict {tag: analyzer} or a list of registry names. "
                f"Received: {type(analyzers).__name__}."
            )
        if not specs:
            raise ValueError("analyzers is empty; give at least one analyzer or name.")
        array = np.asarray(x)
        self.text = array.ndim == 2 and np.issubdtype(array.dtype, np.integer)
        if (array.ndim not in (3, 4) and not self.text) or array.shape[0] == 0:
            raise ValueError(
                "ExplanationLogger draws images or token attributions: x must be a non-empty "
                "batch of images shaped (batch, height, width[, channels]) or of int token "
                f"ids shaped (batch, length). Received: shape {array.shape}, dtype {array.dtype}."
            )
        if vocabulary is not None and not self.text:
            raise ValueError(
                "ExplanationLogger: vocabulary= maps token ids to words and needs x of int "
                f"token ids shaped (batch, length). Received: x of shape {array.shape}, dtype "
                f"{array.dtype}. Drop vocabulary=, or pass the token ids."
            )
        self.vocabulary = None if vocabulary is None else list(vocabulary)
        self.words = None
        if self.text:
            # every id checked against the vocabulary now, not at the first epoch
            self.words = [visualize.token_strings(row, self.vocabulary) for row in array]
        self.specs = specs
        self.x = array
        self.target = target
        self.log_dir = os.fspath(log_dir)
        self.freq = freq
        self.overlay_options = dict(overlay_options or {})
        self.metrics = _metrics(metrics, masks)
        self.masks = masks
        self.analyzers: dict[str, Analyzer] = {}
        self._writer = None
        self._inputs_logged = False

    @property
    def summary_dir(self) -> str:
        """The directory the summaries are written to (``log_dir/explanations``)."""
        return os.path.join(self.log_dir, SUBDIRECTORY)

    def explain(self) -> dict[str, np.ndarray]:
        """The overlays for the current weights: ``{tag: (B, H, W, 3) uint8}``."""
        return {tag: self._pictures(tag, analyzer) for tag, analyzer in self.analyzers.items()}

    def _pictures(self, tag: str, analyzer: Analyzer) -> np.ndarray:
        return self._overlays(tag, analyzer.analyze(self.x, self.target))

    def _overlays(self, tag: str, relevance: Any) -> np.ndarray:
        if isinstance(relevance, list):
            raise ValueError(
                f"Analyzer {tag!r} returned one result per model input; ExplanationLogger "
                "draws single-input models only."
            )
        if self.text:
            relevance = np.asarray(relevance)
            if relevance.shape != self.x.shape:
                raise ValueError(
                    f"Analyzer {tag!r} returned attributions of shape {relevance.shape}, not "
                    f"one score per token {self.x.shape}; use a method that explains the "
                    "tokens (gradient, integrated_gradients, deeplift, lrp.*)."
                )
            return np.array(
                [_token_table(w, t, r) for w, t, r in zip(self.words, self.x, relevance)]
            )
        return visualize.to_uint8(visualize.overlay(self.x, relevance, **self.overlay_options))

    def scores(self, tag: str, attributions: np.ndarray | None = None) -> dict[str, float]:
        """The metrics of one analyzer for the current weights: ``{metric name: mean}``.

        Args:
            tag: An analyzer tag.
            attributions: Its explanation of ``x`` (computed if not given).
        """
        analyzer = self.analyzers[tag]
        if attributions is None:
            attributions = analyzer.analyze(self.x, self.target)
        return {
            name: float(np.nanmean(self._metric(metric, tag, analyzer, attributions)))
            for name, metric in self.metrics.items()
        }

    def _metric(self, metric, tag: str, analyzer: Analyzer, attributions) -> np.ndarray:
        from keras_explain.metrics.engine import spatial_shape
        from keras_explain.metrics.registry import metric_values

        if callable(metric):
            return np.asarray(metric(self.model, self.x, attributions, self.target), float)
        spec = self.specs[tag]
        if metric == "randomization" and not isinstance(spec, str):
            raise ValueError(
                f"metric 'randomization' rebuilds the analyzer on a randomized clone and "
                f"needs its registry name. Received: analyzer {tag!r} given as an object; "
                "pass analyzers as a list of names, e.g. ['gradient']."
            )
        x = np.asarray(self.x, np.float32)
        return metric_values(
            metric,
            self.model,
            x,
            attributions,
            self.target,
            analyzer=analyzer,
            name=spec if isinstance(spec, str) else None,
            params={},
            masks=self.masks,
            steps=min(100, int(np.prod(spatial_shape(x)))),
            seed=0,
        )

    # -- Keras hooks -------------------------------------------------------
    def on_train_begin(self, logs=None):
        """Create the analyzers and run each once on ``x``; raise if any fails."""
        _require_tensorboard()
        self._inputs_logged = False
        self.analyzers = {}
        for tag, spec in self.specs.items():
            if isinstance(spec, str):
                try:
                    # no progress bars in the middle of the training log
                    self.analyzers[tag] = create_analyzer(spec, self.model, verbose=0)
                except (ValueError, TypeError) as error:
                    raise ValueError(
                        f"ExplanationLogger cannot create analyzer {spec!r} for model "
                        f"{self.model.name!r}: {error}"
                    ) from error
            else:
                self.analyzers[tag] = spec
        for tag, analyzer in self.analyzers.items():
            try:
                relevance = analyzer.analyze(self.x, self.target)
                self._overlays(tag, relevance)
            except Exception as error:
                raise ValueError(
                    f"ExplanationLogger: analyzer {tag!r} fails on x of shape "
                    f"{self.x.shape} with target={self.target!r}, so nothing could be "
                    f"logged; fix this before training. {type(error).__name__}: {error}"
                ) from error
            if self.metrics:
                try:
                    self.scores(tag, relevance)
                except Exception as error:
                    raise ValueError(
                        f"ExplanationLogger: the metrics {list(self.metrics)} fail for analyzer "
                        f"{tag!r} on x of shape {self.x.shape}; fix this before training. "
                        f"{type(error).__name__}: {error}"
                    ) from error

    def on_epoch_end(self, epoch, logs=None):
        """Write the overlays of every ``freq``-th epoch at ``step=epoch``."""
        if epoch % self.freq != 0:
            return
        try:
            writer = self._get_writer()
            with writer.as_default(step=epoch):
                if not self._inputs_logged:
                    self._write("input", self._input_pictures())
                    self._inputs_logged = True
                for tag, analyzer in self.analyzers.items():
                    try:
                        relevance = analyzer.analyze(self.x, self.target)
                        self._write(tag, self._overlays(tag, relevance))
                    except Exception as error:  # one method failing must not stop the rest
                        self._warn(f"could not explain {tag!r} at epoch {epoch}", error)
                        continue
                    if self.metrics:
                        self._write_scores(tag, epoch, relevance)
            writer.flush()
        except Exception as error:  # training must go on
            self._warn(f"could not write the summaries of epoch {epoch}", error)

    def _write_scores(self, tag: str, epoch: int, attributions: np.ndarray) -> None:
        import tensorflow as tf

        for name, metric in self.metrics.items():
            try:
                values = self._metric(metric, tag, self.analyzers[tag], attributions)
                tf.summary.scalar(f"{tag}/{name}", float(np.nanmean(values)))
            except Exception as error:  # one metric failing must not stop the rest
                self._warn(f"could not compute {name!r} of {tag!r} at epoch {epoch}", error)

    def _input_pictures(self) -> np.ndarray:
        if self.text:
            return np.array(
                [
                    " ".join(w for w, i in zip(words, ids) if i != 0)
                    for words, ids in zip(self.words, self.x)
                ]
            )
        value_range = self.overlay_options.get("value_range")
        return visualize.to_uint8(visualize.as_rgb(self.x, value_range=value_range))

    def _write(self, tag: str, pictures: np.ndarray) -> None:
        import tensorflow as tf

        if self.text:
            tf.summary.text(tag, tf.constant(pictures))
        else:
            tf.summary.image(tag, pictures, max_outputs=len(self.x))

    @staticmethod
    def _warn(what: str, error: Exception) -> None:
        _warn("ExplanationLogger", what, error)

    def on_train_end(self, logs=None):
        """Close the summary writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _get_writer(self):
        if self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.summary_dir)
        return self._writer


def _token_table(words: Sequence[str], ids: np.ndarray, scores: np.ndarray) -> str:
    """One sample's token attributions as a Markdown table for TensorBoard's Text tab.

    TensorBoard sanitizes the HTML of text summaries (no colours survive), so each
    token gets its score and a bar of ``|score| / max|score|`` (10 blocks), ``+`` or
    ``-``; padding (id 0) is left out. Markdown characters of the words are escaped.
    """
    kept = [(w, float(s)) for w, i, s in zip(words, ids, scores) if i != 0]
    peak = max((abs(s) for _, s in kept), default=0.0) or 1.0
    lines = ["| token | attribution | |", "|---|---:|---|"]
    for word, score in kept:
        bar = "█" * int(round(10 * abs(score) / peak))
        sign = "+" if score > 0 else "-" if score < 0 else ""
        escaped = "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>" else c for c in word)
        lines.append(f"| {escaped} | {score:+.4g} | {sign} {bar} |")
    return "\n".join(lines)


class EmbeddingLogger(keras.callbacks.Callback):
    """Write a layer's activations on ``x`` as TensorBoard Projector embeddings while training.

    At the end of every ``freq``-th epoch (epochs ``0, freq, 2 freq, ...``, as
    :class:`ExplanationLogger`), the activations of ``layer`` on ``x`` (the
    current weights, inference mode, :func:`keras_explain.activations`) are
    written with :func:`keras_explain.representations.write_projector` into
    ``log_dir`` as the embedding ``"{layer}_epoch{epoch}"``, with ``labels``
    as metadata and ``images`` as sprite thumbnails. Every epoch stays in the
    one ``projector_config.pbtxt``, so ``tensorboard --logdir log_dir`` shows them
    side by side in the "Projector" tab (TensorBoard reads the config of the log
    directory itself and of each run directory; use the same ``log_dir`` as
    ``keras.callbacks.TensorBoard``).

    The configuration is checked at ``on_train_begin``: the layer is looked up
    in the trained model and the activations computed once; any error is
    raised there, before the first epoch. An error in a later epoch (e.g. the
    activations became NaN) is reported with ``warnings.warn`` and training goes
    on; embeddings already written stay on disk.

    Args:
        layer: The layer (name or object, nested models included).
        x: The inputs to embed, as the model takes them (an array, or a list of
            arrays for a multi-input model). A few hundred to a few thousand.
        labels: ``(N,)`` labels, or a dict ``{column: (N,) values}``, or None.
        log_dir: The log directory (default ``"logs"``).
        freq: Log every ``freq`` epochs (an int >= 1).
        images: Optional ``(N, H, W[, C])`` thumbnails for the sprite (often ``x``).
        batch_size: Samples per pass when computing the activations.

    Raises:
        ValueError: At construction, for a bad ``freq``, an empty ``x`` or
            labels/images of another length than ``x``. At ``on_train_begin``,
            for a layer not in the model or activations that cannot be computed
            on ``x``.
        ImportError: At ``on_train_begin``, if tensorboard is not installed.

    Example:
        >>> import keras, numpy as np, tempfile, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"),
        ...                           keras.layers.Dense(2)])
        >>> model.compile("adam", "mse")
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.random((32, 4)), rng.random((32, 2))
        >>> logger = kx.callbacks.EmbeddingLogger("hidden", x, y.argmax(1), tempfile.mkdtemp())
        >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    """

    def __init__(
        self,
        layer: str | keras.Layer,
        x: Any,
        labels: Any = None,
        log_dir: str | os.PathLike = "logs",
        freq: int = 1,
        *,
        images: Any = None,
        batch_size: int | None = None,
    ):
        super().__init__()
        self.freq = _check_freq(freq)
        first = x[0] if isinstance(x, list | tuple) else x
        count = len(first) if hasattr(first, "__len__") else 0
        if count == 0:
            raise ValueError(
                "EmbeddingLogger needs a non-empty batch x to embed. Received: "
                f"x of type {type(x).__name__} with {count} samples."
            )
        for name, value in (("labels", labels), ("images", images)):
            if value is None:
                continue
            columns = value.values() if isinstance(value, Mapping) else [value]
            if any(len(column) != count for column in columns):
                raise ValueError(
                    f"EmbeddingLogger: {name} must have one entry per sample of x ({count}). "
                    f"Received: {name} with {[len(c) for c in columns]} entries."
                )
        self.layer = layer
        self.x = x
        self.labels = labels
        self.images = images
        self.log_dir = os.fspath(log_dir)
        self.batch_size = batch_size
        self._outputs = None

    def embeddings(self) -> np.ndarray:
        """The layer's activations on ``x`` for the current weights (float32)."""
        return self._outputs.compute(self.x, self.batch_size)[0]

    def on_train_begin(self, logs=None):
        """Find the layer and compute its activations once; raise if that fails."""
        _require_tensorboard("EmbeddingLogger")
        try:
            self._outputs = LayerOutputs(self.model, [self.layer])
            self.embeddings()
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"EmbeddingLogger cannot compute the activations of layer {self.layer!r} "
                f"of model {self.model.name!r} on x, so nothing could be logged; fix this "
                f"before training. {type(error).__name__}: {error}"
            ) from error

    def on_epoch_end(self, epoch, logs=None):
        """Write the embedding of every ``freq``-th epoch."""
        if epoch % self.freq != 0:
            return
        name = f"{self._outputs.layers[0].name}_epoch{epoch}"
        try:
            representations.write_projector(
                self.log_dir, self.embeddings(), self.labels, self.images, name=name
            )
        except Exception as error:  # training must go on
            _warn("EmbeddingLogger", f"could not write the embedding of epoch {epoch}", error)


class Checkpoints(keras.callbacks.Callback):
    """Record the weights and the learning rate during ``fit``, for TracIn.

    At the end of every ``every``-th epoch (epochs ``every, 2 every, ...``
    counted from 1) the model's weights are kept, in memory
    (``model.get_weights()``) or as ``path/epoch_0003.weights.h5``, together with
    the optimizer's current learning rate (a schedule's value at that step).
    Pass the callback itself as ``checkpoints=`` of
    :class:`keras_explain.influence.TracIn`: it reads :attr:`checkpoints` and
    :attr:`learning_rates`.

    A ``path`` that cannot be written fails at ``on_train_begin``, before any
    epoch; an error at a later epoch becomes a ``RuntimeWarning`` and training
    goes on.

    Args:
        every: Record every ``every`` epochs (an int >= 1).
        path: A directory for weight files, or None to keep the weights in memory.

    Raises:
        ValueError: For a bad ``every``; at ``on_train_begin``, for a ``path``
            that cannot be written.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        >>> record = kx.callbacks.Checkpoints(every=2)
        >>> x = np.ones((4, 2), "float32")
        >>> _ = model.fit(x, x[:, :1], epochs=4, verbose=0, callbacks=[record])
        >>> len(record.checkpoints), [round(r, 3) for r in record.learning_rates]
        (2, [0.1, 0.1])
    """

    def __init__(self, every: int = 1, path: str | os.PathLike | None = None):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 1:
            raise ValueError(
                f"Checkpoints: every must be an int >= 1 (record every `every` epochs). "
                f"Received: every={every!r}."
            )
        self.every = int(every)
        self.path = None if path is None else os.fspath(path)
        #: The recorded weights: lists of arrays, or ``.weights.h5`` paths.
        self.checkpoints: list[Any] = []
        #: The learning rate at each recorded checkpoint.
        self.learning_rates: list[float] = []

    def on_train_begin(self, logs=None):
        """Check that ``path`` can be written before any epoch."""
        if self.path is None:
            return
        try:
            _shards.writable_directory(self.path)
        except OSError as error:
            raise ValueError(
                f"Checkpoints cannot write weight files to {self.path!r}: {error}. Pass a "
                "writable directory, or path=None to keep the weights in memory."
            ) from error

    def on_epoch_end(self, epoch, logs=None):
        """Record the weights and learning rate of every ``every``-th epoch."""
        if (epoch + 1) % self.every != 0:
            return
        try:
            rate = float(np.asarray(self.model.optimizer.learning_rate))
            if self.path is None:
                weights = [np.array(w, copy=True) for w in self.model.get_weights()]
            else:
                weights = os.path.join(self.path, f"epoch_{epoch + 1:04d}.weights.h5")
                self.model.save_weights(weights, overwrite=True)
        except Exception as error:  # training must go on
            _warn("Checkpoints", f"could not record the weights of epoch {epoch + 1}", error)
            return
        self.checkpoints.append(weights)
        self.learning_rates.append(rate)

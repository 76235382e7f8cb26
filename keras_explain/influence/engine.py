"""What every influence method shares: the training set, the loss, checkpoints, gradients.

A method scores pairs (test example, training example) from *features* of each
example computed at each checkpoint: the per-example gradient of the training
loss (TracIn, influence functions) or a layer's activations (similarity). This
module computes them on a **clone** of the model (``keras.models.clone_model``;
checkpoint weights are loaded into the clone, the user's model is never
touched), in passes of :func:`keras_explain.config.rows_per_pass` rows, in
``float32`` whatever the model's compute dtype.

Per-example gradients come from one example's ``tf.GradientTape`` vectorized over
the batch (``tf.vectorized_map``: memory linear in the batch), except for a
classifier's last ``Dense`` layer, where the gradient of example ``i`` is the
closed form ``a_i ⊗ δ_i`` (kernel) and ``δ_i`` (bias), ``a_i`` the layer's input
and ``δ_i = ∂L_i/∂z_i`` the gradient at its pre-activation output (the trick of
Captum's ``TracInCPFast``, which leaves the bias out). Such gradients are kept as
the factors ``(a, δ)``: dot products ``(a_s · a_t + 1)(δ_s · δ_t)`` never form
the outer products.

A random projection (``projection_dim=d``) maps each gradient ``g`` of ``P``
values to ``g R`` with ``R`` a ``P × d`` Gaussian matrix of variance ``1/d``
(Johnson–Lindenstrauss: dot products kept in expectation, with a relative error of
order ``1/sqrt(d)``); ``R`` is drawn in blocks of rows from stateless seeds, so it
is never held whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _clone, _validate, config, graph

#: Rows of the projection matrix drawn per block (one stateless seed each).
PROJECTION_BLOCK = 2**14
#: Training rows read per block when scores are computed (memory-mapped features).
DOT_BLOCK = 2**16
#: Peak bytes of a per-example-gradient pass per byte of the gradients it returns.
GRADIENT_MEMORY_FACTOR = 3.0


def checked(owner: str, check: Callable, *args: Any) -> Any:
    """``check(*args)`` from :mod:`keras_explain._validate`, its error prefixed by ``owner``."""
    try:
        return check(*args)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


# -- The training set ----------------------------------------------------------------------
class TrainingSet:
    """The training examples ``(x, y)``, read in chunks: arrays or a ``tf.data.Dataset``.

    Args:
        train: ``(x, y)`` arrays (``x`` a dict of arrays, or ``np.memmap`` arrays read
            one chunk at a time), a ``tf.data.Dataset`` of ``(x, y)`` pairs, batched or
            not, or a re-iterable of ``(x, y)`` / ``(x, y, sample_weight)`` batches (a
            ``keras.utils.PyDataset``): what
            :func:`~keras_explain.explain_dataset` reads, labels included.
        owner: The class name, for error messages.
        input_rank: Rank of one model input with its batch axis (tells a batched
            dataset from an unbatched one).

    Raises:
        ValueError: For an empty training set, or ``x`` and ``y`` of different lengths.
        TypeError: For anything else.
    """

    def __init__(self, train: Any, owner: str, input_rank: int | None):
        self.owner = owner
        self.dataset = self.batches = None
        if isinstance(train, tf.data.Dataset):
            spec = train.element_spec
            if not isinstance(spec, tuple) or len(spec) != 2:
                raise TypeError(
                    f"{owner}: a training tf.data.Dataset must yield (x, y) pairs. Received: "
                    f"element_spec={spec!r}."
                )
            rank = tf.nest.flatten(spec[0])[0].shape.rank
            batched = input_rank is None or rank == input_rank
            self.dataset = train.unbatch() if batched else train
            self.size = int(sum(int(len(tf.nest.flatten(b[1])[0])) for b in self._batches(4096)))
        elif isinstance(train, tuple | list) and len(train) == 2:
            self.x, self.y = train
            lengths = {len(a) for a in tf.nest.flatten(self.x)}
            if len(lengths) != 1 or len(self.y) not in lengths:
                raise ValueError(
                    f"{owner}: x and y of the training set need one row per example. Received: "
                    f"x of {sorted(lengths)} rows and y of {len(self.y)}."
                )
            self.y = np.asarray(self.y)
            self.size = len(self.y)
        elif isinstance(train, Iterable) and not isinstance(train, str | bytes | dict):
            if iter(train) is train:
                raise TypeError(
                    f"{owner}: train is a one-shot iterator ({type(train).__name__}); the "
                    "training set is read once per checkpoint. Pass a tf.data.Dataset, a "
                    "keras.utils.PyDataset, or the arrays (x, y)."
                )
            self.batches = train
            self.size = int(sum(len(y) for _, y in self._iterated()))
        else:
            raise TypeError(
                f"{owner}: train must be a pair (x, y) of arrays (np.memmap included), a "
                "tf.data.Dataset of (x, y), or a re-iterable of (x, y) batches such as a "
                f"keras.utils.PyDataset. Received: {type(train).__name__}."
            )
        if self.size == 0:
            raise ValueError(f"{owner}: the training set is empty. Received: 0 examples.")

    def _batches(self, rows: int) -> Iterator[tuple[Any, Any]]:
        for x, y in self.dataset.batch(rows):
            yield tf.nest.map_structure(np.asarray, x), np.asarray(y)

    def _iterated(self) -> Iterator[tuple[Any, np.ndarray]]:
        """The re-iterable's batches as ``(x, y)`` arrays (a sample weight is dropped)."""
        for number, batch in enumerate(self.batches):
            if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
                raise ValueError(
                    f"{self.owner}: batch {number} of the training set is not (x, y) or "
                    f"(x, y, sample_weight). Received: {type(batch).__name__}"
                    f"{f' of {len(batch)} items' if isinstance(batch, tuple | list) else ''}."
                )
            yield tf.nest.map_structure(np.asarray, batch[0]), np.asarray(batch[1])

    def chunks(self, rows: int) -> Iterator[tuple[Any, np.ndarray]]:
        """``(x, y)`` chunks of at most ``rows`` examples, in order."""
        if self.dataset is not None:
            yield from self._batches(rows)
        elif self.batches is not None:  # each batch cut to at most ``rows``
            for x, y in self._iterated():
                yield from chunked(x, y, rows)
        else:
            yield from chunked(self.x, self.y, rows)


def query_pair(x: Any, y: Any, owner: str) -> tuple[Any, np.ndarray]:
    """Test examples ``(x, y)`` checked: one label row per input row.

    Raises:
        ValueError: For lengths that differ.
    """
    lengths = {len(a) for a in tf.nest.flatten(x)}
    y = np.asarray(y)
    if y.ndim == 0 or len(lengths) != 1 or len(y) not in lengths:
        raise ValueError(
            f"{owner}: y needs one label per test example. Received: x of {sorted(lengths)} "
            f"rows and y of shape {y.shape}."
        )
    return x, y


def chunked(x: Any, y: np.ndarray, rows: int) -> Iterator[tuple[Any, np.ndarray]]:
    """``(x, y)`` of in-memory examples in chunks of at most ``rows``."""
    for start in range(0, len(y), rows):
        part = slice(start, start + rows)
        yield tf.nest.map_structure(lambda a, part=part: np.asarray(a[part]), x), y[part]


# -- The loss ------------------------------------------------------------------------------
def per_example_loss(loss: Any, model: keras.Model, owner: str) -> Callable:
    """``loss(y_true, y_pred) -> (B,)``: one value per example, no reduction.

    Args:
        loss: A ``keras.losses.Loss`` (its unreduced ``call``), a Keras loss name
            (``"sparse_categorical_crossentropy"``; probabilities expected, as
            Keras' functions), a callable returning one value per example, or
            None for the model's compiled loss.

    Raises:
        ValueError: For None on a model compiled without a loss.
        TypeError: For anything else.
    """
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                f"{owner} needs the training loss. Received: loss=None and a model compiled "
                "without one. Pass loss=keras.losses.SparseCategoricalCrossentropy("
                "from_logits=True) (or the loss it was trained with), or compile the model."
            )
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if callable(loss):
        return loss
    raise TypeError(
        f"{owner}: loss must be a keras.losses.Loss, a loss name or a callable "
        f"loss(y_true, y_pred) -> per-example values. Received: {type(loss).__name__}."
    )


# -- Checkpoints ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One set of weights (arrays as ``model.get_weights()``, or a ``.weights.h5`` path)."""

    weights: Any
    learning_rate: float


def checkpoints_of(
    model: keras.Model, checkpoints: Any, learning_rates: Any, owner: str
) -> list[Checkpoint]:
    """The checkpoints as a list, each with its learning rate.

    Args:
        checkpoints: None (the model's current weights), a
            :class:`~keras_explain.callbacks.Checkpoints` callback, or a list of
            weight lists (``model.get_weights()``) or ``.weights.h5`` paths.
        learning_rates: None (the callback's rates, else 1.0 each), a number, or
            one number per checkpoint.

    Raises:
        ValueError: For an empty list, weights that do not fit the model, missing
            files, or learning rates of the wrong length.
    """
    recorded = None
    if checkpoints is None:
        checkpoints = [model.get_weights()]
    elif hasattr(checkpoints, "checkpoints") and hasattr(checkpoints, "learning_rates"):
        recorded = list(checkpoints.learning_rates)
        checkpoints = list(checkpoints.checkpoints)
    if isinstance(checkpoints, str | os.PathLike) or not isinstance(checkpoints, Sequence):
        raise TypeError(
            f"{owner}: checkpoints must be a list of weight lists or .weights.h5 paths, or a "
            f"kx.callbacks.Checkpoints. Received: {type(checkpoints).__name__}."
        )
    if not checkpoints:
        raise ValueError(
            f"{owner}: checkpoints is empty. Received: checkpoints=[]. Record some with "
            "kx.callbacks.Checkpoints during fit, or pass None for the model's weights."
        )
    shapes = [tuple(w.shape) for w in model.weights]
    for number, weights in enumerate(checkpoints):
        if isinstance(weights, str | os.PathLike):
            if not os.path.exists(weights):
                raise ValueError(f"{owner}: checkpoint {number} not found. Received: {weights!r}.")
            continue
        got = [tuple(np.shape(w)) for w in weights]
        if got != shapes:
            raise ValueError(
                f"{owner}: checkpoint {number} does not fit model {model.name!r}: it holds "
                f"{len(got)} arrays shaped {got[:4]}{'...' if len(got) > 4 else ''}, the model "
                f"{len(shapes)} weights shaped {shapes[:4]}{'...' if len(shapes) > 4 else ''}. "
                "Pass checkpoints of this architecture."
            )
    if learning_rates is None:
        learning_rates = recorded if recorded is not None else 1.0
    if np.ndim(learning_rates) not in (0, 1) or (
        np.ndim(learning_rates) == 1 and len(learning_rates) != len(checkpoints)
    ):
        raise ValueError(
            f"{owner}: learning_rates needs one rate per checkpoint ({len(checkpoints)}). "
            f"Received: learning_rates={learning_rates!r}."
        )
    rates = np.broadcast_to(np.asarray(learning_rates, np.float64), (len(checkpoints),))
    return [Checkpoint(w, float(r)) for w, r in zip(checkpoints, rates)]


def load(clone: keras.Model, checkpoint: Checkpoint) -> None:
    """Put a checkpoint's weights into the clone."""
    if isinstance(checkpoint.weights, str | os.PathLike):
        clone.load_weights(checkpoint.weights)
    else:
        clone.set_weights(checkpoint.weights)


# -- Layers and their variables ------------------------------------------------------------
def chosen_layers(model: keras.Model, layers: Any, owner: str) -> list[keras.Layer] | None:
    """The layers named in ``layers`` (None: every trainable variable is used).

    Raises:
        ValueError: For an unknown name or a layer without trainable weights.
    """
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [layers]
    named = {layer.name: layer for layer in _clone.leaf_layers(model)}
    chosen = []
    for name in layers:
        layer = named.get(name)
        if layer is None or not layer.trainable_weights:
            raise ValueError(
                f"{owner}: {name!r} is not a layer of model {model.name!r} with trainable "
                f"weights. Received: layers={list(layers)!r}. Layers with trainable weights: "
                f"{[n for n, layer in named.items() if layer.trainable_weights]}."
            )
        chosen.append(layer)
    return chosen


def last_dense(clone: keras.Model, layers: list[keras.Layer] | None) -> keras.Layer | None:
    """The one chosen layer when it is a ``Dense`` producing the model's only output."""
    if layers is None or len(layers) != 1:
        return None
    layer = layers[0]
    outputs = tf.nest.flatten(clone.outputs)
    if (
        type(layer) is not keras.layers.Dense
        or len(outputs) != 1
        or layer.output is not outputs[0]
        or len(layer.input.shape) != 2
    ):
        return None
    return layer


# -- Features: per-example gradients, kept whole, projected or as factors ------------------
@dataclasses.dataclass
class Features:
    """Per-example features of a set of examples at one checkpoint.

    Attributes:
        full: ``(n, P)`` gradients (or projections, or activations), or None.
        inputs: ``(n, d_in)`` the last Dense layer's inputs ``a`` (factored form).
        deltas: ``(n, d_out)`` ``δ = ∂L/∂z`` at its pre-activation output.
        bias: Whether the layer has a bias (a ``+1`` in the factored dot product).
        squared_norms: ``(n,)`` the exact ``||g||²`` (before any projection).
    """

    full: np.ndarray | None = None
    inputs: np.ndarray | None = None
    deltas: np.ndarray | None = None
    bias: bool = False
    squared_norms: np.ndarray | None = None

    def dot(self, other: Features) -> np.ndarray:
        """``(n_self, n_other)`` dot products of every pair, float64.

        ``other`` (the training set, possibly memory-mapped) is read in blocks of
        :data:`DOT_BLOCK` rows.
        """
        size = len(other.full if other.full is not None else other.inputs)
        result = np.empty((len(self), size))
        for start in range(0, size, DOT_BLOCK):
            part = slice(start, start + DOT_BLOCK)
            if self.full is not None:
                block = np.asarray(other.full[part], np.float64)
                result[:, part] = self.full.astype(np.float64) @ block.T
                continue
            left = self.inputs.astype(np.float64) @ np.asarray(other.inputs[part], np.float64).T
            if self.bias:
                left += 1.0
            deltas = np.asarray(other.deltas[part], np.float64)
            result[:, part] = left * (self.deltas.astype(np.float64) @ deltas.T)
        return result

    def __len__(self) -> int:
        return len(self.full if self.full is not None else self.inputs)


def concatenate(parts: list[Features]) -> Features:
    """The features of consecutive chunks as one."""
    first = parts[0]

    def joined(name):
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values)

    return Features(
        joined("full"), joined("inputs"), joined("deltas"), first.bias, joined("squared_norms")
    )


class GradientFeatures:
    """Per-example loss gradients of a clone of ``model``, at any checkpoint.

    Args:
        model: The Keras model (never modified).
        loss: A per-example loss, as :func:`per_example_loss` returns.
        layers: The chosen layers (None: every trainable variable).
        projection_dim: Dimension of the random projection, or None.
        seed: Seed of the projection.
    """

    def __init__(self, model, loss, layers, projection_dim, seed):
        self.model = model
        self.clone = _clone.cloned(model)
        self.loss = loss
        names = None if layers is None else [layer.name for layer in layers]
        self.layers = None if names is None else [self.clone.get_layer(n) for n in names]
        if self.layers is None:
            self.variables = list(self.clone.trainable_variables)
        else:
            self.variables = [v for layer in self.layers for v in layer.trainable_variables]
        self.parameters = int(sum(math.prod(v.shape) for v in self.variables))
        self.dense = last_dense(self.clone, self.layers)
        if self.dense is not None:
            self.head_inputs = keras.Model(self.clone.inputs, self.dense.input)
        self.projection_dim = projection_dim
        self.seed = seed
        try:
            self.bytes_per_sample = graph.Plan(model).bytes_per_sample()
        except (ValueError, TypeError, NotImplementedError):  # a model the plan cannot read
            self.bytes_per_sample = None
        #: A ``(P, k)`` basis replacing the random projection (influence functions'
        #: eigenvectors), or None.
        self.basis: np.ndarray | None = None
        self._jacobian = compiled(GradientFeatures._gradients, self)
        self._factors = compiled(GradientFeatures._dense_factors, self)

    def rows(self, backward_passes: int = 1) -> int:
        """Rows of one pass within the memory budget.

        Args:
            backward_passes: Backward passes vectorized per row (a Hessian's ``P``):
                each holds the row's activations.

        Returns:
            At most the rows whose activations (estimated from the model's plan)
            and float32 gradients fit :func:`keras_explain.config.memory_budget`.
        """
        width = self.parameters if self.dense is None else 0
        per_row = 4 * max(width, 1) * GRADIENT_MEMORY_FACTOR
        activations = config.rows_per_pass(
            self.bytes_per_sample, _input_elements(self.model), factor=0.35 * backward_passes
        )
        return int(max(1, min(activations, config.memory_budget() // per_row)))

    def losses(self, y, predictions):
        """``(B,)`` float32 per-example losses of the model's outputs ``predictions``."""
        values = self.loss(y, tf.cast(predictions, tf.float32))
        return tf.reshape(tf.cast(values, tf.float32), [-1])

    def _gradients(self, x, y):
        """``(B, P)`` per-example gradients: one example's gradient, vectorized over B.

        (The Jacobian of the batch's losses would back-propagate every loss through
        the whole batch: memory quadratic in B.)
        """

        def one(example):
            inputs, label = example
            inputs = tf.nest.map_structure(lambda t: t[None], inputs)
            with tf.GradientTape() as tape:
                value = tf.reduce_sum(self.losses(label[None], self.clone(inputs, training=False)))
            grads = tape.gradient(value, self.variables)
            return tf.concat(
                [
                    tf.zeros([math.prod(v.shape)])
                    if g is None
                    else tf.reshape(tf.cast(g, tf.float32), [-1])
                    for g, v in zip(grads, self.variables)
                ],
                0,
            )

        return tf.vectorized_map(one, (x, y))

    def _dense_factors(self, x, y):
        inputs = tf.cast(self.head_inputs(x, training=False), tf.float32)
        kernel = tf.cast(self.dense.kernel, tf.float32)
        with tf.GradientTape() as tape:
            z = inputs @ kernel
            if self.dense.use_bias:
                z = z + tf.cast(self.dense.bias, tf.float32)
            tape.watch(z)
            losses = self.losses(y, self.dense.activation(z))
        return inputs, tape.gradient(losses, z)  # rows are independent: per-example δ

    def of(self, x, y) -> Features:
        """The features of one chunk at the clone's current weights."""
        if self.dense is not None:
            inputs, deltas = (t.numpy() for t in self._factors(tensors(x), tf.constant(y)))
            norms = np.sum(deltas.astype(np.float64) ** 2, axis=1) * (
                np.sum(inputs.astype(np.float64) ** 2, axis=1) + float(self.dense.use_bias)
            )
            features = Features(None, inputs, deltas, self.dense.use_bias, norms)
            if self.projection_dim is None and self.basis is None:
                return features
            full = np.einsum("bi,bo->bio", inputs, deltas).reshape(len(inputs), -1)
            if self.dense.use_bias:
                full = np.concatenate([full, deltas], axis=1)
            return Features(self.project(full), squared_norms=norms)
        with quiet_pfor():
            gradients = self._jacobian(tensors(x), tf.constant(y)).numpy()
        norms = np.sum(gradients.astype(np.float64) ** 2, axis=1)
        projected = self.projection_dim is not None or self.basis is not None
        full = self.project(gradients) if projected else gradients
        return Features(full, squared_norms=norms)

    def project(self, gradients: np.ndarray) -> np.ndarray:
        """``g R``: ``R`` drawn block by block from stateless seeds, variance ``1/d``.

        With a :attr:`basis`, the coordinates ``g V`` in it instead.
        """
        if self.basis is not None:
            return gradients.astype(np.float64) @ self.basis
        d = self.projection_dim
        result = np.zeros((len(gradients), d), np.float64)
        for block, start in enumerate(range(0, gradients.shape[1], PROJECTION_BLOCK)):
            part = gradients[:, start : start + PROJECTION_BLOCK]
            matrix = tf.random.stateless_normal(
                (part.shape[1], d), seed=[self.seed, block], dtype=tf.float32
            ).numpy()
            result += part.astype(np.float64) @ matrix.astype(np.float64)
        return (result / math.sqrt(d)).astype(np.float32)

    def checked_of(self, x, y) -> Features:
        """:meth:`of`, an error of the loss on these labels explained.

        Raises:
            ValueError: When the loss cannot take the labels with the model's outputs.
        """
        try:
            return self.of(x, y)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(
                f"The loss could not be computed on the model's outputs with these labels "
                f"(y of shape {np.shape(y)}, outputs {_output_shapes(self.model)}): "
                f"{type(error).__name__}: {str(error).splitlines()[0]} Pass labels and a "
                "loss that match the model's output."
            ) from None

    def features(self, chunks: Iterator[tuple[Any, np.ndarray]]) -> Features:
        """The features of every chunk, concatenated."""
        return concatenate([self.checked_of(x, y) for x, y in chunks])


def checkpoint_features(
    gradients: GradientFeatures, checkpoints: list[Checkpoint], x: Any, y: np.ndarray
) -> list[Features]:
    """The features of in-memory examples ``(x, y)`` at every checkpoint, in order."""
    rows = gradients.rows()
    result = []
    for checkpoint in checkpoints:
        load(gradients.clone, checkpoint)
        result.append(gradients.features(chunked(x, y, rows)))
    return result


def compiled(method: Callable, owner: Any) -> Callable:
    """``tf.function`` of ``method`` bound to ``owner``, one trace per input signature.

    A ``functools.partial``, not a bound method or a closure: TensorFlow's retracing
    detector keys on the code object, which every instance would share, and would
    warn about "retracing" when a user builds several methods.
    """
    return tf.function(functools.partial(method, owner), reduce_retracing=True)


@contextlib.contextmanager
def quiet_pfor() -> Iterator[None]:
    """Hide ``pfor``'s "uses a while_loop" warnings while a vectorized map is traced.

    Some gradients (``Conv2DBackpropFilter``) have no vectorized form and run as a
    loop over the examples: correct, slower, and not the user's to fix. TensorFlow's
    logger level is restored on exit.
    """
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def tensors(x: Any) -> Any:
    """Arrays (or a dict of them) as tensors."""
    return tf.nest.map_structure(tf.constant, x)


def _input_elements(model: keras.Model) -> int:
    return int(sum(math.prod(d or 1 for d in t.shape[1:]) for t in tf.nest.flatten(model.inputs)))


def _output_shapes(model: keras.Model) -> list:
    return [tuple(t.shape) for t in tf.nest.flatten(model.outputs)]


def input_rank(model: keras.Model) -> int | None:
    """Rank (with the batch axis) of the model's first input, or None for several inputs."""
    inputs = tf.nest.flatten(model.inputs)
    return len(inputs[0].shape) if len(inputs) == 1 else None


def checked_k(k: Any, size: int, owner: str) -> int:
    """``k`` checked: an int in ``[1, size]``.

    Raises:
        ValueError: Otherwise.
    """
    k = checked(owner, _validate.positive_int, k, "k")
    if k > size:
        raise ValueError(
            f"{owner}: k is larger than the training set ({size} examples). Received: k={k}."
        )
    return k


def top_k(scores: np.ndarray, k: Any, largest: bool, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, scores)`` ``(n_test, k)`` of the k largest (or smallest) scores per row.

    Raises:
        ValueError: For ``k`` not in ``[1, n_train]``.
    """
    k = checked_k(k, scores.shape[1], owner)
    keyed = -scores if largest else scores
    part = np.argpartition(keyed, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(keyed, part, axis=1), axis=1, kind="stable")
    indices = np.take_along_axis(part, order, axis=1)
    return indices, np.take_along_axis(scores, indices, axis=1)

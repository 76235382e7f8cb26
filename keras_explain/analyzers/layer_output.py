"""The outputs of intermediate layers, computed by the graph engine: ``kx.activations``.

:class:`LayerOutputs` runs a model's :class:`~keras_explain.graph.Plan` up to the
requested layers only (steps no requested value needs are skipped) inside one
compiled function per input signature, with the input handling, batching and
``tf.data`` support every analyzer shares. Concepts and representations use it;
no ``keras.Model`` is built per call and the user's model is not modified.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _batching, _validate
from keras_explain.analyzers.base import Analyzer
from keras_explain.targets import parse_target

LayerLike = str | keras.Operation


class LayerOutputs(Analyzer):
    """The outputs of some layers of a Functional or Sequential model, as float32.

    Args:
        model: A built Functional or Sequential model (nested models inlined).
        layers: The layers (names or objects, nested models included; a nested
            model itself stands for its output) whose outputs are computed.

    Attributes:
        layers: The layer objects, in the order given.

    Raises:
        ValueError: For an unknown layer name, an unbuilt Sequential model or
            an empty ``layers``.
        TypeError: For a subclassed model (it has no layer graph).
    """

    requires_graph = True
    returns_maps = True

    def __init__(self, model: keras.Model, layers: Sequence[LayerLike]):
        super().__init__(model, strip_softmax=False, verbose=0)
        if not layers:
            raise ValueError(
                f"LayerOutputs needs at least one layer of model {model.name!r}. "
                "Received: layers=[]."
            )
        self.layers = [self.plan.find_layer(layer) for layer in layers]
        self.keys = [self.plan.output_key_of(layer) for layer in self.layers]

    def explain_batch(self, inputs, target, indices, seed, params):
        """The requested layers' outputs, as float32."""
        values = self.plan.run(inputs, targets=self.keys)
        return [tf.cast(values[key], tf.float32) for key in self.keys]

    def batches(self, x: Any, batch_size: int | None = None) -> Iterator[list[np.ndarray]]:
        """The outputs batch by batch: one list (one array per layer) per batch.

        Args:
            x: As :meth:`Analyzer.analyze` takes it (arrays, tensors, a list
                of them for several inputs, or a ``tf.data.Dataset``).
            batch_size: Samples per batch (None: the whole input, or the
                dataset's own batches).

        Yields:
            For each batch, a list of float32 arrays, one per layer.
        """
        batch_size = _validate.optional_positive_int(
            batch_size, "batch_size", "the whole input in one batch"
        )
        target = parse_target(None, None, None)
        if not isinstance(x, tf.data.Dataset):
            yield from self._array_batches(x, batch_size, target, 0)
            return
        for first_row, part, _ in _batching.dataset_parts(x, None):
            yield from self._array_batches(part, batch_size, target, first_row)

    def _array_batches(self, x, batch_size, target, offset):
        inputs = self._standardize(x)
        total = int(inputs[0].shape[0])
        chunk = total if batch_size is None else batch_size
        for start in range(0, total, chunk):
            batch = [tensor[start : start + chunk] for tensor in inputs]
            yield self._run_batch(batch, target, offset + start)

    def compute(self, x: Any, batch_size: int | None = None) -> list[np.ndarray]:
        """The outputs for all of ``x``: one float32 array per layer."""
        pieces = list(self.batches(x, batch_size))
        if not pieces:
            raise ValueError("The dataset passed as x yielded no batches.")
        return [
            parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0) for parts in zip(*pieces)
        ]


def activations(
    model: keras.Model, layer: LayerLike, x: Any, *, batch_size: int | None = None
) -> np.ndarray:
    """A layer's output on ``x``, computed by the graph engine.

    The model runs up to ``layer`` only (later layers are skipped), in inference
    mode (``training=False``: Dropout off, BatchNormalization on its moving
    statistics), one compiled function per input shape.

    Args:
        model: A built Functional or Sequential model.
        layer: A layer name or object, nested models included. A nested model
            stands for its output. A layer called several times (shared
            layers) gives the output of its first call.
        x: A numpy array, a ``tf.Tensor``, a list of them (multi-input model)
            or a ``tf.data.Dataset`` yielding ``x`` or ``(x, y)``.
        batch_size: Run ``x`` in chunks of this many samples (None: in one
            batch, or in the dataset's batches).

    Returns:
        float32 array ``(N, *layer_output_shape)``.

    Raises:
        ValueError: For an unknown layer (the message lists the layers), an
            input of the wrong shape, non-finite input values, a bad
            ``batch_size`` or an unbuilt Sequential model.
        TypeError: For a subclassed model (no layer graph) or a non-numeric input.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(3, activation="relu", name="hidden"),
        ...                           keras.layers.Dense(2)])
        >>> kx.activations(model, "hidden", np.ones((5, 4))).shape
        (5, 3)
    """
    return LayerOutputs(model, [layer]).compute(x, batch_size)[0]

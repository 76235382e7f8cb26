"""What ``target`` means, defined once for every analyzer.

``target`` selects the scalar per sample that an analyzer explains:

- ``None``: the per-sample argmax of the explained output ("max_activation").
- ``int``: that index of the (flattened) output, for every sample.
- int array of shape ``(B,)``: one index per sample.
- ``"all"``: the sum of all outputs.
- ``callable(outputs) -> (B,)``: any per-sample score of the output tensor,
  e.g. the mean logit of a segmentation mask region, or a regression output.

The explained output is the model output (``output_index`` picks one of
several) or, with ``output_layer``, an intermediate layer's output; integer
targets index its flattened per-sample values. With a list ``output_index`` the
explained output is the concatenation of those outputs, each flattened per
sample; :func:`per_output` names one class of each, and the score is their sum
(tf-keras-vis' list of score functions, one per output).

iNNvestigate compatibility: ``neuron_selection_mode="max_activation" | "index" |
"all"`` at construction and ``analyze(x, neuron_selection=...)`` map onto the
forms above.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

NEURON_SELECTION_MODES = ("max_activation", "index", "all")


@dataclasses.dataclass(frozen=True)
class Target:
    """A validated target.

    Attributes:
        mode: ``"max"``, ``"index"``, ``"all"`` or ``"callable"``.
        indices: For ``"index"``: int64 array of shape ``(B,)`` or ``()``.
        function: For ``"callable"``: the score function.
    """

    mode: str
    indices: np.ndarray | None = None
    function: Callable[[tf.Tensor], tf.Tensor] | None = None

    def for_rows(self, start: int, stop: int) -> Target:
        """The target of rows ``start:stop`` of a batch."""
        if self.mode == "index" and self.indices.ndim == 1:
            return dataclasses.replace(self, indices=self.indices[start:stop])
        return self

    def trace_key(self) -> Any:
        """The Python part of the target that a compiled function depends on."""
        return self.mode if self.mode != "callable" else self.function


def parse_target(
    target: Any,
    batch_size: int | None,
    num_outputs: int | None,
    neuron_selection_mode: str | None = None,
) -> Target:
    """Validate a user ``target`` and return a :class:`Target`.

    Args:
        target: See the module docstring.
        batch_size: Number of samples, to check per-sample targets; None skips.
        num_outputs: Size of the flattened explained output per sample, to
            check indices; None skips the check.
        neuron_selection_mode: iNNvestigate's mode, if the analyzer was
            created with one.

    Returns:
        The validated target.

    Raises:
        ValueError: For an index out of range, a per-sample array of the wrong
            length, an unknown string, or a mode that conflicts with target.
        TypeError: For a target of an unsupported type.
    """
    if neuron_selection_mode is not None:
        if neuron_selection_mode not in NEURON_SELECTION_MODES:
            raise ValueError(
                f"Unknown neuron_selection_mode. Received: "
                f"neuron_selection_mode={neuron_selection_mode!r}. Expected one of "
                f"{NEURON_SELECTION_MODES}."
            )
        if neuron_selection_mode == "all" and target is None:
            target = "all"
        if neuron_selection_mode == "index" and target is None:
            raise ValueError(
                "neuron_selection_mode='index' needs the neuron to explain: call "
                "analyze(x, neuron_selection=i) with an int or an int array of "
                "shape (batch,)."
            )
        if neuron_selection_mode == "max_activation" and target is not None:
            raise ValueError(
                "neuron_selection_mode='max_activation' explains the argmax output, "
                f"so a target cannot be given. Received: target={target!r}. Create "
                "the analyzer with neuron_selection_mode='index' to pick neurons."
            )
    if target is None:
        return Target("max")
    if isinstance(target, str):
        if target in ("all", "max_activation"):
            return Target("all" if target == "all" else "max")
        raise ValueError(
            f"Unknown target string. Received: target={target!r}. Use None "
            "(argmax), an int, an int array of shape (batch,), 'all' or a callable."
        )
    if callable(target):
        return Target("callable", function=target)
    if isinstance(target, tf.Tensor):
        target = target.numpy()
    indices = np.asarray(target)
    if indices.dtype == bool or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(
            "target must be None, an int, an int array of shape (batch,), 'all' or "
            f"a callable. Received: target={target!r} of type {type(target).__name__}."
        )
    if indices.ndim > 1:
        raise ValueError(
            "A target array must have shape (batch,), one output index per sample. "
            f"Received: target with shape {indices.shape}."
        )
    if indices.ndim == 1 and batch_size is not None and len(indices) != batch_size:
        raise ValueError(
            "A target array needs one output index per sample. Received: "
            f"target of length {len(indices)} for a batch of {batch_size} samples."
        )
    if (
        num_outputs is not None
        and indices.size
        and (indices.min() < 0 or indices.max() >= num_outputs)
    ):
        bad = indices[(indices < 0) | (indices >= num_outputs)].ravel()[0]
        raise ValueError(
            f"target index out of range. Received: target={int(bad)} but the "
            f"explained output has {num_outputs} values per sample (valid: 0 to "
            f"{num_outputs - 1})."
        )
    return Target("index", indices=indices.astype(np.int64))


def target_scores(outputs: tf.Tensor, target: Target, indices: tf.Tensor | None) -> tf.Tensor:
    """Per-sample scores ``(B,)`` selected from ``outputs`` (inside a trace).

    Args:
        outputs: The explained output, shape ``(B, ...)``.
        target: The parsed target.
        indices: ``(B,)`` int tensor for ``mode == "index"`` (broadcast done by
            the caller), else None.

    Returns:
        A float tensor of shape ``(B,)``.

    Raises:
        ValueError: If a callable target does not return shape ``(B,)``.
    """
    if target.mode == "callable":
        scores = target.function(outputs)
        if scores.shape.rank != 1:
            raise ValueError(
                "A callable target must return one score per sample, shape "
                f"(batch,). Received: a result of shape {tuple(scores.shape)} for "
                f"outputs of shape {tuple(outputs.shape)}."
            )
        return scores
    flat = tf.reshape(outputs, (tf.shape(outputs)[0], -1))
    if target.mode == "all":
        return tf.reduce_sum(flat, axis=1)
    if target.mode == "max":
        indices = tf.argmax(flat, axis=1)
    return tf.gather(flat, indices, axis=1, batch_dims=1)


def selected_indices(outputs: tf.Tensor, target: Target, indices: tf.Tensor | None):
    """The index targets resolved against ``outputs``: argmax for ``"max"``."""
    if target.mode == "max":
        flat = tf.reshape(outputs, (tf.shape(outputs)[0], -1))
        return tf.argmax(flat, axis=1)
    return indices


def fix_target(outputs: tf.Tensor, target: Target, indices: tf.Tensor | None):
    """Freeze an argmax target on the clean ``outputs`` (inside a trace).

    Methods that evaluate many perturbed copies of an input (SmoothGrad,
    Integrated Gradients, occlusion, ...) explain the class predicted for the
    clean input at every copy, not each copy's own argmax.

    Returns:
        ``(target, indices)``: an ``"index"`` target with the clean argmax for
        ``"max"``; any other target unchanged.
    """
    if target.mode != "max":
        return target, indices
    return Target("index"), selected_indices(outputs, target, None)


class PerOutput:
    """One class per explained output; the score is their sum (see :func:`per_output`)."""

    def __init__(self, classes):
        classes = list(classes)
        if not classes or not all(
            isinstance(c, int | np.integer) and not isinstance(c, bool) and c >= 0 for c in classes
        ):
            raise ValueError(
                "per_output takes one class index (an int >= 0) per explained output. "
                f"Received: {classes!r}."
            )
        self.classes = [int(c) for c in classes]

    def __repr__(self) -> str:
        return f"per_output({self.classes})"

    def score(self, sizes: list[int]) -> Callable:
        """The callable target on the concatenated outputs of ``sizes`` values per sample.

        Raises:
            ValueError: If the number of classes is not the number of outputs, or
                a class is outside its output.
        """
        if len(sizes) != len(self.classes):
            raise ValueError(
                f"{self!r} names {len(self.classes)} classes for {len(sizes)} explained "
                "output(s). Pass one class per output of output_index."
            )
        columns, offset = [], 0
        for position, (size, index) in enumerate(zip(sizes, self.classes)):
            if index >= size:
                raise ValueError(
                    f"{self!r}: class {index} is outside output {position}, which has {size} "
                    "values per sample."
                )
            columns.append(offset + index)
            offset += size
        return _Columns(tuple(columns))


@dataclasses.dataclass(frozen=True)
class _Columns:
    """The sum of some columns of the concatenated outputs (hashable: one trace per columns)."""

    columns: tuple[int, ...]

    def __call__(self, outputs: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.gather(outputs, list(self.columns), axis=1), axis=1)


def per_output(classes) -> PerOutput:
    """The target of several outputs explained together: one class of each, summed.

    With ``output_index=[i, j, ...]`` an analyzer explains the concatenation of
    those outputs; ``per_output([c_i, c_j, ...])`` scores sample ``b`` as
    ``out_i[b, c_i] + out_j[b, c_j] + ...`` (tf-keras-vis' list of
    ``CategoricalScore``, one per output, whose gradients add up).

    Args:
        classes: One class index per explained output, in ``output_index`` order.

    Returns:
        A target for ``analyze(x, target=...)``.

    Raises:
        ValueError: For a class that is not an int >= 0 (at once), or classes that
            do not match the explained outputs (at ``analyze``).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> inputs = keras.Input((4,))
        >>> heads = [keras.layers.Dense(3)(inputs), keras.layers.Dense(2)(inputs)]
        >>> gradient = kx.Gradient(keras.Model(inputs, heads), output_index=[0, 1])
        >>> target = kx.targets.per_output([2, 0])
        >>> gradient.analyze(np.ones((2, 4), "float32"), target=target).shape
        (2, 4)
    """
    return PerOutput(classes)

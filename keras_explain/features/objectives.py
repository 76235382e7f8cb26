"""What an image is optimized for: units of a layer, combinable with ``+``, ``-`` and ``*``.

An :class:`Objective` is a weighted sum of terms, each a per-sample score read
from one layer's output ``a`` (channels last, batch first):

- ``neuron(layer, index)``: ``a[index]``, one element of the sample's output;
- ``channel(layer, c)``: ``mean_{spatial} a[..., c]`` (a Dense layer has no
  spatial axes: unit ``c``);
- ``logit(c)``: the model output ``c`` before a final softmax or sigmoid
  (spatially averaged for an output with spatial axes);
- ``direction(layer, v)``: ``mean_{spatial} a · v``, e.g. a CAV.

Objectives are plain descriptions: they are checked against a model (the layer
exists, the index is in range) by :meth:`Objective.bind`, before any
optimization starts.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import graph

KINDS = ("neuron", "channel", "logit", "direction")


@dataclasses.dataclass(frozen=True, eq=False)
class Term:
    """One weighted unit of an objective (see the module docstring)."""

    kind: str
    layer: Any
    argument: Any
    weight: float = 1.0

    def __repr__(self) -> str:
        layer = getattr(self.layer, "name", self.layer)
        if self.kind == "logit":
            text = f"logit({self.argument!r})"
        elif self.kind == "direction":
            text = f"direction({layer!r}, <vector of {len(self.argument)}>)"
        else:
            text = f"{self.kind}({layer!r}, {self.argument!r})"
        return text if self.weight == 1.0 else f"{self.weight:g} * {text}"


class Objective:
    """A weighted sum of unit scores to maximize; ``+``, ``-`` and ``* float`` combine them.

    Build objectives with :func:`neuron`, :func:`channel`, :func:`logit` and
    :func:`direction`.

    Args:
        terms: The weighted terms.

    Example:
        >>> from keras_explain import features
        >>> features.channel("conv", 3) - 0.5 * features.neuron("dense", 1)
        channel('conv', 3) + -0.5 * neuron('dense', 1)
    """

    def __init__(self, terms: Sequence[Term]):
        self.terms = tuple(terms)

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(self.terms + other.terms)

    def __sub__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-1.0) * other

    def __neg__(self) -> Objective:
        return (-1.0) * self

    def __mul__(self, factor: float) -> Objective:
        if not isinstance(factor, numbers.Real) or isinstance(factor, bool):
            return NotImplemented
        return Objective(
            [dataclasses.replace(term, weight=term.weight * float(factor)) for term in self.terms]
        )

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return " + ".join(repr(term) for term in self.terms)

    def bind(self, plan: graph.Plan) -> tuple[list, Callable[[dict], tf.Tensor]]:
        """Check the objective against a model and compile it into a score function.

        Args:
            plan: The model's :class:`~keras_explain.graph.Plan`.

        Returns:
            ``(keys, score)``: the keys of the values the objective reads, and
            ``score(values) -> (B,)`` computing it from ``plan.run`` values.

        Raises:
            ValueError: For an unknown layer (the message lists the model's
                layers) or an index out of range of the layer's output.
        """
        bound = [_bind_term(plan, term) for term in self.terms]
        keys = list(dict.fromkeys(key for key, _ in bound))

        def score(values: dict) -> tf.Tensor:
            return tf.add_n(
                [term.weight * f(values[key]) for term, (key, f) in zip(self.terms, bound)]
            )

        return keys, score


def neuron(layer: Any, index: int | Sequence[int]) -> Objective:
    """One element of a layer's output.

    Args:
        layer: A layer name or object (nested models included).
        index: A position in the per-sample output, one int per axis
            (``(row, column, channel)`` for a Conv2D), or one int indexing the
            flattened per-sample output.

    Returns:
        The :class:`Objective`.

    Example:
        >>> from keras_explain import features
        >>> features.neuron("conv", (4, 4, 2))
        neuron('conv', (4, 4, 2))
    """
    index = tuple(int(i) for i in index) if isinstance(index, Sequence) else int(index)
    return Objective([Term("neuron", layer, index)])


def channel(layer: Any, c: int) -> Objective:
    """The mean of one channel of a layer's output over its spatial positions.

    Args:
        layer: A layer name or object (nested models included).
        c: The channel (the unit, for a layer without spatial axes).

    Returns:
        The :class:`Objective`.

    Example:
        >>> from keras_explain import features
        >>> features.channel("conv", 2) * 2.0
        2 * channel('conv', 2)
    """
    return Objective([Term("channel", layer, int(c))])


def logit(c: int) -> Objective:
    """Output ``c`` of the model before a final softmax or sigmoid (the logit).

    Args:
        c: The output index.

    Returns:
        The :class:`Objective`.

    Example:
        >>> from keras_explain import features
        >>> features.logit(3)
        logit(3)
    """
    return Objective([Term("logit", None, int(c))])


def direction(layer: Any, vector: Any) -> Objective:
    """The mean over spatial positions of ``a · vector`` (a direction in channel space).

    Args:
        layer: A layer name or object (nested models included).
        vector: One weight per channel, e.g. a CAV's ``.vector``.

    Returns:
        The :class:`Objective`.

    Example:
        >>> from keras_explain import features
        >>> features.direction("conv", [1.0, -1.0, 0.0])
        direction('conv', <vector of 3>)
    """
    vector = np.asarray(vector, np.float32).reshape(-1)
    return Objective([Term("direction", layer, vector)])


def _bind_term(plan: graph.Plan, term: Term) -> tuple[Any, Callable]:
    if term.kind == "logit":
        key = plan.strip_softmax(plan.output_keys[0])
        where = f"the output of model {plan.model.name!r}"
    else:
        layer = plan.find_layer(term.layer, f"{term.kind}(layer)")
        key = plan.output_key_of(layer)
        where = f"layer {layer.name!r}"
    shape = plan.shape_of(key)
    if shape is None:
        raise ValueError(f"The output shape of {where} is unknown, so {term!r} cannot be checked.")
    shape = tuple(shape[1:])
    spatial = list(range(1, len(shape)))
    if term.kind == "neuron":
        return key, _neuron(term, shape, where)
    channels = shape[-1]
    if term.kind == "direction":
        if term.argument.shape[0] != channels:
            raise ValueError(
                f"{term!r}: the vector needs one entry per channel of {where} ({channels}). "
                f"Received: a vector of {term.argument.shape[0]}."
            )
        vector = tf.constant(term.argument)
        return key, lambda a: _mean(tf.tensordot(tf.cast(a, tf.float32), vector, 1), spatial)
    c = term.argument
    if not 0 <= c < channels:
        raise ValueError(
            f"{term!r}: {where} has {channels} channels (outputs {shape}). "
            f"Received: index {c}; use 0 <= index < {channels}."
        )
    return key, lambda a: _mean(tf.cast(a[..., c], tf.float32), spatial)


def _neuron(term: Term, shape: tuple, where: str) -> Callable:
    index = term.argument
    if isinstance(index, int):
        size = int(np.prod(shape))
        if not 0 <= index < size:
            raise ValueError(
                f"{term!r}: {where} has {size} elements per sample (outputs {shape}). "
                f"Received: index {index}; use 0 <= index < {size} or one int per axis."
            )
        return lambda a: tf.cast(tf.reshape(a, [tf.shape(a)[0], -1])[:, index], tf.float32)
    if len(index) != len(shape) or not all(0 <= i < n for i, n in zip(index, shape)):
        raise ValueError(
            f"{term!r}: {where} outputs {shape} per sample. Received: index {index}; give "
            f"one int per axis, each in range, e.g. {tuple(n // 2 for n in shape)}."
        )
    return lambda a: tf.cast(a[(slice(None), *index)], tf.float32)


def _mean(values: tf.Tensor, axes: list[int]) -> tf.Tensor:
    return tf.reduce_mean(values, axis=axes) if axes else values

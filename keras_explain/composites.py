"""Composites: which rule applies to which op.

A :class:`Composite` is an ordered list of ``(layer kinds, rule)`` entries,
first match wins, with an optional rule for the first linear layer(s) (linear
ops with no linear op upstream, ``Step.first_linear``). Ops no entry matches
get the standard treatment: activations pass relevance through
(:class:`~keras_explain.rules.Pass`), ``Add`` and average pooling use the
stabilized proportional rule (:class:`~keras_explain.rules.Proportional`), max
pooling, reshapes and embeddings follow the gradient
(:class:`~keras_explain.rules.Gradient`).

A layer kind (the first element of an entry) is any of:

- an op kind: ``"linear"``, ``"activation"``, ``"max_pool"``, ``"sum_pool"``,
  ``"reshape"``, ``"embedding"``, ``"softmax"``, ``"other"``;
- a linear layer family: ``"dense"`` (Dense, EinsumDense), ``"conv"`` (every
  convolution: Conv1D/2D/3D, depthwise, separable, transposed),
  ``"batch_norm"`` (BatchNormalization not folded by a canonizer);
- a Keras layer class (matches that layer's ops, except a fused activation);
- a predicate ``f(step) -> bool``;
- a tuple of the above (any of them).

The presets of the registry (``"epsilon_plus"``, ``"sequential_preset_a"``, ...)
are small subclasses, built by name with :func:`get`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_explain import rules

_rules = rules  # `rules` is also Composite's argument name

OP_KINDS = (
    "linear",
    "activation",
    "max_pool",
    "sum_pool",
    "reshape",
    "embedding",
    "softmax",
    "other",
)
LAYER_KINDS: dict[str, tuple[type, ...]] = {
    "dense": (keras.layers.Dense, keras.layers.EinsumDense),
    "conv": (
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
        keras.layers.DepthwiseConv1D,
        keras.layers.DepthwiseConv2D,
        keras.layers.SeparableConv1D,
        keras.layers.SeparableConv2D,
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.Conv3DTranspose,
    ),
    "batch_norm": (keras.layers.BatchNormalization,),
}
_LINEAR_LAYERS = tuple(cls for classes in LAYER_KINDS.values() for cls in classes)

#: What an op no entry matches gets (op kind -> rule); other kinds have no default.
DEFAULT_RULES: dict[str, rules.Rule] = {
    "activation": rules.Pass(),
    "sum_pool": rules.Proportional(),
    "max_pool": rules.Gradient(),
    "reshape": rules.Gradient(),
    "embedding": rules.Gradient(),
}

LayerKind = str | type | Callable[[Any], bool] | tuple


def matches(kind: LayerKind, step) -> bool:
    """Whether a layer-kind specification matches an engine step.

    Raises:
        ValueError: For an unknown kind name.
    """
    op = step.op
    if isinstance(kind, tuple | list):
        return any(matches(item, step) for item in kind)
    if isinstance(kind, str):
        if kind in OP_KINDS:
            return op.kind == kind
        if kind in LAYER_KINDS:
            return op.kind == "linear" and isinstance(op.layer, LAYER_KINDS[kind])
        raise ValueError(
            f"Unknown layer kind. Received: {kind!r}. Expected an op kind {OP_KINDS}, a "
            f"layer family {tuple(LAYER_KINDS)}, a Keras layer class or a predicate."
        )
    if isinstance(kind, type):
        if not isinstance(op.layer, kind):
            return False
        fused_activation = op.kind in ("activation", "softmax") and isinstance(
            op.layer, _LINEAR_LAYERS
        )
        return not fused_activation
    if callable(kind):
        return bool(kind(step))
    raise TypeError(
        f"A layer kind must be a string, a Keras layer class, a predicate or a tuple of "
        f"them. Received: {kind!r} of type {type(kind).__name__}."
    )


class Composite:
    """An ordered ``(layer kind -> rule)`` map; first match wins.

    Args:
        rules: ``[(layer_kind, rule), ...]`` (see the module docstring for kinds).
        first: Rule for the first linear layer(s) (no linear op upstream), or None.

    Raises:
        TypeError: If an entry is not a ``(kind, Rule)`` pair.

    Example:
        >>> import keras_explain as kx
        >>> from keras_explain import rules
        >>> composite = kx.composites.Composite(
        ...     [("conv", rules.AlphaBeta(2, 1)), ("dense", rules.Epsilon(0.1))],
        ...     first=rules.Flat())
        >>> composite
        Composite([('conv', AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)), \
('dense', Epsilon(epsilon=0.1))], first=Flat(epsilon=1e-07))
    """

    def __init__(
        self, rules: Sequence[tuple[LayerKind, rules.Rule]] = (), *, first: rules.Rule | None = None
    ):
        entries = []
        for entry in rules:
            if not (
                isinstance(entry, tuple | list)
                and len(entry) == 2
                and isinstance(entry[1], _rules.Rule)
            ):
                raise TypeError(
                    "Composite entries must be (layer_kind, rule) pairs with a "
                    f"keras_explain.rules.Rule. Received: {entry!r}."
                )
            entries.append((entry[0], entry[1]))
        if first is not None and not isinstance(first, _rules.Rule):
            raise TypeError(f"first must be a Rule or None. Received: first={first!r}.")
        self.rules = entries
        self.first = first

    def rule_for(self, step) -> rules.Rule | None:
        """The rule for an engine step, or None when nothing covers it."""
        if self.first is not None and step.first_linear:
            return self.first
        for kind, rule in self.rules:
            if matches(kind, step):
                return rule
        return DEFAULT_RULES.get(step.op.kind)

    def __repr__(self) -> str:
        first = "" if self.first is None else f", first={self.first!r}"
        return f"{type(self).__name__}({self.rules!r}{first})"


_PRESETS: dict[str, type] = {}


def register(name: str):
    """Class decorator: register a composite preset under ``name``."""

    def decorate(cls):
        _PRESETS[name] = cls
        cls.preset_name = name
        return cls

    return decorate


def names() -> list[str]:
    """The registered preset names, sorted."""
    return sorted(_PRESETS)


def get(composite: Composite | rules.Rule | str, **params: Any) -> Composite:
    """A composite from a Composite, a Rule (applied to every linear op) or a preset name.

    Raises:
        ValueError: For an unknown preset name.
        TypeError: For anything else.
    """
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, _rules.Rule):
        return Uniform(composite)
    if isinstance(composite, str):
        if composite not in _PRESETS:
            raise ValueError(
                f"Unknown composite. Received: composite={composite!r}. Presets: {names()}; "
                "or pass a Composite or a Rule."
            )
        return _PRESETS[composite](**params)
    raise TypeError(
        "composite must be a Composite, a Rule or a preset name. Received: "
        f"composite={composite!r} of type {type(composite).__name__}."
    )


class Uniform(Composite):
    """One rule on every linear op, first and last included.

    Args:
        rule: The rule.
    """

    def __init__(self, rule: rules.Rule):
        super().__init__([("linear", rule)])


def _dense_conv(dense: rules.Rule, conv: rules.Rule) -> list:
    # "linear" after "conv": Dense, EinsumDense and unfolded BatchNormalization.
    return [("conv", conv), ("linear", dense)]


@register("sequential_preset_a")
class SequentialPresetA(Composite):
    """iNNvestigate's preset A: Dense (and other linear ops) ε, convolutions α1β0 (with bias).

    Args:
        epsilon: ε of the Dense rule (default 0.1).
    """

    def __init__(self, epsilon: float = 0.1):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.AlphaBeta(1, 0))
        super().__init__(entries)


@register("sequential_preset_b")
class SequentialPresetB(Composite):
    """iNNvestigate's preset B: Dense ε, convolutions α2β1 (with bias).

    Args:
        epsilon: ε of the Dense rule (default 0.1).
    """

    def __init__(self, epsilon: float = 0.1):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.AlphaBeta(2, 1))
        super().__init__(entries)


@register("sequential_preset_a_flat")
class SequentialPresetAFlat(Composite):
    """Preset A with the Flat rule on the first linear layer.

    Args:
        epsilon: ε of the Dense rule (default 0.1).
    """

    def __init__(self, epsilon: float = 0.1):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.AlphaBeta(1, 0))
        super().__init__(entries, first=_rules.Flat())


@register("sequential_preset_b_flat")
class SequentialPresetBFlat(Composite):
    """Preset B with the Flat rule on the first linear layer.

    Args:
        epsilon: ε of the Dense rule (default 0.1).
    """

    def __init__(self, epsilon: float = 0.1):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.AlphaBeta(2, 1))
        super().__init__(entries, first=_rules.Flat())


@register("epsilon_plus")
class EpsilonPlus(Composite):
    """Zennit's EpsilonPlus: convolutions AlphaBeta(1, 0) with bias, Dense ε.

    Args:
        epsilon: ε of the Dense rule (default 1e-7).
    """

    def __init__(self, epsilon: float = 1e-7):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.AlphaBeta(1, 0))
        super().__init__(entries)


@register("epsilon_plus_flat")
class EpsilonPlusFlat(Composite):
    """EpsilonPlus with the Flat rule on the first linear layer.

    Args:
        epsilon: ε of the Dense rule (default 1e-7).
    """

    def __init__(self, epsilon: float = 1e-7):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.AlphaBeta(1, 0))
        super().__init__(entries, first=_rules.Flat())


@register("epsilon_alpha_2_beta_1")
class EpsilonAlpha2Beta1(Composite):
    """Convolutions AlphaBeta(2, 1), Dense ε.

    Args:
        epsilon: ε of the Dense rule (default 1e-7).
    """

    def __init__(self, epsilon: float = 1e-7):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.AlphaBeta(2, 1))
        super().__init__(entries)


@register("epsilon_gamma_box")
class EpsilonGammaBox(Composite):
    """First layer ZBox(low, high), convolutions Gamma(γ), Dense ε (Montavon et al. 2019).

    Args:
        low: Lower bound of the input (default 0: images in [0, 1]).
        high: Upper bound of the input (default 1).
        gamma: γ of the convolution rule (default 0.25).
        epsilon: ε of the Dense rule (default 1e-7).
    """

    def __init__(self, low: Any = 0.0, high: Any = 1.0, gamma: float = 0.25, epsilon: float = 1e-7):
        entries = _dense_conv(_rules.Epsilon(epsilon), _rules.Gamma(gamma))
        super().__init__(entries, first=_rules.ZBox(low, high))


@register("deep_taylor")
class DeepTaylor(Composite):
    """Deep Taylor for ReLU networks: ZPlus on every linear op (Montavon et al. 2017)."""

    def __init__(self):
        super().__init__([("linear", _rules.ZPlus())])


@register("deep_taylor_bounded")
class DeepTaylorBounded(Composite):
    """Deep Taylor on bounded inputs: ZBox(low, high) on the first linear op, ZPlus elsewhere.

    Args:
        low: Lower bound of the input (default 0).
        high: Upper bound of the input (default 1).
    """

    def __init__(self, low: Any = 0.0, high: Any = 1.0):
        super().__init__([("linear", _rules.ZPlus())], first=_rules.ZBox(low, high))

"""Composites: which rule applies to which op.

A :class:`Composite` is an ordered list of ``(layer kinds, rule)`` entries,
first match wins, with an optional rule for the first linear layer(s) (mixing
linear ops with none upstream, ``Step.first_linear``). Ops no entry matches
get the standard treatment (:data:`DEFAULT_RULES`): activations and input
preprocessing (``Rescaling``, ``Normalization``) pass relevance through
(:class:`~keras_explain.lrp.rules.Pass`), ``Add`` and average pooling use
the stabilized proportional rule (:class:`~keras_explain.lrp.rules.Proportional`),
a gated product gives all relevance to its signal
(:class:`~keras_explain.lrp.rules.SignalTakesAll`), a product of two computed
tensors (``query · key``) splits it evenly between the factors that are not gates
(:class:`~keras_explain.lrp.rules.Bilinear`), a softmax in the middle gets
AttnLRP's rule (:class:`~keras_explain.lrp.rules.Softmax`), a LayerNormalization holds its
scale constant (:class:`~keras_explain.lrp.rules.ConstantScale`), max pooling,
reshapes and embeddings follow the gradient (:class:`~keras_explain.lrp.rules.Gradient`).

A layer kind (the first element of an entry) is any of:

- an op kind of :mod:`keras_explain.graph` (``"linear"``, ``"activation"``,
  ``"max_pool"``, ``"sum_pool"``, ``"multiply"``, ``"bilinear"``, ``"normalization"``,
  ``"reshape"``, ``"embedding"``, ``"softmax"``, ``"other"``);
- a linear layer family, the ``family`` of the layer's entry in the layer table:
  ``"dense"`` (Dense, EinsumDense), ``"conv"`` (every convolution: Conv1D/2D/3D,
  depthwise, separable, transposed), ``"batch_norm"`` (BatchNormalization not
  folded by a canonizer); :func:`keras_explain.graph.supported_layers` lists them;
- a Keras layer class (matches that layer's ops, except a fused activation; for a
  recurrent or attention layer: the whole layer, and with a linear rule its own
  linear maps, re-executed step by step);
- a predicate ``f(step) -> bool``;
- a tuple of the above (any of them).

The presets (``"epsilon_plus"``, ``"sequential_preset_a"``, ...) are data, one
row of :data:`PRESETS` each, built by name with :func:`get`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keras_explain.graph import FAMILIES, KINDS, entry_of
from keras_explain.lrp import rules

_rules = rules  # `rules` is also Composite's argument name

OP_KINDS = KINDS
#: The linear layer families (``"dense"``, ``"conv"``, ``"batch_norm"``); which layers
#: belong to which is the ``family`` of their entry in the layer table
#: (:func:`keras_explain.graph.entry_of`, :func:`keras_explain.graph.register_layer`).
LAYER_KINDS = FAMILIES

#: What an op no entry matches gets (op kind -> rule); other kinds have no default.
DEFAULT_RULES: dict[str, rules.Rule] = {
    "rescale": rules.Pass(),
    "activation": rules.Pass(),
    "sum_pool": rules.Proportional(),
    "multiply": rules.SignalTakesAll(),
    "bilinear": rules.Bilinear(),
    "softmax": rules.Softmax(),
    "normalization": rules.ConstantScale(),
    "max_pool": rules.Gradient(),
    "reshape": rules.Gradient(),
    "embedding": rules.Gradient(),
    "constant": rules.Gradient(),  # nothing flows back: its relevance is absorbed
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
            entry = entry_of(op.layer)
            return op.kind == "linear" and entry is not None and entry.family == kind
        raise ValueError(
            f"Unknown layer kind. Received: {kind!r}. Expected an op kind {OP_KINDS}, a "
            f"layer family {tuple(LAYER_KINDS)}, a Keras layer class or a predicate."
        )
    if isinstance(kind, type):
        if not isinstance(op.layer, kind):
            return False
        entry = entry_of(op.layer)
        fused_activation = (
            op.kind in ("activation", "softmax") and entry is not None and entry.linear is not None
        )
        # a recurrent layer's class covers the layer and its linear maps, not its
        # activations, gated products and sums (they keep their own defaults)
        program_part = (
            op.kind not in ("linear", "recurrent", "attention")
            and entry is not None
            and entry.program is not None
        )
        return not (fused_activation or program_part)
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
        name: The preset's name, for ``repr`` (presets of :func:`get` set it).

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
        self,
        rules: Sequence[tuple[LayerKind, rules.Rule]] = (),
        *,
        first: rules.Rule | None = None,
        name: str | None = None,
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
        self.name = name

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
        name = "" if self.name is None else f", name={self.name!r}"
        return f"{type(self).__name__}({self.rules!r}{first}{name})"


class Uniform(Composite):
    """One rule on every linear op, first and last included.

    Args:
        rule: The rule.
        name: The preset's name, for ``repr``.

    Example:
        >>> from keras_explain import composites, rules
        >>> composites.Uniform(rules.Epsilon(0.1))
        Uniform([('linear', Epsilon(epsilon=0.1))])
    """

    def __init__(self, rule: rules.Rule, *, name: str | None = None):
        super().__init__([("linear", rule)], name=name)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named composite: its rules as functions of the preset's parameters.

    One rule on every linear op (a uniform preset), or one for convolutions and
    one for the other linear ops, with an optional rule for the first layer.

    Attributes:
        summary: One line for the docs.
        conv: ``conv(params) -> Rule`` for every convolution (None: :attr:`dense`
            everywhere, a uniform preset).
        dense: ``dense(params) -> Rule`` for every other linear op (Dense,
            EinsumDense, BatchNormalization not folded, layer scale), or every
            linear op of a uniform preset.
        first: ``first(params) -> Rule`` for the first linear layer(s), or None.
        defaults: The preset's parameters and their defaults.
        entries: ``entries(params) -> [(layer kind, Rule), ...]``: a preset with
            rules for more than linear ops (AttnLRP); then :attr:`dense` and
            :attr:`conv` are not read.
    """

    summary: str
    dense: Callable[[Mapping[str, Any]], rules.Rule]
    conv: Callable[[Mapping[str, Any]], rules.Rule] | None = None
    first: Callable[[Mapping[str, Any]], rules.Rule] | None = None
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    entries: Callable[[Mapping[str, Any]], list] | None = None

    def build(self, name: str, **params: Any) -> Composite:
        """The composite named ``name``, with ``params`` overriding the defaults."""
        values = {**self.defaults, **params}
        if self.entries is not None:
            return Composite(self.entries(values), name=name)
        if self.conv is None and self.first is None:
            return Uniform(self.dense(values), name=name)
        first = None if self.first is None else self.first(values)
        # "linear" after "conv": Dense, EinsumDense and element-wise linear ops
        conv = self.dense(values) if self.conv is None else self.conv(values)
        entries = [("conv", conv), ("linear", self.dense(values))]
        return Composite(entries, first=first, name=name)


def _epsilon(params):
    return rules.Epsilon(params["epsilon"])


def _alpha_1_beta_0(params):
    return rules.AlphaBeta(1, 0)


def _alpha_2_beta_1(params):
    return rules.AlphaBeta(2, 1)


def _flat(params):
    return rules.Flat()


def _z_plus(params):
    return rules.ZPlus()


def _z_box(params):
    return rules.ZBox(params["low"], params["high"])


def _gamma(params):
    return rules.Gamma(params["gamma"])


def _alpha_beta(params):
    alpha, beta = params["alpha"], params["beta"]
    if alpha is None:
        alpha = 1.0 if beta is None else beta + 1
    return rules.AlphaBeta(alpha, beta, bias=params["bias"], epsilon=params["epsilon"])


def _alpha_beta_fixed(alpha, beta, bias=None):
    def rule(params):
        with_bias = params["bias"] if bias is None else bias
        return rules.AlphaBeta(alpha, beta, bias=with_bias, epsilon=params["epsilon"])

    return rule


def _attn_lrp(params):
    """AttnLRP (Achtibat et al., ICML 2024, arXiv:2402.05602), as LXT computes it.

    ``epsilon`` is the linear maps' ε; the other rules' stabilizers are guards
    against exact zeros only (LXT computes them as gradient × input, without one).
    """
    guard = 1e-9
    return [
        ("linear", rules.Epsilon(params["epsilon"])),
        ("bilinear", rules.Bilinear(guard, gates=False)),  # query·key, attention·value
        ("multiply", rules.Bilinear(guard)),  # gated products; a 1/σ scale takes none
        ("softmax", rules.Softmax()),
        ("normalization", rules.ConstantScale(guard)),
        ("activation", rules.Pass()),  # the identity rule
        ("sum_pool", rules.Proportional(guard)),  # sums, x * c: in proportion
    ]


_EPSILON = {"epsilon": 1e-7}

#: Every preset, by name: the registry of :func:`get` and of the ``lrp.*`` analyzers
#: (``"lrp." + name``; ``deep_taylor`` and ``deep_taylor.bounded`` for Deep Taylor).
PRESETS: dict[str, Preset] = {
    # one rule on every linear op, first and last included
    "z": Preset("LRP-0 (Z) on every linear op", dense=lambda params: rules.Z()),
    "epsilon": Preset("LRP-ε on every linear op", dense=_epsilon, defaults=_EPSILON),
    "w_square": Preset("LRP-w² on every linear op", dense=lambda params: rules.WSquare()),
    "flat": Preset("LRP-flat on every linear op", dense=_flat),
    "gamma": Preset(
        "LRP-γ on every linear op",
        dense=lambda params: rules.Gamma(params["gamma"], params["epsilon"]),
        defaults={"gamma": 0.25, **_EPSILON},
    ),
    "alpha_beta": Preset(
        "LRP-αβ on every linear op (α − β = 1; alpha defaults to beta + 1, beta to alpha − 1)",
        dense=_alpha_beta,
        defaults={"alpha": None, "beta": None, "bias": True, **_EPSILON},
    ),
    "alpha_2_beta_1": Preset(
        "LRP-α2β1 (with bias) on every linear op",
        dense=_alpha_beta_fixed(2, 1),
        defaults={"bias": True, **_EPSILON},
    ),
    "alpha_2_beta_1_IB": Preset(
        "LRP-α2β1 without bias on every linear op",
        dense=_alpha_beta_fixed(2, 1, bias=False),
        defaults=_EPSILON,
    ),
    "alpha_1_beta_0": Preset(
        "LRP-α1β0 (with bias) on every linear op",
        dense=_alpha_beta_fixed(1, 0),
        defaults={"bias": True, **_EPSILON},
    ),
    "alpha_1_beta_0_IB": Preset(
        "LRP-α1β0 without bias on every linear op (the same as z_plus)",
        dense=_alpha_beta_fixed(1, 0, bias=False),
        defaults=_EPSILON,
    ),
    "z_plus": Preset(
        "LRP-z⁺ on every linear op",
        dense=lambda params: rules.ZPlus(params["epsilon"]),
        defaults=_EPSILON,
    ),
    "z_plus_fast": Preset(
        "LRP-z⁺ with W⁺ only, for inputs >= 0, on every linear op",
        dense=lambda params: rules.ZPlusFast(params["epsilon"]),
        defaults=_EPSILON,
    ),
    "attn_lrp": Preset(
        "AttnLRP for Transformers: ε on linear maps, the uniform rule on products of "
        "computed tensors, the softmax rule, identity through normalizations' scales "
        "and element-wise non-linearities (Achtibat et al. 2024)",
        dense=_epsilon,
        entries=_attn_lrp,
        # a guard only: LXT computes the rules as gradient × input, the limit ε → 0
        defaults={"epsilon": 1e-9},
    ),
    # convolutions and the other linear ops apart
    "sequential_preset_a": Preset(
        "iNNvestigate's preset A: Dense ε, convolutions α1β0 (with bias)",
        conv=_alpha_1_beta_0,
        dense=_epsilon,
        defaults={"epsilon": 0.1},
    ),
    "sequential_preset_b": Preset(
        "iNNvestigate's preset B: Dense ε, convolutions α2β1 (with bias)",
        conv=_alpha_2_beta_1,
        dense=_epsilon,
        defaults={"epsilon": 0.1},
    ),
    "sequential_preset_a_flat": Preset(
        "Preset A with the Flat rule on the first linear layer",
        conv=_alpha_1_beta_0,
        dense=_epsilon,
        first=_flat,
        defaults={"epsilon": 0.1},
    ),
    "sequential_preset_b_flat": Preset(
        "Preset B with the Flat rule on the first linear layer",
        conv=_alpha_2_beta_1,
        dense=_epsilon,
        first=_flat,
        defaults={"epsilon": 0.1},
    ),
    "epsilon_plus": Preset(
        "Zennit's EpsilonPlus: convolutions AlphaBeta(1, 0) with bias, Dense ε",
        conv=_alpha_1_beta_0,
        dense=_epsilon,
        defaults={"epsilon": 1e-7},
    ),
    "epsilon_plus_flat": Preset(
        "EpsilonPlus with the Flat rule on the first linear layer",
        conv=_alpha_1_beta_0,
        dense=_epsilon,
        first=_flat,
        defaults={"epsilon": 1e-7},
    ),
    "epsilon_alpha_2_beta_1": Preset(
        "Convolutions AlphaBeta(2, 1), Dense ε",
        conv=_alpha_2_beta_1,
        dense=_epsilon,
        defaults={"epsilon": 1e-7},
    ),
    "epsilon_gamma_box": Preset(
        "First layer ZBox(low, high), convolutions Gamma(γ), Dense ε (Montavon et al. 2019)",
        conv=_gamma,
        dense=_epsilon,
        first=_z_box,
        defaults={"low": 0.0, "high": 1.0, "gamma": 0.25, "epsilon": 1e-7},
    ),
    "deep_taylor": Preset(
        "Deep Taylor for ReLU networks: ZPlus on every linear op (Montavon et al. 2017)",
        conv=_z_plus,
        dense=_z_plus,
    ),
    "deep_taylor_bounded": Preset(
        "Deep Taylor on bounded inputs: ZBox(low, high) on the first linear op, ZPlus elsewhere",
        conv=_z_plus,
        dense=_z_plus,
        first=_z_box,
        defaults={"low": 0.0, "high": 1.0},
    ),
}


def names() -> list[str]:
    """The preset names, sorted.

    Example:
        >>> from keras_explain import composites
        >>> "epsilon_plus" in composites.names()
        True
    """
    return sorted(PRESETS)


def get(composite: Composite | rules.Rule | str, **params: Any) -> Composite:
    """A composite from a Composite, a Rule (applied to every linear op) or a preset name.

    Args:
        composite: The composite, a rule, or a name of :func:`names`.
        **params: The preset's parameters (see :data:`PRESETS`).

    Returns:
        The composite.

    Raises:
        ValueError: For an unknown preset name or parameter.
        TypeError: For anything else.

    Example:
        >>> from keras_explain import composites
        >>> composites.get("epsilon_plus", epsilon=0.01)
        Composite([('conv', AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)), \
('linear', Epsilon(epsilon=0.01))], name='epsilon_plus')
    """
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, _rules.Rule):
        return Uniform(composite)
    if isinstance(composite, str):
        if composite not in PRESETS:
            raise ValueError(
                f"Unknown composite. Received: composite={composite!r}. Presets: {names()}; "
                "or pass a Composite or a Rule."
            )
        preset = PRESETS[composite]
        unknown = sorted(set(params) - set(preset.defaults))
        if unknown:
            raise ValueError(
                f"Preset {composite!r} has no parameter {unknown[0]!r}. Valid: "
                f"{', '.join(preset.defaults) or 'none'}."
            )
        return preset.build(composite, **params)
    raise TypeError(
        "composite must be a Composite, a Rule or a preset name. Received: "
        f"composite={composite!r} of type {type(composite).__name__}."
    )

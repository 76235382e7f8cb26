"""Relevance family: layer-wise relevance propagation (LRP) and Deep Taylor.

Every analyzer here is :class:`LRP` with a composite: relevance is seeded at the
explained output as ``R = one_hot(t) * logit_t`` and pulled back with the
graph engine, each op's backward pass replaced by its composite rule
(:mod:`keras_explain.lrp.rules`). Canonizers (:mod:`keras_explain.lrp.canonizers`) first
fold BatchNormalization into the linear layer before it, in an analysis-time view
of the model. The mathematical conventions are in ``docs/relevance_rules.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import graph
from keras_explain.analyzers.backprop import Backpropagation
from keras_explain.analyzers.registry import register
from keras_explain.lrp import canonizers as canonizers_module
from keras_explain.lrp import composites, rules


@register("lrp")
class LRP(Backpropagation):
    """Layer-wise relevance propagation with any composite (Bach et al. 2015).

    Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
    Layer-Wise Relevance Propagation", PLOS ONE 2015, doi:10.1371/journal.pone.0130140.

    Args:
        model: A Functional or Sequential Keras model (nested models, shared
            layers and raw ``keras.ops`` included).
        composite: Which rule applies where: a
            :class:`~keras_explain.lrp.composites.Composite`, a
            :class:`~keras_explain.lrp.rules.Rule` (used on every linear op) or a preset
            name of :func:`keras_explain.lrp.composites.names`. Default: ``Epsilon()``
            on every linear op.
        canonizers: Analysis-time model rewrites; default
            ``[canonizers.BatchNormFold()]``; ``[]`` for none.
        **kwargs: ``at_layer``, ``output_layer``, ``output_index``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x, target)`` returns the relevance of every input element,
        shaped like ``x`` (per token for embedding inputs).

    Raises:
        TypeError: For a subclassed model (no layer graph to walk).
        ValueError: At construction, for a layer no rule covers (the message names
            it and says how to proceed).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> from keras_explain import rules
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> composite = kx.composites.Composite([("dense", rules.Epsilon(0.1))],
        ...                                     first=rules.Flat())
        >>> kx.LRP(model, composite).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    relevance_seed = True
    requires_graph = True
    #: The rules keep more per op than a gradient does (their shares' denominators).
    backward_memory_factor = 1.1

    def __init__(
        self,
        model,
        composite: composites.Composite | rules.Rule | str | None = None,
        *,
        canonizers: Sequence[canonizers_module.Canonizer] | None = None,
        **kwargs: Any,
    ):
        super().__init__(model, **kwargs)
        self.composite = composites.get(rules.Epsilon() if composite is None else composite)
        if canonizers is None:
            canonizers = [canonizers_module.BatchNormFold()]
        self.canonizers = list(canonizers)
        keep = {self.output_key, *self._sources}
        self.plan = canonizers_module.canonize(self.plan, self.canonizers, keep)
        self._needed = self.plan.upstream([self.output_key])[0]  # steps the output needs
        self._rules = self._assign_rules()  # by op: the same in every variant of the plan
        self._sign_sensitive = any(
            getattr(rule, "splits_signs", False) for rule in self._rules.values()
        )
        self._input_sign_plans: dict[tuple, Any] = {}
        self._layerwise = False
        self._layer_functions: dict = {}

    # -- rules ----------------------------------------------------------------
    def _assign_rules(self) -> dict:
        assigned = {}
        for step in self.plan.steps:
            if step not in self._needed or self._is_mask(step):
                continue  # a Keras mask carries no relevance; it runs as in model(x)
            rule = self.composite.rule_for(step)
            if step.op.inner is not None and (rule is None or isinstance(rule, rules.LinearRule)):
                # re-executed step by step, each primitive op under its own rule (a
                # non-linear rule, such as Gradient(), takes the whole layer instead)
                for inner in step.op.inner.steps.values():
                    inner_rule = self.composite.rule_for(inner)
                    if inner_rule is None:
                        raise ValueError(self._unsupported_message(inner))
                    assigned[inner.op] = inner_rule
                continue
            if rule is None:
                raise ValueError(self._unsupported_message(step))
            assigned[step.op] = rule
        return assigned

    def _unsupported_message(self, step) -> str:
        op = step.op
        layer = f"layer {op.name!r} of class {type(op.layer).__name__}"
        if op.kind == "linear":
            reason = f"composite {self.composite!r} has no rule for linear {layer}"
        elif op.kind == "softmax" and self.output_key in step.outputs:
            reason = (
                f"the explained output comes out of the softmax {layer}; LRP explains "
                "the logits: keep strip_softmax=True"
            )
        elif op.kind == "softmax":
            reason = f"{layer} is a softmax in the middle of the network, which has no LRP rule"
        elif op.note:
            reason = f"{layer} has no LRP rule in this configuration: {op.note}"
        else:
            reason = f"{layer} has no LRP rule (op kind {op.kind!r})"
        cls = type(op.layer).__name__
        describe = ""
        if graph.entry_of(op.layer) is None:  # unknown to the layer table
            describe = (
                f"describe what it computes with kx.graph.register_layer({cls}, kind=...) "
                "(see the guide 'Extending'), "
            )
        return (
            f"{type(self).__name__}: {reason}. Supported: {graph.supported_layers()}. To "
            "proceed, add a composite entry for it, e.g. LRP(model, composite="
            f"kx.composites.Composite([({cls}, kx.rules.Gradient()), ...])), {describe}or "
            "use a gradient-based analyzer ('gradient', 'input_t_gradient', "
            "'integrated_gradients')."
        )

    def hook(self, step, inputs):
        """Run ``step`` under its composite rule."""
        rule = self._rules.get(step.op)
        if rule is None and step.op.inner is not None:
            return step.op.inner.run(inputs, self.hook)
        if rule is None:
            return step.op.forward(*inputs)
        return rule(step, inputs)

    def trace_variant(self, inputs: tuple) -> tuple[bool, ...] | None:
        """Which model inputs of the batch are all ``>= 0``, when a rule splits signs.

        Rules such as α-β leave out the terms in ``x⁻`` where the input is known
        to be non-negative (images in [0, 1]); a batch with negative values gets its
        own trace.
        """
        if not self._sign_sensitive:
            return None
        return tuple(bool(x.dtype.is_floating and tf.reduce_all(x >= 0)) for x in inputs)

    def active_plan(self):
        """The plan with the non-negative model inputs of the traced batch marked."""
        signs = self._variant
        if not signs or not any(signs):
            return self.plan
        if signs not in self._input_sign_plans:
            known = [key for key, sign in zip(self.plan.input_keys, signs) if sign]
            self._input_sign_plans[signs] = canonizers_module.canonize(
                self.plan, [], nonnegative=known
            )
        return self._input_sign_plans[signs]

    def rule_of(self, layer) -> list[rules.Rule]:
        """The rules assigned to a layer's ops (name or object), in execution order.

        Example:
            >>> import keras, keras_explain as kx
            >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
            >>> kx.LRPEpsilon(model, epsilon=0.5).rule_of(model.layers[0])
            [Epsilon(epsilon=0.5)]
        """
        layer = self.plan.find_layer(layer, "layer")
        return [rule for op, rule in self._rules.items() if op.layer is layer]

    # -- relevance at every layer -------------------------------------------------
    def analyze_layers(
        self, x: Any, target: Any = None, *, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """The relevance at the output of every layer (iNNvestigate's ``reverse_keep_tensors``).

        Args:
            x: As for :meth:`analyze`.
            target: As for :meth:`analyze`.
            batch_size: As for :meth:`analyze`.

        Returns:
            A dict from layer name to the relevance at that layer's output (for a
            layer with a fused activation: after the activation), plus ``"input"``
            (one input) or ``"input_0"``, ``"input_1"``, ... for the model inputs.
            Layers folded away by a canonizer (a Conv before its BatchNormalization)
            and layers the explained output does not depend on are left out.

        Example:
            >>> import keras, numpy as np, keras_explain as kx
            >>> model = keras.Sequential([keras.Input((4,)),
            ...                           keras.layers.Dense(5, activation="relu", name="h"),
            ...                           keras.layers.Dense(3, name="out")])
            >>> layers = kx.LRPZ(model).analyze_layers(np.ones((2, 4), "float32"))
            >>> sorted(layers)
            ['h', 'input', 'out']
        """
        names, keys = self._layer_keys()
        with self._layerwise_mode(keys):
            results = self.analyze(x, target, batch_size=batch_size)
        return dict(zip(names, results))

    def _layer_keys(self):
        produced = {key for step in self._needed for key in step.outputs}
        names, keys = [], []
        single = len(self.plan.input_keys) == 1
        for position, (key, spec) in enumerate(zip(self.plan.input_keys, self.plan.input_specs)):
            if tf.as_dtype(spec.dtype).is_floating:  # integer inputs have no relevance
                names.append("input" if single else f"input_{position}")
                keys.append(key)
        for layer in self.plan.layers:
            key = self.plan.output_key_of(layer) if self.plan.has_output(layer) else None
            if key in produced and getattr(layer, "name", None) not in names:
                names.append(layer.name)
                keys.append(key)
        return names, keys

    @contextlib.contextmanager
    def _layerwise_mode(self, keys):
        saved = (
            self._sources,
            self._embedded,
            self._functions,
            self._concrete,
            self.returns_maps,
        )
        self._sources, self._embedded = list(keys), [False] * len(keys)
        self._functions, self._concrete = self._layer_functions.setdefault(tuple(keys), ({}, {}))
        self._layerwise, self.returns_maps = True, False
        try:
            yield
        finally:
            self._sources, self._embedded, self._functions, self._concrete = saved[:4]
            self.returns_maps = saved[4]
            self._layerwise = False

    def _multi_input(self) -> bool:
        return self._layerwise or super()._multi_input()


@register("lrp.z")
class LRPZ(LRP):
    """LRP-0 on every linear op (:class:`~keras_explain.lrp.rules.Z`).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.LRPZ(model).analyze(np.ones((1, 4), "float32")).shape
        (1, 4)
    """

    def __init__(self, model, **kwargs):
        super().__init__(model, rules.Z(), **kwargs)


@register("lrp.epsilon")
class LRPEpsilon(LRP):
    """LRP-ε on every linear op (:class:`~keras_explain.lrp.rules.Epsilon`).

    Args:
        model: A Functional or Sequential Keras model.
        epsilon: The stabilizer ε (default 1e-7).
        **kwargs: See :class:`LRP`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.LRPEpsilon(model, epsilon=1e-7).analyze(np.ones((1, 4), "float32")).shape
        (1, 4)
    """

    def __init__(self, model, *, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, rules.Epsilon(epsilon), **kwargs)


@register("lrp.w_square")
class LRPWSquare(LRP):
    """LRP-w² on every linear op (:class:`~keras_explain.lrp.rules.WSquare`)."""

    def __init__(self, model, **kwargs):
        super().__init__(model, rules.WSquare(), **kwargs)


@register("lrp.flat")
class LRPFlat(LRP):
    """LRP-flat on every linear op (:class:`~keras_explain.lrp.rules.Flat`)."""

    def __init__(self, model, **kwargs):
        super().__init__(model, rules.Flat(), **kwargs)


@register("lrp.gamma")
class LRPGamma(LRP):
    """LRP-γ on every linear op (:class:`~keras_explain.lrp.rules.Gamma`).

    Args:
        model: A Functional or Sequential Keras model.
        gamma: γ (default 0.25).
        epsilon: Stabilizer (default 1e-7).
        **kwargs: See :class:`LRP`.
    """

    def __init__(self, model, *, gamma: float = 0.25, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, rules.Gamma(gamma, epsilon), **kwargs)


@register("lrp.alpha_beta")
class LRPAlphaBeta(LRP):
    """LRP-αβ on every linear op (:class:`~keras_explain.lrp.rules.AlphaBeta`).

    Args:
        model: A Functional or Sequential Keras model.
        alpha: α (default 1; with only ``beta`` given, ``beta + 1``).
        beta: β (default ``alpha - 1``).
        bias: Whether the bias takes part (default True).
        epsilon: Stabilizer (default 1e-7).
        **kwargs: See :class:`LRP`.

    Raises:
        ValueError: If ``alpha - beta != 1``.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.LRPAlphaBeta(model, alpha=2, beta=1).analyze(np.ones((1, 4), "float32")).shape
        (1, 4)
    """

    def __init__(
        self,
        model,
        *,
        alpha: float | None = None,
        beta: float | None = None,
        bias: bool = True,
        epsilon: float = 1e-7,
        **kwargs,
    ):
        if alpha is None:
            alpha = 1.0 if beta is None else beta + 1
        rule = rules.AlphaBeta(alpha, beta, bias=bias, epsilon=epsilon)
        super().__init__(model, rule, **kwargs)


@register("lrp.alpha_2_beta_1")
class LRPAlpha2Beta1(LRPAlphaBeta):
    """LRP-α2β1 (with bias) on every linear op."""

    def __init__(self, model, *, bias: bool = True, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, alpha=2, beta=1, bias=bias, epsilon=epsilon, **kwargs)


@register("lrp.alpha_2_beta_1_IB")
class LRPAlpha2Beta1IgnoreBias(LRPAlpha2Beta1):
    """LRP-α2β1 without bias on every linear op."""

    def __init__(self, model, *, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, bias=False, epsilon=epsilon, **kwargs)


@register("lrp.alpha_1_beta_0")
class LRPAlpha1Beta0(LRPAlphaBeta):
    """LRP-α1β0 (with bias) on every linear op."""

    def __init__(self, model, *, bias: bool = True, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, alpha=1, beta=0, bias=bias, epsilon=epsilon, **kwargs)


@register("lrp.alpha_1_beta_0_IB")
class LRPAlpha1Beta0IgnoreBias(LRPAlpha1Beta0):
    """LRP-α1β0 without bias on every linear op (the same as :class:`LRPZPlus`)."""

    def __init__(self, model, *, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, bias=False, epsilon=epsilon, **kwargs)


@register("lrp.z_plus")
class LRPZPlus(LRP):
    """LRP-z⁺ on every linear op (:class:`~keras_explain.lrp.rules.ZPlus`)."""

    def __init__(self, model, *, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, rules.ZPlus(epsilon), **kwargs)


@register("lrp.z_plus_fast")
class LRPZPlusFast(LRP):
    """LRP-z⁺ with W⁺ only, for inputs >= 0 (:class:`~keras_explain.lrp.rules.ZPlusFast`)."""

    def __init__(self, model, *, epsilon: float = 1e-7, **kwargs):
        super().__init__(model, rules.ZPlusFast(epsilon), **kwargs)


class _Preset(LRP):
    """An LRP analyzer whose composite is a preset of :data:`keras_explain.lrp.composites.PRESETS`.

    The preset's parameters are keyword arguments of the analyzer.
    """

    preset: str

    def __init__(self, model, **kwargs):
        defaults = composites.PRESETS[self.preset].defaults
        params = {name: kwargs.pop(name) for name in list(kwargs) if name in defaults}
        super().__init__(model, composites.get(self.preset, **params), **kwargs)

    @classmethod
    def parameters(cls) -> list[str]:
        """The preset's parameters and LRP's (``composite`` excluded)."""
        own = [name for name in super().parameters() if name != "composite"]
        return list(composites.PRESETS[cls.preset].defaults) + own


@register("lrp.sequential_preset_a")
class LRPSequentialPresetA(_Preset):
    """Dense ε (0.1), convolutions α1β0 (preset ``"sequential_preset_a"``)."""

    preset = "sequential_preset_a"


@register("lrp.sequential_preset_b")
class LRPSequentialPresetB(_Preset):
    """Dense ε (0.1), convolutions α2β1 (preset ``"sequential_preset_b"``)."""

    preset = "sequential_preset_b"


@register("lrp.sequential_preset_a_flat")
class LRPSequentialPresetAFlat(_Preset):
    """Preset A, Flat first layer (preset ``"sequential_preset_a_flat"``)."""

    preset = "sequential_preset_a_flat"


@register("lrp.sequential_preset_b_flat")
class LRPSequentialPresetBFlat(_Preset):
    """Preset B, Flat first layer (preset ``"sequential_preset_b_flat"``)."""

    preset = "sequential_preset_b_flat"


@register("lrp.epsilon_plus")
class LRPEpsilonPlus(_Preset):
    """Convolutions α1β0, Dense ε (1e-7) (preset ``"epsilon_plus"``)."""

    preset = "epsilon_plus"


@register("lrp.epsilon_plus_flat")
class LRPEpsilonPlusFlat(_Preset):
    """EpsilonPlus, Flat on the first layer (preset ``"epsilon_plus_flat"``)."""

    preset = "epsilon_plus_flat"


@register("lrp.epsilon_alpha_2_beta_1")
class LRPEpsilonAlpha2Beta1(_Preset):
    """Convolutions α2β1, Dense ε (preset ``"epsilon_alpha_2_beta_1"``)."""

    preset = "epsilon_alpha_2_beta_1"


@register("lrp.epsilon_gamma_box")
class LRPEpsilonGammaBox(_Preset):
    """First layer ZBox(low, high), convolutions γ, Dense ε.

    The preset ``"epsilon_gamma_box"`` of :data:`~keras_explain.lrp.composites.PRESETS`.
    ``low`` and ``high`` bound the values the first mixing linear layer (the
    first Dense or convolution) reads: after ``Rescaling``/``Normalization``
    preprocessing layers, give the bounds of the preprocessed values.

    Args:
        model: A Functional or Sequential Keras model.
        low: Lower bound of the input domain (default 0).
        high: Upper bound of the input domain (default 1).
        gamma: γ of the convolutions (default 0.25).
        epsilon: ε of the Dense layers (default 1e-7).
        **kwargs: See :class:`LRP`.
    """

    preset = "epsilon_gamma_box"


@register("deep_taylor")
class DeepTaylor(_Preset):
    """Deep Taylor decomposition: z⁺ on every linear op (Montavon et al. 2017).

    Montavon et al., "Explaining nonlinear classification decisions with deep
    Taylor decomposition", Pattern Recognition 2017, doi:10.1016/j.patcog.2016.11.008.
    Meant for ReLU networks.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> kx.DeepTaylor(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    preset = "deep_taylor"


@register("deep_taylor.bounded")
class BoundedDeepTaylor(_Preset):
    """Deep Taylor with ZBox(low, high) on the first linear op, z⁺ elsewhere.

    Args:
        model: A Functional or Sequential Keras model.
        low: Lower bound of the input domain (default 0).
        high: Upper bound of the input domain (default 1).
        **kwargs: See :class:`LRP`.
    """

    preset = "deep_taylor_bounded"

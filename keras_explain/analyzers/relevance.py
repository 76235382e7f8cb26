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
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import graph
from keras_explain.analyzers.backprop import Backpropagation
from keras_explain.analyzers.registry import add, register
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
            name of :func:`keras_explain.lrp.composites.names` (``"epsilon"``,
            ``"epsilon_plus"``, ...), whose parameters (``epsilon=``, ``low=``, ...)
            are then keyword arguments of the analyzer. Default: ``Epsilon()`` on
            every linear op. The registry names ``"lrp.<preset>"``,
            ``"deep_taylor"`` and ``"deep_taylor.bounded"`` are this class with
            their preset.
        canonizers: Analysis-time model rewrites; default
            ``[canonizers.BatchNormFold()]``; ``[]`` for none.
        **kwargs: The preset's parameters; ``layer``, ``output_layer``,
            ``output_index``, ``strip_softmax``, ``neuron_selection_mode``.

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
        >>> kx.LRP(model, "epsilon_plus", epsilon=0.01).analyze(np.ones((2, 4))).shape
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
        preset = {}
        if isinstance(composite, str) and composite in composites.PRESETS:
            defaults = composites.PRESETS[composite].defaults
            preset = {name: kwargs.pop(name) for name in list(kwargs) if name in defaults}
            self.name = PRESET_NAMES.get(composite, self.name)
        super().__init__(model, **kwargs)
        composite = rules.Epsilon() if composite is None else composite
        self.composite = composites.get(composite, **preset)
        if canonizers is None:
            canonizers = [canonizers_module.BatchNormFold()]
        self.canonizers = list(canonizers)
        keep = {*self.output_keys, *self.source_keys, *self.kept_keys()}
        self.plan = canonizers_module.canonize(self.plan, self.canonizers, keep)
        self._needed = self.plan.upstream(list(self.output_keys))[0]  # steps the output needs
        self._rules = self._assign_rules()  # by op: the same in every variant of the plan
        self._opened_gates: dict = {}  # the gates of products of layers opened at run time
        self._planned = {step.op for step in self.plan.steps} | set(self._rules)
        self._sign_sensitive = any(
            getattr(rule, "splits_signs", False) for rule in self._rules.values()
        )
        self._input_sign_plans: dict[tuple, Any] = {}
        self._layerwise = False
        self._layer_functions: dict = {}

    def kept_keys(self) -> list:
        """Values no canonizer may fold away besides the outputs and sources (default: none).

        A subclass that reads the relevance at a layer's output returns its key.
        """
        return []

    # -- rules ----------------------------------------------------------------
    def _assign_rules(self) -> dict:
        assigned = {}
        for step in self.plan.steps:
            if step not in self._needed or self._is_mask(step):
                continue  # a Keras mask carries no relevance; it runs as in model(x)
            rule = self.composite.rule_for(step)
            if step.op.kind == "softmax" and set(self.output_keys) & set(step.outputs):
                rule = None  # LRP explains the logits (strip_softmax=True), not probabilities
            if step.op.deferred is not None and rule is None:
                continue  # opened when the shapes of a run are known: rules then (hook)
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

    def describe_step(self, step) -> str:
        """The rule of ``step`` (of each op of a layer's program)."""
        rule = self._rules.get(step.op)
        if rule is not None:
            return repr(rule)
        if step.op.inner is not None:
            inner = [
                f"{name}: {self._rules.get(s.op)!r}" for name, s in step.op.inner.steps.items()
            ]
            return "; ".join(inner)
        if step.op.deferred is not None:
            return "its operations' rules, when it is opened"
        return "runs as in the model (no relevance passes)"

    def _unsupported_message(self, step) -> str:
        op = step.op
        layer = f"layer {op.name!r} of class {type(op.layer).__name__}"
        if op.owner is not None:  # an operation of a layer opened into its operations
            layer += (
                f" (an operation of layer {op.owner.name!r} of class "
                f"{type(op.owner).__name__}, opened into its keras.ops operations)"
            )
        if op.kind == "linear":
            reason = f"composite {self.composite!r} has no rule for linear {layer}"
        elif op.kind == "softmax" and set(self.output_keys) & set(step.outputs):
            reason = (
                f"the explained output comes out of the softmax {layer}; LRP explains "
                "the logits: keep strip_softmax=True"
            )
        elif op.note:
            reason = f"{layer} has no LRP rule in this configuration: {op.note}"
        else:
            reason = f"{layer} has no LRP rule (op kind {op.kind!r})"
        cls = type(op.layer).__name__
        describe = ""
        if graph.entry_of(op.layer) is None:  # unknown to the layer table
            register = (
                f"kx.graph.register_layer({cls}, kind=...)"
                if isinstance(op.layer, keras.layers.Layer)
                else f'kx.graph.register_op("{cls}", kind=...)'
            )
            if op.owner is not None:
                register += f" or kx.graph.register_layer({type(op.owner).__name__}, kind=...)"
            describe = f"describe what it computes with {register} (see the guide 'Extending'), "
        return (
            f"{type(self).__name__}: {reason}. kx.graph.Plan(model).describe() shows what "
            f"every step of the model is. Supported: {graph.supported_layers()}. To "
            "proceed, add a composite entry for it, e.g. LRP(model, composite="
            f"kx.composites.Composite([({cls}, kx.rules.Gradient()), ...])), {describe}or "
            "use a gradient-based analyzer ('gradient', 'input_t_gradient', "
            "'integrated_gradients')."
        )

    def hook(self, step, inputs):
        """Run ``step`` under its composite rule.

        The steps of a layer opened when the shapes of a run are known
        (:class:`keras_explain.graph.Deferred`) get their rules here, the first
        time they run; one no rule covers is an error then, unless it computes no
        floating-point value (a mask).
        """
        rule = self._rules.get(step.op)
        if rule is None and step.op.inner is not None:
            return step.op.inner.run(inputs, self.hook)
        if rule is None and step.op.deferred is not None:  # not openable on these shapes
            raise ValueError(self._unsupported_message(step))
        if rule is None and step.op not in self._planned:
            rule = self._rules[step.op] = self._rule_of_opened(step, inputs)
            if step.op.kind == "multiply":  # what canonize tells of planned products
                self._opened_gates[step.op] = canonizers_module.broadcast_gates(
                    [tuple(x.shape) for x in inputs]
                )
        if rule is None:
            return step.op.forward(*step.as_in_model(inputs))
        if step.op in self._opened_gates:
            step = step.replace(gates=self._opened_gates[step.op])
        return rule(step, inputs)

    def _rule_of_opened(self, step, inputs) -> rules.Rule | None:
        """The rule of a step of a layer opened at run time (None: it runs as itself)."""
        rule = self.composite.rule_for(step)
        if rule is None:
            values = keras.tree.flatten(step.op.forward(*step.as_in_model(inputs)))
            if any(value.dtype.is_floating for value in values):
                raise ValueError(self._unsupported_message(step))
        return rule

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
            >>> kx.LRP(model, "epsilon", epsilon=0.5).rule_of(model.layers[0])
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
            >>> layers = kx.LRP(model, "z").analyze_layers(np.ones((2, 4), "float32"))
            >>> sorted(layers)
            ['h', 'input', 'out']
        """
        names, keys = self._layer_keys()
        if isinstance(x, Mapping):  # the inputs in order: the results are per layer, not per key
            x = self._ordered(x)
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
            self.source_keys,
            self.embedded,
            self._functions,
            self._concrete,
            self.returns_maps,
        )
        self.source_keys, self.embedded = list(keys), [False] * len(keys)
        self._functions, self._concrete = self._layer_functions.setdefault(tuple(keys), ({}, {}))
        self._layerwise, self.returns_maps = True, False
        try:
            yield
        finally:
            self.source_keys, self.embedded, self._functions, self._concrete = saved[:4]
            self.returns_maps = saved[4]
            self._layerwise = False

    def _multi_input(self, count: int) -> bool:
        return self._layerwise or super()._multi_input(count)

    def _input_sources(self) -> bool:
        # layer by layer, source i is the i-th layer, not model input i (held or not)
        return not self._layerwise and super()._input_sources()

    @classmethod
    def parameters(cls, composite: Any = None, **preset: Any) -> list[str]:
        """LRP's keyword parameters; with a preset name, the preset's and not ``composite``.

        Example:
            >>> import keras_explain as kx
            >>> kx.LRP.parameters("epsilon_gamma_box")[:4]
            ['low', 'high', 'gamma', 'epsilon']
        """
        own = super().parameters()
        if not isinstance(composite, str) or composite not in composites.PRESETS:
            return own
        return list(composites.PRESETS[composite].defaults) + [
            name for name in own if name != "composite"
        ]


#: The registry names of the LRP presets of :data:`keras_explain.lrp.composites.PRESETS`:
#: ``"lrp." + preset``; Deep Taylor's two and AttnLRP's (``"lrp.attn"``) are shorter.
PRESET_NAMES = {
    **{preset: f"lrp.{preset}" for preset in composites.PRESETS},
    "deep_taylor": "deep_taylor",
    "deep_taylor_bounded": "deep_taylor.bounded",
    "attn_lrp": "lrp.attn",
}
for _preset, _name in PRESET_NAMES.items():
    add(_name, LRP, composite=_preset)


# -- the presets as classes: aliases kept for code written against earlier releases ----------
class _PresetAlias(LRP):
    """``kx.LRP(model, preset, **preset_parameters)`` under a class name of earlier releases.

    The registry name (:attr:`name`) builds the same analyzer:
    ``kx.create_analyzer(name, model, ...)``.
    """

    preset: str

    def __init__(self, model, **kwargs: Any):
        super().__init__(model, self.preset, **kwargs)

    @classmethod
    def parameters(cls, composite: Any = None, **preset: Any) -> list[str]:
        """The preset's parameters and LRP's (``composite`` excluded)."""
        return LRP.parameters(cls.preset)


def _alias(class_name: str, preset: str) -> type:
    summary = composites.PRESETS[preset].summary
    name = PRESET_NAMES[preset]
    doc = (
        f"{summary}: ``kx.LRP(model, {preset!r}, ...)``, registry name ``{name!r}``.\n\n"
        f"    Kept for earlier releases' code; parameters: "
        f"{', '.join(composites.PRESETS[preset].defaults) or 'none'} (see "
        ":data:`keras_explain.lrp.composites.PRESETS`) and :class:`LRP`'s.\n"
    )
    attributes = {"preset": preset, "name": name, "__doc__": doc, "__module__": __name__}
    return type(class_name, (_PresetAlias,), attributes)


#: The names of the alias classes below.
ALIASES = (
    "LRPZ",
    "LRPEpsilon",
    "LRPWSquare",
    "LRPFlat",
    "LRPGamma",
    "LRPAlphaBeta",
    "LRPAlpha2Beta1",
    "LRPAlpha2Beta1IgnoreBias",
    "LRPAlpha1Beta0",
    "LRPAlpha1Beta0IgnoreBias",
    "LRPZPlus",
    "LRPZPlusFast",
    "LRPSequentialPresetA",
    "LRPSequentialPresetB",
    "LRPSequentialPresetAFlat",
    "LRPSequentialPresetBFlat",
    "LRPEpsilonPlus",
    "LRPEpsilonPlusFlat",
    "LRPEpsilonAlpha2Beta1",
    "LRPEpsilonGammaBox",
    "DeepTaylor",
    "BoundedDeepTaylor",
)
LRPZ = _alias("LRPZ", "z")
LRPEpsilon = _alias("LRPEpsilon", "epsilon")
LRPWSquare = _alias("LRPWSquare", "w_square")
LRPFlat = _alias("LRPFlat", "flat")
LRPGamma = _alias("LRPGamma", "gamma")
LRPAlphaBeta = _alias("LRPAlphaBeta", "alpha_beta")
LRPAlpha2Beta1 = _alias("LRPAlpha2Beta1", "alpha_2_beta_1")
LRPAlpha2Beta1IgnoreBias = _alias("LRPAlpha2Beta1IgnoreBias", "alpha_2_beta_1_IB")
LRPAlpha1Beta0 = _alias("LRPAlpha1Beta0", "alpha_1_beta_0")
LRPAlpha1Beta0IgnoreBias = _alias("LRPAlpha1Beta0IgnoreBias", "alpha_1_beta_0_IB")
LRPZPlus = _alias("LRPZPlus", "z_plus")
LRPZPlusFast = _alias("LRPZPlusFast", "z_plus_fast")
LRPSequentialPresetA = _alias("LRPSequentialPresetA", "sequential_preset_a")
LRPSequentialPresetB = _alias("LRPSequentialPresetB", "sequential_preset_b")
LRPSequentialPresetAFlat = _alias("LRPSequentialPresetAFlat", "sequential_preset_a_flat")
LRPSequentialPresetBFlat = _alias("LRPSequentialPresetBFlat", "sequential_preset_b_flat")
LRPEpsilonPlus = _alias("LRPEpsilonPlus", "epsilon_plus")
LRPEpsilonPlusFlat = _alias("LRPEpsilonPlusFlat", "epsilon_plus_flat")
LRPEpsilonAlpha2Beta1 = _alias("LRPEpsilonAlpha2Beta1", "epsilon_alpha_2_beta_1")
LRPEpsilonGammaBox = _alias("LRPEpsilonGammaBox", "epsilon_gamma_box")
DeepTaylor = _alias("DeepTaylor", "deep_taylor")
BoundedDeepTaylor = _alias("BoundedDeepTaylor", "deep_taylor_bounded")

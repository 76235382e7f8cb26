"""The analyzer contract shared by every method: inputs, targets, batching, tracing.

A method implements one function, :meth:`Analyzer.explain_batch`, which runs
inside a ``tf.function`` on one batch and returns one tensor per model input.
Everything else (checking the model, the parameters and the input, ``target``,
``batch_size`` chunking, ``tf.data`` inputs, seeds, conversion to float32 numpy)
is written here once, as is what every multiplying method shares: the target
fixed on the clean input (:meth:`Analyzer.fixed_target`), and the copies of a
batch run through the model in passes within the memory budget
(:meth:`Analyzer.run_copies`).

The batch contract, for callers that explain a larger whole piece by piece
(``kx.explain_dataset``, ``kx.ray.Explainer``, :mod:`keras_explain.distributed`):
:meth:`Analyzer.analyze_part` explains a part of a larger input with the seeds of
its positions, and :meth:`Analyzer.prepare_batch` gives one batch's compiled
function and its arguments without running it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _batching, _graph, _validate, config, distributed, random
from keras_explain.graph import Plan, call_op
from keras_explain.targets import PerOutput, Target, fix_target, parse_target, target_scores

ModelLike = keras.Model | Callable[..., Any]
#: Names of inputs that are not features by default: masks, segment and token type ids,
#: positions (``padding_mask``, ``segment_ids``, ``token_type_ids``, ``position_ids``).
#: Names of model inputs that are not features by default (see ``constant_inputs``).
CONSTANT_INPUT_NAMES = re.compile(r"mask|segment|token_type|type_ids|position", re.IGNORECASE)
#: How an analyzer's :meth:`~Analyzer.explain_batch` runs (:attr:`Analyzer.execution`).
EXECUTIONS = ("compiled", "compiled_models", "host")


def keyword_parameters(classes) -> list[str]:
    """The keyword parameters of the ``__init__`` of ``classes``, in order, each once.

    Positional-or-keyword parameters count too, except ``self`` and the first
    argument of an analyzer (``model``) or a wrapper (``analyzer``).
    """
    names = []
    for klass in classes:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            keyword = parameter.kind == parameter.KEYWORD_ONLY or (
                parameter.kind == parameter.POSITIONAL_OR_KEYWORD
                and parameter.name not in ("self", "model", "analyzer")
            )
            if keyword and parameter.name not in names:
                names.append(parameter.name)
    return names


def _accepting_renamed(init: Callable) -> Callable:
    """``init`` that first maps the class's former keyword spellings to the current ones."""

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        renamed = type(self).renamed_keywords()
        if renamed:
            kwargs = _validate.renamed_keywords(type(self).__name__, kwargs, renamed)
        # the arguments the analyzer was created with (the outermost __init__'s), which
        # identify its traces for sharing (Analyzer._trace_identity)
        vars(self).setdefault("_arguments", (args, dict(kwargs)))
        return init(self, *args, **kwargs)

    __init__.renames_keywords = True
    return __init__


#: Traced functions shared between analyzers of the same class, model, arguments and
#: input signature (see Analyzer._compiled). Weak values: an entry lives as long as
#: one analyzer holding it, so creating the same analyzer again while the first
#: exists traces nothing, and dropping every analyzer frees the traces.
_SHARED_TRACES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class _NotShared(Exception):
    """An argument that cannot identify a trace (an object compared by identity)."""


def _fingerprint(value: Any, model: Any) -> Any:
    """A hashable stand-in for an analyzer argument, equal for equal arguments."""
    if value is None or isinstance(value, bool | int | float | str):
        return (type(value).__name__, value)
    if value is model:
        return ("model",)
    if isinstance(value, keras.Operation):  # a layer of the model, which holds it alive
        return ("layer", id(value))
    if isinstance(value, np.generic):
        return (type(value).__name__, value.item())
    if isinstance(value, np.ndarray) and value.dtype != object:
        digest = hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()
        return ("array", value.shape, value.dtype.str, digest)
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_fingerprint(item, model) for item in value))
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: str(item[0]))
        return ("dict", tuple((str(key), _fingerprint(item, model)) for key, item in items))
    raise _NotShared


def _explain_entry(analyzer, target, variant, inputs, indices, seed, params):
    analyzer._variant = variant  # read by active_plan() while the function is traced
    try:
        return analyzer.explain_batch(list(inputs), target, indices, seed, params)
    finally:
        analyzer._variant = None


def _outputs_entry(analyzer, inputs):
    return analyzer.forward(list(inputs))[0]


class Analyzer:
    """Base class of all analyzers.

    Args:
        model: A Keras model. Model-agnostic analyzers also accept any callable
            ``f(x) -> scores``.
        output_index: For a model with several outputs, which one to explain
            (default 0), or a list of them: the explained output is then their
            concatenation, each flattened per sample, and ``target`` selects in it
            (an int, ``"all"``, a callable, or
            :func:`keras_explain.targets.per_output`, one class per output,
            tf-keras-vis' list of scores); the default argmax is refused there.
        output_layer: A layer (name or object, nested models included) whose
            output is explained instead of the model output (neuron
            attribution); ``target`` then indexes its flattened output.
        strip_softmax: Explain the logits when the explained output comes out
            of a final softmax or sigmoid (a ``Softmax``/``Activation`` layer, a
            fused ``activation="softmax"`` or ``"sigmoid"``, or a raw
            ``keras.ops`` call); default True. The model is not modified.
            ``False`` explains the probabilities. For a one-logit binary model,
            ``target=lambda out: -out[:, 0]`` explains the negative class.
        neuron_selection_mode: iNNvestigate compatibility: ``"max_activation"``,
            ``"index"`` or ``"all"``.
        constant_inputs: Model inputs that are not features (names or
            positions): held constant by the method (never attributed,
            perturbed or interpolated) and given all-zero attributions. Default,
            for a model with several inputs: the inputs named like a mask, segment
            or token type ids or positions (``padding_mask``, ``segment_ids``),
            and integer inputs no embedding reads. ``[]`` attributes every input.
        verbose: Progress bars of long runs: ``"auto"`` (default; a bar once the
            work has lasted two seconds), ``1`` (always) or ``0`` (never), as
            Keras' ``verbose``.
        jit_compile: Compile the explanation with XLA (``tf.function(...,
            jit_compile=True)``). Off by default: on a CPU it ran 3.7-4x slower
            here; on a GPU it may win (measure it: ``benchmarks/bench_analyzers.py
            --jit-compile``). Results equal the default path to float32 rounding.

    Raises:
        ValueError: For an unbuilt Sequential model, an unknown layer, a bad
            ``output_index``, ``verbose`` or ``neuron_selection_mode``.
        TypeError: If ``model`` is not a Keras model (or a callable, for
            analyzers that accept one), or for a parameter the analyzer does not
            take (the message lists the valid ones).
    """

    #: Whether the analyzer needs to walk the model's layer graph (rule-based
    #: methods: a subclassed model is refused at construction).
    requires_graph = False
    #: Whether the analyzer accepts a plain callable ``f(x) -> scores``.
    accepts_callable = False
    #: How :meth:`explain_batch` runs, one of :data:`EXECUTIONS`: ``"compiled"``
    #: (inside ``tf.function``; a plain callable model must then be TensorFlow
    #: code), ``"compiled_models"`` (a Keras model inside ``tf.function``, a plain
    #: callable eagerly on numpy arrays, e.g. a scikit-learn pipeline) or ``"host"``
    #: (eagerly, for numpy packages such as lime and shap; the model's forward
    #: passes still run compiled, through :meth:`predict`). :attr:`compiled` says
    #: what it means for this analyzer's model.
    execution = "compiled"
    #: Whether ``analyze`` returns one map per sample instead of x's shape.
    returns_maps = False
    #: Whether integer-valued float arrays are accepted for token inputs (cast to the
    #: input's dtype): perturbation methods and metrics blend token ids with a baseline
    #: id as floats. Backpropagation analyzers refuse floats there.
    float_tokens = False
    #: Peak bytes of a pass per activation byte (``Plan.bytes_per_sample``), forward
    #: only and differentiated; measured on keras.applications models
    #: (benchmarks/bench_memory.py). See :func:`keras_explain.config.rows_per_pass`.
    forward_memory_factor = 0.2
    backward_memory_factor = 0.35
    #: Rows per pass of :meth:`run_copies` (None: from the memory budget); methods
    #: that evaluate many copies take it as a parameter.
    internal_batch_size: int | None = None

    def __init__(
        self,
        model: ModelLike,
        *,
        output_index: int | None = None,
        output_layer: str | keras.Layer | None = None,
        strip_softmax: bool = True,
        neuron_selection_mode: str | None = None,
        constant_inputs: Sequence[str | int] | None = None,
        verbose: Any = "auto",
        jit_compile: bool = False,
        **unexpected: Any,
    ):
        _validate.unexpected_parameters(type(self).__name__, unexpected, self.parameters())
        self.model = model
        self.output_index = output_index
        self.strip_softmax = strip_softmax
        self.neuron_selection_mode = neuron_selection_mode
        if neuron_selection_mode is not None:
            parse_target(
                None if neuron_selection_mode != "index" else 0, None, None, neuron_selection_mode
            )
        self.plan = self._make_plan(model)
        #: The keys of the explained outputs (several with a list ``output_index``);
        #: ``output_key`` is the one key, None when there are several.
        self.output_keys = self._explained_keys(output_layer)
        self.output_key = self.output_keys[0] if len(self.output_keys) == 1 else None
        self.constant_inputs = self._constant_inputs(constant_inputs)
        self._start(verbose, jit_compile)

    __init__ = _accepting_renamed(__init__)

    def _start(self, verbose: Any, jit_compile: bool = False) -> None:
        """The state of the runs: progress bars, compiled functions (wrappers share it)."""
        self.verbose = _validate.one_of(verbose, "verbose", _batching.VERBOSE)
        self.jit_compile = _validate.boolean(jit_compile, "jit_compile", type(self).__name__)
        self._functions: dict[Any, Callable] = {}
        self._concrete: dict[Any, Callable] = {}
        self._num_outputs: int | None = None
        self._variant = None

    @property
    def compiled(self) -> bool:
        """Whether :meth:`explain_batch` runs inside ``tf.function`` for this model."""
        if self.execution == "compiled_models":
            return isinstance(self.model, keras.Model)
        return self.execution == "compiled"

    def host_model(self) -> bool:
        """Whether the model is a plain callable evaluated eagerly on numpy arrays."""
        return not isinstance(self.model, keras.Model) and self.execution != "compiled"

    #: Keywords renamed in this release, former spelling -> current one: still accepted,
    #: with a ``FutureWarning``. Each class lists its own; :meth:`renamed_keywords`
    #: merges them along the class hierarchy, and every subclass's ``__init__`` maps
    #: them before it runs (so a check in a subclass sees the current spelling).
    renamed: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        init = vars(cls).get("__init__")
        if init is not None and not getattr(init, "renames_keywords", False):
            cls.__init__ = _accepting_renamed(init)

    @classmethod
    def renamed_keywords(cls) -> dict[str, str]:
        """Former keyword spellings -> current ones, for this class and its bases.

        Example:
            >>> import keras_explain as kx
            >>> kx.DeepLift.renamed_keywords()["eps"]
            'epsilon'
        """
        merged = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("renamed", {}))
        return merged

    #: The registry name (``kx.create_analyzer(name, model)``), set by
    #: :func:`~keras_explain.analyzers.registry.register`; None for a class not registered.
    name: str | None = None

    @classmethod
    def parameters(cls, **preset: Any) -> list[str]:
        """The keyword parameters the analyzer takes (its own and its bases').

        Args:
            **preset: The keyword arguments a registry name implies (a preset
                analyzer's parameters depend on them).

        Example:
            >>> import keras_explain as kx
            >>> "steps" in kx.IntegratedGradients.parameters()
            True
        """
        return keyword_parameters(cls.__mro__)

    # -- construction ------------------------------------------------------
    def _make_plan(self, model: ModelLike) -> Plan | None:
        if isinstance(model, keras.Model):
            if self.requires_graph or _graph.is_graph_model(model):
                return Plan(model)
            if isinstance(model, keras.Sequential):
                _graph.functional_of(model)  # raises the unbuilt-model error
            return None
        if callable(model) and self.accepts_callable:
            return None
        expected = (
            "a Keras model or a callable f(x) -> scores"
            if self.accepts_callable
            else ("a keras.Model")
        )
        raise TypeError(
            f"{type(self).__name__} needs {expected}. Received: model of type "
            f"{type(model).__name__}."
        )

    def _explained_keys(self, output_layer) -> list:
        self.output_layer = None
        indices = self.output_indices()
        if self.plan is None:
            if output_layer is not None:
                raise ValueError(
                    "output_layer needs a Functional or Sequential model whose layers "
                    f"can be walked. Received: output_layer={output_layer!r} for "
                    f"{type(self.model).__name__}."
                )
            return [None] * len(indices)
        if output_layer is not None:
            self.output_layer = self.plan.find_layer(output_layer, "output_layer")
            keys = [self.plan.output_key_of(self.output_layer)]
        else:
            outputs = self.plan.output_keys
            if not all(isinstance(i, int | np.integer) and 0 <= i < len(outputs) for i in indices):
                raise ValueError(
                    f"output_index must be an int in [0, {len(outputs)}), or a list of them, "
                    f"for model {self.model.name!r} with {len(outputs)} output(s). Received: "
                    f"output_index={self.output_index!r}."
                )
            keys = [outputs[i] for i in indices]
        return [self.plan.strip_softmax(key) if self.strip_softmax else key for key in keys]

    def output_indices(self) -> list[int]:
        """The indices of the explained model outputs (``output_index`` as a list)."""
        index = self.output_index
        if not isinstance(index, list | tuple):
            return [0 if index is None else index]
        if not index or len(set(index)) != len(index) or isinstance(index, str):
            raise ValueError(
                f"{type(self).__name__}: output_index lists the outputs to explain together, "
                f"each once. Received: output_index={index!r}."
            )
        return list(index)

    def joined_outputs(self, outputs: Sequence[tf.Tensor]) -> tf.Tensor:
        """The explained output: the one output, or several flattened and concatenated."""
        if len(outputs) == 1:
            return outputs[0]
        dtype = outputs[0].dtype if len({o.dtype for o in outputs}) == 1 else tf.float32
        return tf.concat(
            [tf.reshape(tf.cast(o, dtype), [tf.shape(o)[0], -1]) for o in outputs], axis=1
        )

    # -- public API --------------------------------------------------------
    def analyze(
        self,
        x: Any,
        target: Any = None,
        *,
        batch_size: int | None = None,
        neuron_selection: Any = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Explain the predictions for ``x``.

        Args:
            x: A numpy array, a ``tf.Tensor``, a list of them or a dict keyed
                by the input names (multi-input model), or a ``tf.data.Dataset``
                yielding ``x`` or ``(x, y)``.
            target: What to explain; see :mod:`keras_explain.targets`.
            batch_size: Split ``x`` into chunks of this many samples.
            neuron_selection: iNNvestigate-compatible alias of ``target``.

        Returns:
            float32 array(s) shaped like ``x``: one per model input, in a list, or
            in a dict with ``x``'s keys when ``x`` is a dict. The inputs held
            constant (``constant_inputs``) get zeros.

        Raises:
            ValueError: For an input of the wrong shape, non-finite values, or a
                bad target.
            TypeError: For a non-numeric input or a bad target type.
        """
        batch_size = _validate.optional_positive_int(
            batch_size, "batch_size", "the whole input in one batch"
        )
        if neuron_selection is not None:
            if target is not None:
                raise ValueError(
                    "Pass either target or neuron_selection, not both. Received: "
                    f"target={target!r}, neuron_selection={neuron_selection!r}."
                )
            target = neuron_selection
        if not isinstance(x, tf.data.Dataset):
            return self._keyed(x, self._analyze(x, target, batch_size, split=False))
        pieces, first = [], None
        for first_row, part, part_target in _batching.dataset_parts(x, target):
            first = part if first is None else first
            pieces.append(
                self._analyze(part, part_target, batch_size, split=True, first_row=first_row)
            )
        if not pieces:
            raise ValueError("The dataset passed as x yielded no batches.")
        pieces = [piece if isinstance(piece, list) else [piece] for piece in pieces]
        results = [np.concatenate(parts, axis=0) for parts in zip(*pieces)]
        return self._keyed(first, results if len(results) > 1 else results[0])

    def _keyed(self, x: Any, results: Any) -> Any:
        """The results as a dict with ``x``'s keys when ``x`` is a dict of inputs."""
        if not isinstance(x, Mapping) or not isinstance(results, list):
            return results
        return dict(zip(self.input_names, results))

    def analyze_part(
        self,
        x: Any,
        target: Any = None,
        *,
        first_row: int = 0,
        strategy: tf.distribute.Strategy | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Explain ``x`` as one part of a larger input, in one batch.

        The contract of callers that explain a whole dataset piece by piece
        (:func:`keras_explain.explain_dataset`, :class:`keras_explain.ray.Explainer`):
        sample ``i`` of ``x`` gets the seeds of position ``first_row + i`` of the
        whole, so the parts together equal one :meth:`analyze` of the whole, and a
        baseline shaped like a batch is refused (it cannot follow the parts).

        Args:
            x: Arrays or tensors, as for :meth:`analyze` (no dataset).
            target: As for :meth:`analyze`, for the samples of ``x``.
            first_row: The position of ``x``'s first sample in the whole input.
            strategy: A ``tf.distribute`` strategy: the batch is split across its
                replicas (:mod:`keras_explain.distributed`); results keep the order.

        Returns:
            As :meth:`analyze`.

        Raises:
            ValueError, TypeError: As :meth:`analyze`.

        Example:
            >>> import keras, numpy as np, keras_explain as kx
            >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
            >>> x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
            >>> smooth = kx.SmoothGrad(model, samples=4, seed=0)
            >>> parts = [smooth.analyze_part(x[i : i + 2], first_row=i) for i in (0, 2, 4)]
            >>> bool(np.allclose(np.concatenate(parts), smooth.analyze(x), atol=1e-6))
            True
        """
        run_batch = None if strategy is None else distributed.batch_runner(self, strategy)
        return self._keyed(
            x, self._analyze(x, target, None, split=True, first_row=first_row, run_batch=run_batch)
        )

    def _analyze(self, x, target, batch_size, split, first_row=0, run_batch=None):
        """Explain ``x`` in chunks of ``batch_size``; ``split``: part of a larger input."""
        run_batch = run_batch or self._run_batch
        inputs = self._standardize(x)
        total = int(inputs[0].shape[0])
        if isinstance(target, PerOutput):
            target = target.score(self.output_sizes(inputs))
        parsed = parse_target(target, total, self._output_size(inputs), self.neuron_selection_mode)
        if len(self.output_keys) > 1 and parsed.mode == "max":
            raise ValueError(
                f"{type(self).__name__} explains {len(self.output_keys)} outputs together "
                f"(output_index={self.output_index!r}); the argmax over them means nothing. "
                "Received: target=None. Pass kx.targets.per_output([class of each output]), "
                "an int indexing their concatenation, 'all' or a callable."
            )
        chunk = total if batch_size is None else batch_size
        self._check_batch([tuple(item.shape) for item in inputs], split=split or chunk < total)
        pieces = []
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            batch = [tensor[start:stop] for tensor in inputs]
            pieces.append(run_batch(batch, parsed.for_rows(start, stop), first_row + start))
        results = [
            parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0) for parts in zip(*pieces)
        ]
        return results if self._multi_input(len(inputs)) and not self.returns_maps else results[0]

    # -- the method's contract -------------------------------------------------
    def explain_batch(
        self,
        inputs: list[tf.Tensor],
        target: Target,
        indices: tf.Tensor,
        seed: tf.Tensor,
        params: dict[str, tf.Tensor],
    ) -> list[tf.Tensor]:
        """Explain one batch; the one function a method implements.

        It runs inside the analyzer's compiled function (see :attr:`execution`),
        once per input signature, target mode and :meth:`trace_variant`.

        Args:
            inputs: One tensor per model input, ``(B, ...)``.
            target: The parsed target (:class:`~keras_explain.targets.Target`).
            indices: ``(B,)`` int64 target indices (used when ``target.mode ==
                "index"``).
            seed: ``[user_seed, first_row]``, ``first_row`` being the index of the
                batch's first sample in the whole input: draw randomness with
                :mod:`keras_explain.random` so that results do not depend on
                ``batch_size``.
            params: :meth:`call_params` as tensors.

        Returns:
            One tensor per model input (per attributed source), or one map.
        """
        raise NotImplementedError

    def trace_variant(self, inputs: tuple) -> Any:
        """What the compiled function depends on besides the target (default: nothing).

        A hashable value computed from the batch before the call; batches with
        another value get their own trace, during which :meth:`active_plan` may
        differ (LRP: which model inputs are ``>= 0``).
        """
        return None

    def active_plan(self) -> Plan | None:
        """The plan the compiled function being traced runs (default: ``self.plan``)."""
        return self.plan

    def call_params(self) -> dict[str, Any]:
        """Parameters passed to the compiled function as tensors, read at every call.

        Changing them between calls (``analyzer.steps = 128``) does not retrace.
        """
        return {}

    def _check_batch(self, shapes: list[tuple], split: bool) -> None:
        """Check parameters against the batch before anything is traced (default: none).

        Args:
            shapes: The shape of each input of the whole call.
            split: Whether the call is split into several batches.
        """

    def rows_per_pass(self, sample_shapes: Sequence[tuple], *, backward: bool) -> int:
        """Rows of one pass through the model within :func:`keras_explain.config.memory_budget`.

        Args:
            sample_shapes: Shapes of one sample of each input (no batch axis).
            backward: Whether the pass is differentiated.

        Returns:
            :attr:`internal_batch_size` when set, else the estimate of
            :func:`keras_explain.config.rows_per_pass` for this model.
        """
        per_row = None if self.plan is None else self.plan.bytes_per_sample()
        elements = sum(math.prod(d or 1 for d in shape) for shape in sample_shapes)
        factor = self.backward_memory_factor if backward else self.forward_memory_factor
        return config.rows_per_pass(
            per_row, elements, factor=factor, override=self.internal_batch_size
        )

    def run_copies(
        self,
        inputs: Sequence[tf.Tensor],
        count: Any,
        make: Callable,
        evaluate: Callable,
        accumulate: Callable | None = None,
        initial: Any = None,
        *,
        backward: bool,
    ) -> Any:
        """Evaluate ``count`` copies of the batch ``inputs`` in passes within the memory budget.

        The one copy loop of every multiplying method (noise, path points, baselines,
        perturbations, masked inputs); see :func:`keras_explain._batching.run_copies`
        for ``make``, ``evaluate`` and ``accumulate``. A pass holds
        :meth:`copies_per_pass` copies of each of the ``B`` samples.

        Args:
            inputs: The batch, one tensor per input.
            count: Copies of each sample (int or scalar tensor).
            make: ``make(start, size) -> (copies, aux)``.
            evaluate: ``evaluate(flat, size) -> values``.
            accumulate: ``accumulate(accumulator, values, aux, start, size)``; None
                keeps every value (``(count, B, ...)``).
            initial: The initial accumulator.
            backward: Whether the evaluation is differentiated (the pass size).

        Returns:
            The accumulator, or the values of every copy.
        """
        per_pass = self.copies_per_pass(inputs, backward=backward)
        return _batching.run_copies(
            count, per_pass, make, evaluate, accumulate, initial, self.progress()
        )

    def copies_per_pass(self, inputs: Sequence[Any], *, backward: bool) -> int:
        """Copies of each sample of the batch ``inputs`` that one pass of :meth:`run_copies` holds.

        ``max(1, rows // B)`` with ``rows`` from :meth:`rows_per_pass`: a pass never
        holds fewer than ``B`` rows (``batch_size`` bounds that floor).
        """
        rows = self.rows_per_pass([tuple(x.shape[1:]) for x in inputs], backward=backward)
        return max(1, rows // (inputs[0].shape[0] or 1))

    def fixed_target(self, inputs: Sequence[tf.Tensor], target: Target, indices, outputs=None):
        """The target every copy of the batch explains (inside the compiled function).

        Methods that evaluate many copies of an input (noise, paths, baselines,
        perturbations) explain the output selected on the clean input at every
        copy: ``None`` (argmax) becomes the index of the clean argmax.

        Args:
            inputs: The clean batch.
            target: The parsed target.
            indices: ``(B,)`` target indices.
            outputs: The explained output of ``inputs``, if already computed.

        Returns:
            ``(target, indices, outputs)``: the fixed target and indices (any
            target but the argmax unchanged), and the clean explained output.
        """
        if outputs is None:
            outputs = self.forward(list(inputs))[0]
        target, indices = fix_target(outputs, target, indices)
        return target, indices, outputs

    def resolve_target(self, x: Any, target: Any = None) -> Any:
        """``target=None`` resolved to the per-sample argmax of the clean output, on the host.

        Metrics that explain many inputs derived from ``x`` (noisy copies,
        randomized models) use it so that every explanation is of the same output.

        Args:
            x: The clean inputs (arrays or tensors).
            target: As for :meth:`analyze`; only None is resolved.

        Returns:
            ``target`` unchanged, or for None an int64 array ``(B,)``.

        Example:
            >>> import keras, numpy as np, keras_explain as kx
            >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
            >>> model.set_weights([np.eye(2)])
            >>> kx.Gradient(model).resolve_target(np.array([[0.0, 1.0], [3.0, 1.0]])).tolist()
            [1, 0]
        """
        if target is not None:
            return target
        outputs = tf.constant(self.predict(x))
        return np.asarray(fix_target(outputs, Target("max"), None)[1], np.int64)

    def predict(self, x: Any) -> np.ndarray:
        """The explained output for arrays of any number of rows, on the host.

        The output of :attr:`output_key` (the logits when ``strip_softmax``; an
        ``output_layer``'s output), in passes within the memory budget: a Keras
        model through one compiled function per input shape (the analyzer's,
        shared with every explanation), a plain callable on numpy arrays.

        Args:
            x: A numpy array, a tensor, or a list of them (multi-input models).

        Returns:
            The outputs, ``(N, ...)``.

        Raises:
            ValueError: If a callable model does not return one row per input row,
                and for the input errors of :meth:`analyze`.
        """
        if self.host_model():
            items = [np.asarray(item) for item in (x if isinstance(x, list | tuple) else [x])]
        else:
            items = self._standardize(x)
        rows = self.rows_per_pass([tuple(item.shape[1:]) for item in items], backward=False)
        pieces = []
        for start in range(0, int(items[0].shape[0]), rows):
            chunk = [item[start : start + rows] for item in items]
            if self.host_model():
                pieces.append(self._call_callable(np.asarray(chunk[0])))
                continue
            arguments = (tuple(tf.convert_to_tensor(item) for item in chunk),)
            function = self._compiled(("outputs",), arguments)
            pieces.append(np.asarray(function(*arguments)))
        return np.concatenate(pieces, axis=0)

    def _call_callable(self, chunk: np.ndarray) -> np.ndarray:
        result = self.model(chunk)
        if isinstance(result, list | tuple):
            picked = [np.asarray(result[i], np.float32) for i in self.output_indices()]
            result = (
                picked[0]
                if len(picked) == 1
                else np.concatenate([item.reshape(len(item), -1) for item in picked], axis=1)
            )
        result = np.asarray(result, dtype=np.float32)
        if result.ndim == 0 or result.shape[0] != len(chunk):
            raise ValueError(
                "The model callable must return one row of scores per input row, shape "
                f"(n, ...) for n inputs. Received: shape {result.shape} for an input of "
                f"shape {chunk.shape}."
            )
        return result[:, None] if result.ndim == 1 else result

    def progress(self) -> _batching.Progress:
        """A progress bar for this analyzer's long runs (see ``verbose``)."""
        return _batching.Progress(self.verbose, type(self).__name__)

    def forward(self, inputs: Sequence[tf.Tensor], hook=None, watch=()):
        """Run the model; returns ``(explained_output, values)``.

        Args:
            inputs: One tensor per model input.
            hook: A graph-engine hook (graph models only).
            watch: A ``tf.GradientTape`` (or None) that watches the values of
                ``self.source_keys(...)`` as soon as they are computed, paired
                with those keys: ``(tape, keys)``.

        Returns:
            The explained output tensor and the dict of computed values (empty
            for models without a graph).
        """
        if self.host_model():
            return tf.convert_to_tensor(self.predict(list(inputs))), {}
        if self.plan is None:
            outputs = self.model(inputs if len(inputs) > 1 else inputs[0])
            if isinstance(outputs, list | tuple):
                outputs = self.joined_outputs([outputs[i] for i in self.output_indices()])
            return outputs, {}
        inner = hook or call_op
        if watch:
            tape, keys = watch

            def watching(step, args):
                result = inner(step, args)
                if step.outputs[0] in keys:
                    tape.watch(result)
                return result

            run_hook = watching
        else:
            run_hook = inner
        values = self.active_plan().run(inputs, run_hook, targets=list(self.output_keys))
        return self.joined_outputs([values[key] for key in self.output_keys]), values

    def scores(self, outputs, target: Target, indices):
        """Per-sample scores of the explained output."""
        return target_scores(outputs, target, indices)

    # -- the batch contract: one batch's compiled function ------------------------
    def prepare_batch(self, batch: Sequence[Any], target: Target, first_row: int):
        """The function that explains one batch, and its arguments, without running it.

        A compiled analyzer's function is traced here (once per input signature,
        target mode and :meth:`trace_variant`), in the calling thread;
        :mod:`keras_explain.distributed` prepares one slice per replica this way.

        Args:
            batch: One standardized array or tensor per model input.
            target: The parsed target of the batch's samples.
            first_row: The position of the batch's first sample in the whole input.

        Returns:
            ``(function, arguments)``: ``function(*arguments)`` returns one tensor
            per result of :meth:`explain_batch`.
        """
        size = int(batch[0].shape[0])
        if target.mode == "index":
            indices = np.broadcast_to(target.indices, (size,))
        else:
            indices = np.zeros((size,), np.int64)
        seed = getattr(self, "seed", None)
        seed = random.fresh_seed() if seed is None else seed
        tensors = tuple(tf.convert_to_tensor(item) for item in batch)
        variant = self.trace_variant(tensors)
        key = target.trace_key() if variant is None else (target.trace_key(), variant)
        params = tf.nest.map_structure(tf.convert_to_tensor, self.call_params())
        arguments = (
            tensors,
            tf.constant(indices, tf.int64),
            tf.constant([seed, first_row], tf.int64),
            params,
        )
        return self._compiled(key, arguments), arguments

    # -- internals ---------------------------------------------------------
    def _multi_input(self, count: int) -> bool:
        if self.plan is not None:
            return len(self.plan.input_keys) > 1
        return count > 1

    def _run_batch(self, batch, target: Target, first_row: int):
        function, arguments = self.prepare_batch(batch, target, first_row)
        results = function(*arguments)
        return [np.asarray(result.numpy(), dtype=np.float32) for result in results]

    def _compiled(self, key, arguments) -> Callable:
        """The function for ``key``, as a concrete function per input signature.

        Calling the concrete function skips ``tf.function``'s dispatch on every call
        (a few hundred microseconds, much of a small model's gradient).
        """
        if not self.compiled and key != ("outputs",):
            return self._function_for(key)
        signature = (key, *((t.shape, t.dtype) for t in tf.nest.flatten(arguments)))
        concrete = self._concrete.get(signature)
        if concrete is not None:
            return concrete
        identity = self._trace_identity()
        shared = None if identity is None else (identity, signature)
        concrete = None if shared is None else _SHARED_TRACES.get(shared)
        if concrete is None:
            traced = self._function_for(key).get_concrete_function(*arguments)
            _graph.release_gradients(traced.graph)  # else kept after the analyzer is gone
            concrete = _graph.unrecorded(traced)
            if shared is not None:
                _SHARED_TRACES[shared] = concrete
        self._concrete[signature] = concrete
        return concrete

    def _trace_identity(self) -> tuple | None:
        """What identifies this analyzer's traces: class, model, arguments, settings.

        None (traces not shared) for a model that is not a Keras model, or an argument
        compared by identity (a callable, a rule or layer object): two such analyzers
        could trace differently. The public attributes of plain values (and lists or
        arrays of them) are part of it, so an analyzer whose parameter was changed
        after creation shares nothing with one created with the original value; so is
        the memory budget, which sets the rows of a traced pass.
        """
        arguments = vars(self).get("_arguments")
        model = self.model
        if arguments is None or not isinstance(model, keras.Model):
            return None
        args, kwargs = arguments
        kwargs = {name: value for name, value in kwargs.items() if name != "verbose"}
        try:
            fingerprint = _fingerprint((args, kwargs), model)
        except _NotShared:
            return None
        settings = []  # e.g. the inputs LRP's analyze_layers explains (source_keys)
        for name, value in vars(self).items():
            if not name.startswith("_") and name != "verbose":
                try:
                    settings.append((name, _fingerprint(value, model)))
                except _NotShared:  # derived objects (a plan, a composite)
                    continue
        fingerprint = (fingerprint, tuple(settings))
        return (type(self), id(model), config.memory_budget(), fingerprint)

    def _function_for(self, key):
        if key == ("outputs",) and key not in self._functions:  # the explained output
            self._functions[key] = tf.function(
                functools.partial(_outputs_entry, self),
                jit_compile=self.jit_compile or None,
                autograph=False,
            )
        if key not in self._functions:
            trace_key, variant = key if isinstance(key, tuple) else (key, None)
            mode, function = (
                (trace_key, None) if isinstance(trace_key, str) else ("callable", trace_key)
            )
            target = Target(mode, function=function)
            # A partial, not a closure: TensorFlow's retracing detector keys on a
            # function's code object, which all analyzers' closures would share,
            # and would warn about "retracing" when a user creates several.
            explain = functools.partial(_explain_entry, self, target, variant)
            # No AutoGraph: the engine's loops are explicit tf.while_loops and its
            # branches Python ones, and Keras 3 layers do not rely on it (Keras' own
            # train step is not converted); converting every function the trace
            # reaches was 40% of the time to a first explanation.
            self._functions[key] = (
                tf.function(explain, jit_compile=self.jit_compile or None, autograph=False)
                if self.compiled
                else explain
            )
        return self._functions[key]

    def _standardize(self, x) -> list[tf.Tensor | np.ndarray]:
        if isinstance(x, Mapping):
            x = self._ordered(x)
        items = list(x) if isinstance(x, list | tuple) else [x]
        specs = self._input_specs()
        if specs is not None and len(items) != len(specs):
            raise ValueError(
                f"Model {self.model.name!r} takes {len(specs)} input(s) but "
                f"{len(items)} were given. Pass a list with one array per input."
            )
        result = []
        for position, item in enumerate(items):
            array = item if isinstance(item, tf.Tensor) else np.asarray(item)
            dtype = tf.as_dtype(array.dtype) if not isinstance(array, tf.Tensor) else array.dtype
            if not (dtype.is_floating or dtype.is_integer) or dtype.is_bool:
                raise TypeError(
                    f"Input {position} must be numeric. Received: dtype {dtype.name}. "
                    "Convert it, e.g. x.astype('float32')."
                )
            spec = specs[position] if specs is not None else None
            if spec is not None:
                self._check_shape(array, spec, position)
                dtype_wanted = tf.as_dtype(spec.dtype)
                if dtype_wanted.is_integer:
                    array = self._check_tokens(array, dtype, position, spec)
                if dtype_wanted.is_floating and isinstance(array, np.ndarray):
                    # stays numpy (no copy when already right): one host->device copy later
                    array = array.astype(dtype_wanted.as_numpy_dtype, copy=False)
                elif dtype_wanted.is_floating:
                    array = tf.cast(array, dtype_wanted)
            elif (
                dtype.is_floating
                and dtype != tf.float32
                and dtype != tf.float16
                and dtype != tf.bfloat16
            ):
                array = tf.cast(array, tf.float32)
            if dtype.is_floating and not _all_finite(array):
                raise ValueError(
                    f"Input {position} contains NaN or Inf values; explanations of "
                    "non-finite inputs are meaningless. Clean or impute the input "
                    "first (e.g. np.nan_to_num)."
                )
            result.append(array)
        sizes = {int(item.shape[0]) for item in result}
        if len(sizes) > 1:
            raise ValueError(
                f"All inputs must have the same number of samples. Received sizes {sorted(sizes)}."
            )
        if 0 in sizes:
            raise ValueError("x is empty (0 samples); pass at least one sample.")
        if specs is not None and len(result) > 1:
            self._check_token_companions(result)
        return result

    def _check_token_companions(self, arrays) -> None:
        """Masks and segment ids shaped like the token ids; sequences the model can place."""
        owner, name = type(self).__name__, self.model.name
        names = self.input_names
        tokens = [
            i
            for i, spec in enumerate(self._input_specs())
            if tf.as_dtype(spec.dtype).is_integer and i not in self.constant_inputs
        ]
        if len(tokens) != 1:
            return
        token_shape = tuple(arrays[tokens[0]].shape)
        for position in self.constant_inputs:
            if not CONSTANT_INPUT_NAMES.search(names[position]):
                continue
            shape = tuple(arrays[position].shape)
            if len(shape) == len(token_shape) and shape != token_shape:
                raise ValueError(
                    f"{owner}: input {names[position]!r} of model {name!r} must have the "
                    f"shape of the token ids {names[tokens[0]]!r}, {token_shape}. Received: "
                    f"shape {shape}. Pass one entry per token (pad both to the same length)."
                )
        limit = _graph.position_limit(step.op.layer for step in self.plan.steps)
        if limit is not None and len(token_shape) > 1 and token_shape[1] > limit[1]:
            raise ValueError(
                f"{owner}: input {names[tokens[0]]!r} of model {name!r} holds sequences of "
                f"{token_shape[1]} tokens; its position embedding {limit[0]!r} has "
                f"{limit[1]} positions. Truncate the sequences to {limit[1]} tokens."
            )

    @property
    def input_names(self) -> list[str] | None:
        """The names of the model's inputs, in order (the keys of a dict ``x``), or None."""
        specs = self._input_specs()
        if specs is None:
            return None
        return [getattr(spec, "name", None) or f"input_{i}" for i, spec in enumerate(specs)]

    def _constant_inputs(self, given: Sequence[str | int] | None) -> tuple[int, ...]:
        """The positions of the model inputs held constant (not features; see ``analyze``).

        By default: inputs named like a mask, segment ids, token type ids or
        positions, and integer inputs no embedding reads (a padding mask). Names
        or positions in ``given`` replace the default.
        """
        names = self.input_names
        if names is None:
            return ()
        if given is not None:
            if isinstance(given, str | int):
                given = [given]
            positions = []
            for item in given:
                position = names.index(item) if item in names else item
                if not isinstance(position, int) or not 0 <= position < len(names):
                    raise ValueError(
                        f"{type(self).__name__}: constant_inputs names inputs of model "
                        f"{self.model.name!r} by name or position. Received: {item!r}. "
                        f"Inputs: {names}."
                    )
                positions.append(position)
            return tuple(sorted(set(positions)))
        specs = self._input_specs()
        return tuple(
            position
            for position, (name, spec) in enumerate(zip(names, specs))
            if len(names) > 1
            and (CONSTANT_INPUT_NAMES.search(name) or self._integer_not_embedded(position, spec))
        )

    def _integer_not_embedded(self, position: int, spec) -> bool:
        """An integer input that no embedding reads (a mask or ids of another kind)."""
        if self.plan is None or not tf.as_dtype(spec.dtype).is_integer:
            return False
        key = self.plan.input_keys[position]
        readers = [s for s in self.plan.consumers(key) if s.op.kind not in ("reshape",)]
        return not readers or any(step.op.kind != "embedding" for step in readers)

    def _ordered(self, x: Mapping) -> list:
        """A dict of model inputs as a list in the model's input order."""
        names = self.input_names
        if names is None or set(x) != set(names):
            missing = sorted(set(names or ()) - set(x))
            extra = sorted(set(x) - set(names or ()))
            raise ValueError(
                f"{type(self).__name__}: a dict x needs one array per input of model "
                f"{self.model.name!r}, keyed by the input names {names}. Received keys "
                f"{sorted(x)} (missing: {missing}, unknown: {extra})."
            )
        return [x[name] for name in names]

    def describe(self) -> str:
        """What the analyzer does at each step of the model: the plan before it runs.

        Returns:
            A text table (:meth:`keras_explain.graph.Plan.describe`): each step's
            layer, class, op kind, what the method does there and why a layer
            stays whole or is opened when the shapes of a run are known.

        Raises:
            ValueError: For a model without a layer graph (subclassed).

        Example:
            >>> import keras, keras_explain as kx
            >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
            >>> print(kx.LRP(model, "epsilon").describe())
            step  class  kind    rule
            d     Dense  linear  Epsilon(epsilon=1e-07)
        """
        if self.plan is None:
            raise ValueError(
                f"{type(self).__name__}: model {getattr(self.model, 'name', self.model)!r} has "
                "no layer graph to describe; the method runs it as a whole."
            )
        return self.active_plan().describe(self.describe_step)

    def describe_step(self, step) -> str:
        """What the method does at ``step`` (default: its gradient)."""
        return "gradient"

    def _input_specs(self):
        if self.plan is not None:
            return self.plan.input_specs
        if isinstance(self.model, keras.Model):
            try:
                return list(self.model.inputs)
            except (AttributeError, ValueError):
                return None
        return None

    def _check_tokens(self, array, dtype, position, spec):
        """Token ids for an integer input: integers within every Embedding's vocabulary."""
        name, owner = self.model.name, type(self).__name__
        spec_dtype = tf.as_dtype(spec.dtype)
        if not dtype.is_integer and self.float_tokens:
            values = array if isinstance(array, np.ndarray) else array.numpy()
            if np.array_equal(values, np.round(values)):
                array = values.astype(spec_dtype.as_numpy_dtype)
                dtype = spec_dtype
        if not dtype.is_integer:
            raise TypeError(
                f"{owner}: input {position} of model {name!r} takes integer token ids "
                f"(dtype {spec_dtype.name}). "
                f"Received: dtype {dtype.name}. Pass the token ids, e.g. x.astype('int32'), "
                "not their embeddings or floats."
            )
        if self.plan is None:
            return array
        key = self.plan.input_keys[position]
        sizes = [
            step.op.layer.input_dim
            for step in self.plan.consumers(key)
            if step.op.kind == "embedding"
        ]
        if not sizes:
            return array
        values = array if isinstance(array, np.ndarray) else array.numpy()
        low, high, vocabulary = int(values.min()), int(values.max()), min(sizes)
        if low < 0 or high >= vocabulary:
            raise ValueError(
                f"{owner}: input {position} of model {name!r} holds token ids outside the "
                f"Embedding vocabulary [0, {vocabulary}). Received: ids from {low} to {high}. "
                "Map unknown words to an out-of-vocabulary id below the vocabulary size "
                "(e.g. keras.layers.StringLookup's OOV index)."
            )
        return array

    def _check_shape(self, array, spec, position):
        expected = tuple(spec.shape)
        received = tuple(array.shape)
        name = self.model.name
        if len(received) != len(expected):
            hint = (
                " Add the batch axis, e.g. x[None]." if len(received) == len(expected) - 1 else ""
            )
            raise ValueError(
                f"Input {position} of model {name!r} must have rank {len(expected)}, "
                f"shape (batch, {', '.join(str(d) for d in expected[1:])}). Received: "
                f"shape {received}.{hint}"
            )
        for got, want in zip(received[1:], expected[1:]):
            if want is not None and got != want:
                hint = ""
                if tf.as_dtype(spec.dtype).is_integer and len(expected) == 2:
                    hint = (
                        f" Pad or truncate the token sequences to length {want}, e.g. "
                        f"keras.utils.pad_sequences(x, maxlen={want}, padding='post')."
                    )
                raise ValueError(
                    f"{type(self).__name__}: Input {position} of model {name!r} must have "
                    f"shape (batch, {', '.join(str(d) for d in expected[1:])}). Received: "
                    f"shape {received}.{hint}"
                )

    def _output_size(self, inputs) -> int | None:
        if self._num_outputs is None:
            self._num_outputs = sum(self.output_sizes(inputs))
        return self._num_outputs

    def output_sizes(self, inputs) -> list[int]:
        """Values per sample of each explained output (their concatenation's parts)."""
        shapes = [None if self.plan is None else self.plan.shape_of(k) for k in self.output_keys]
        if any(shape is None or any(dim is None for dim in shape[1:]) for shape in shapes):
            sample = [tf.convert_to_tensor(item[:1]) for item in inputs]
            if len(self.output_keys) == 1:
                return [math.prod(self.forward(sample)[0].shape[1:])]
            if self.plan is None:
                outputs = self.model(sample if len(sample) > 1 else sample[0])
                shapes = [tuple(outputs[i].shape) for i in self.output_indices()]
            else:
                values = self.forward(sample)[1]
                shapes = [tuple(values[key].shape) for key in self.output_keys]
        return [math.prod(shape[1:]) for shape in shapes]


def _all_finite(array) -> bool:
    """Whether every value is finite (numpy stays on the host, tensors stay on device)."""
    if isinstance(array, np.ndarray):
        return bool(np.isfinite(array).all())
    return bool(tf.reduce_all(tf.math.is_finite(tf.cast(array, tf.float32))))

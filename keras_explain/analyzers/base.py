"""The analyzer contract shared by every method: inputs, targets, batching, tracing.

Subclasses implement one method, :meth:`Analyzer._explain`, which runs inside a
``tf.function`` on one batch and returns one tensor per model input. Everything
else (checking the model, the parameters and the input, ``target``,
``batch_size`` chunking, ``tf.data`` inputs, seeds, conversion to float32 numpy)
is written here once.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _batching, _graph, _validate, config
from keras_explain.graph import Plan, call_op
from keras_explain.targets import Target, parse_target, target_scores

ModelLike = keras.Model | Callable[..., Any]


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


def _explain_entry(analyzer, target, variant, inputs, indices, seed, params):
    analyzer._variant = variant  # read by active_plan() while the function is traced
    try:
        return analyzer._explain(list(inputs), target, indices, seed, params)
    finally:
        analyzer._variant = None


class Analyzer:
    """Base class of all analyzers.

    Args:
        model: A Keras model. Model-agnostic analyzers also accept any callable
            ``f(x) -> scores``.
        output_index: For a model with several outputs, which one to explain
            (default 0).
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
        verbose: Progress bars of long runs: ``"auto"`` (default; a bar once the
            work has lasted two seconds), ``1`` (always) or ``0`` (never), as
            Keras' ``verbose``.

    Raises:
        ValueError: For an unbuilt Sequential model, an unknown layer, a bad
            ``output_index``, ``verbose`` or ``neuron_selection_mode``.
        TypeError: If ``model`` is not a Keras model (or a callable, for
            analyzers that accept one), or for a parameter the analyzer does not
            take (the message lists the valid ones).
    """

    #: Whether the analyzer needs to walk the model's layer graph.
    requires_graph = False
    #: Whether the analyzer accepts a plain callable ``f(x) -> scores``.
    accepts_callable = False
    #: Whether ``analyze`` returns one map per sample instead of x's shape.
    returns_maps = False
    #: Whether ``_explain`` runs inside ``tf.function``. False runs it eagerly,
    #: for a callable that cannot be traced (numpy-only, e.g. scikit-learn).
    traceable = True
    #: Peak bytes of a pass per activation byte (``Plan.bytes_per_sample``), forward
    #: only and differentiated; measured on keras.applications models
    #: (benchmarks/bench_memory.py). See :func:`keras_explain.config.rows_per_pass`.
    #: Whether integer-valued float arrays are accepted for token inputs (cast to the
    #: input's dtype): perturbation methods and metrics blend token ids with a baseline
    #: id as floats. Backpropagation analyzers refuse floats there.
    float_tokens = False
    forward_memory_factor = 0.2
    backward_memory_factor = 0.35

    def __init__(
        self,
        model: ModelLike,
        *,
        output_index: int | None = None,
        output_layer: str | keras.Layer | None = None,
        strip_softmax: bool = True,
        neuron_selection_mode: str | None = None,
        verbose: Any = "auto",
        **unexpected: Any,
    ):
        _validate.unexpected_parameters(type(self).__name__, unexpected, self.parameters())
        self.model = model
        self.output_index = output_index
        self.strip_softmax = strip_softmax
        self.neuron_selection_mode = neuron_selection_mode
        self.verbose = _validate.one_of(verbose, "verbose", _batching.VERBOSE)
        if neuron_selection_mode is not None:
            parse_target(
                None if neuron_selection_mode != "index" else 0, None, None, neuron_selection_mode
            )
        self.plan = self._make_plan(model)
        self.output_key = self._explained_key(output_layer)
        self._functions: dict[Any, Callable] = {}
        self._concrete: dict[Any, Callable] = {}
        self._num_outputs: int | None = None
        self._input_count = 1
        self._variant = None

    @classmethod
    def parameters(cls) -> list[str]:
        """The keyword parameters the analyzer takes (its own and its bases').

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

    def _explained_key(self, output_layer):
        self.output_layer = None
        if self.plan is None:
            if output_layer is not None:
                raise ValueError(
                    "output_layer needs a Functional or Sequential model whose layers "
                    f"can be walked. Received: output_layer={output_layer!r} for "
                    f"{type(self.model).__name__}."
                )
            return None
        if output_layer is not None:
            self.output_layer = self.plan.find_layer(output_layer, "output_layer")
            key = self.plan.output_key_of(self.output_layer)
        else:
            outputs = self.plan.output_keys
            index = 0 if self.output_index is None else self.output_index
            if not isinstance(index, int | np.integer) or not 0 <= index < len(outputs):
                raise ValueError(
                    f"output_index must be an int in [0, {len(outputs)}) for model "
                    f"{self.model.name!r} with {len(outputs)} output(s). Received: "
                    f"output_index={self.output_index!r}."
                )
            key = outputs[index]
        return self.plan.strip_softmax(key) if self.strip_softmax else key

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
            x: A numpy array, a ``tf.Tensor``, a list of them (multi-input
                model), or a ``tf.data.Dataset`` yielding ``x`` or ``(x, y)``.
            target: What to explain; see :mod:`keras_explain.targets`.
            batch_size: Split ``x`` into chunks of this many samples.
            neuron_selection: iNNvestigate-compatible alias of ``target``.

        Returns:
            float32 array(s) shaped like ``x`` (one per model input).

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
        if isinstance(x, tf.data.Dataset):
            return self._analyze_dataset(x, target, batch_size)
        return self._analyze(x, target, batch_size, split=False)

    def _analyze(self, x, target, batch_size, split, first_row=0, run_batch=None):
        """Explain ``x`` in chunks of ``batch_size``.

        ``first_row`` is the index of ``x``'s first sample in a larger input (its
        seeds are those of that position); ``run_batch(batch, target, first_row)``
        replaces :meth:`_run_batch` (``keras_explain.distributed`` splits batches
        across devices with it).
        """
        run_batch = run_batch or self._run_batch
        inputs = self._standardize(x)
        total = int(inputs[0].shape[0])
        parsed = parse_target(target, total, self._output_size(inputs), self.neuron_selection_mode)
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
        return results if self._multi_input() and not self.returns_maps else results[0]

    # -- subclass API ------------------------------------------------------
    def _explain(
        self,
        inputs: list[tf.Tensor],
        target: Target,
        indices: tf.Tensor,
        seed: tf.Tensor,
        params: dict[str, tf.Tensor],
    ) -> list[tf.Tensor]:
        """Explain one batch inside a ``tf.function``; one tensor per input.

        ``seed`` is ``[user_seed, first_row]``, the index of the batch's first
        sample in the whole input: draw randomness with :mod:`keras_explain._random`
        so that results do not depend on ``batch_size``. ``params`` holds
        :meth:`call_params` as tensors.
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

    def rows_per_pass(self, sample_shapes: Sequence[tuple], *, backward: bool, override=None):
        """Rows of one pass through the model within :func:`keras_explain.config.memory_budget`.

        Args:
            sample_shapes: Shapes of one sample of each input (no batch axis).
            backward: Whether the pass is differentiated.
            override: An ``internal_batch_size`` given by the user.
        """
        per_row = None if self.plan is None else self.plan.bytes_per_sample()
        elements = sum(math.prod(d or 1 for d in shape) for shape in sample_shapes)
        factor = self.backward_memory_factor if backward else self.forward_memory_factor
        return config.rows_per_pass(per_row, elements, factor=factor, override=override)

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
        if self.plan is None:
            outputs = self.model(inputs if self._multi_input() else inputs[0])
            if isinstance(outputs, list | tuple):
                outputs = outputs[self.output_index or 0]
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
        values = self.active_plan().run(inputs, run_hook, targets=[self.output_key])
        return values[self.output_key], values

    def scores(self, outputs, target: Target, indices):
        """Per-sample scores of the explained output."""
        return target_scores(outputs, target, indices)

    # -- internals ---------------------------------------------------------
    def _multi_input(self) -> bool:
        if self.plan is not None:
            return len(self.plan.input_keys) > 1
        return self._input_count > 1

    def _run_batch(self, batch, target: Target, first_row: int):
        function, arguments = self._prepare_batch(batch, target, first_row)
        results = function(*arguments)
        return [np.asarray(result.numpy(), dtype=np.float32) for result in results]

    def _prepare_batch(self, batch, target: Target, first_row: int):
        """The function of one batch and its arguments; a traceable analyzer's is traced here."""
        size = int(batch[0].shape[0])
        if target.mode == "index":
            indices = np.broadcast_to(target.indices, (size,))
        else:
            indices = np.zeros((size,), np.int64)
        seed = getattr(self, "seed", None)
        seed = np.random.randint(2**31 - 1) if seed is None else seed
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

    def _compiled(self, key, arguments) -> Callable:
        """The function for ``key``, as a concrete function per input signature.

        Calling the concrete function skips ``tf.function``'s dispatch on every call
        (a few hundred microseconds, much of a small model's gradient).
        """
        function = self._function_for(key)
        if not self.traceable:
            return function
        signature = (key, *((t.shape, t.dtype) for t in tf.nest.flatten(arguments)))
        concrete = self._concrete.get(signature)
        if concrete is None:
            concrete = self._concrete[signature] = function.get_concrete_function(*arguments)
        return concrete

    def _function_for(self, key):
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
            self._functions[key] = tf.function(explain) if self.traceable else explain
        return self._functions[key]

    def _analyze_dataset(self, dataset, target, batch_size):
        target_array = None
        if target is not None and not isinstance(target, str) and not callable(target):
            target_array = np.asarray(target)
        pieces, offset = [], 0
        for element in dataset:
            x = element[0] if isinstance(element, tuple) else element
            size = int(keras.tree.flatten(x)[0].shape[0])
            batch_target = target
            if target_array is not None and target_array.ndim == 1:
                batch_target = target_array[offset : offset + size]
            result = self._analyze(x, batch_target, batch_size, split=True)
            pieces.append(result if isinstance(result, list) else [result])
            offset += size
        if not pieces:
            raise ValueError("The dataset passed as x yielded no batches.")
        results = [np.concatenate(parts, axis=0) for parts in zip(*pieces)]
        return results if len(results) > 1 else results[0]

    def _standardize(self, x) -> list[tf.Tensor | np.ndarray]:
        items = list(x) if isinstance(x, list | tuple) else [x]
        self._input_count = len(items)
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
        return result

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
            shape = None
            if self.plan is not None:
                shape = self.plan.shape_of(self.output_key)
            if shape is None or any(dim is None for dim in shape[1:]):
                sample = [tf.convert_to_tensor(item[:1]) for item in inputs]
                shape = tuple(self.forward(sample)[0].shape)
            self._num_outputs = math.prod(shape[1:])
        return self._num_outputs


def _all_finite(array) -> bool:
    """Whether every value is finite (numpy stays on the host, tensors stay on device)."""
    if isinstance(array, np.ndarray):
        return bool(np.isfinite(array).all())
    return bool(tf.reduce_all(tf.math.is_finite(tf.cast(array, tf.float32))))

"""Explain a whole dataset with bounded memory, in shards on disk that survive a crash.

:func:`explain_dataset` cuts the data into batches of ``batch_size`` samples,
explains one batch at a time, and writes each batch's explanations as a numbered
shard (see :mod:`keras_explain._shards` for the files). Started again with the
same arguments after a crash or a kill, it keeps the finished shards, explains
only the rest, and the result equals an uninterrupted run:
``analyzer.analyze(x, batch_size=batch_size)`` on all the data, exactly. Sample
``i`` of the data is explained with the seeds of position ``i``, whichever run
reaches it, and a run without a ``seed`` draws one and records it in the
manifest, so stochastic methods resume with the same randomness.
:func:`load_explanations` reads the result back as one memory-mapped array.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _batching, _shards, _validate, distributed, random
from keras_explain.analyzers.base import Analyzer
from keras_explain.analyzers.registry import create_analyzer

#: The ``target`` that reads each sample's class from the labels of ``(x, y)`` elements.
LABELS = "labels"


def explain_dataset(
    method: str | Analyzer,
    model: Any,
    data: Any,
    *,
    out_dir: str | os.PathLike,
    batch_size: int = 256,
    strategy: tf.distribute.Strategy | None = None,
    target: Any = None,
    verbose: Any = "auto",
    **params: Any,
) -> np.ndarray | list[np.ndarray]:
    """Explain every sample of ``data`` into shards under ``out_dir``; resume after a crash.

    Args:
        method: A registry name (``"lrp.epsilon"``, see
            :func:`keras_explain.analyzers.names`) or an analyzer instance.
        model: The Keras model (with a name, the analyzer is built on it; with an
            analyzer, it must be the analyzer's model).
        data: A numpy array (or a list of arrays for a multi-input model; a
            ``np.memmap`` is read one batch at a time), or a ``tf.data.Dataset``
            or any iterable yielding batches as ``model.predict`` takes them:
            ``x`` or ``(x, y)`` / ``(x, y, sample_weight)`` (``x`` a list for a
            multi-input model). Batches of any size are re-cut into batches of
            ``batch_size``, so shards do not depend on how the data is batched.
        out_dir: Directory of the shards and the manifest (created if needed).
            Calling again with the same directory resumes the run; a directory
            holding another run's shards is refused.
        batch_size: Samples per batch, and per shard.
        strategy: A ``tf.distribute`` strategy: each batch is split across its
            replicas (see :mod:`keras_explain.distributed`); results keep the
            order of the data.
        target: What to explain, as in ``analyze``: None, an int, ``"all"``, a
            callable, or one index per sample of the whole data (an int array,
            indexed by position); or ``"labels"``: the class of each sample from
            the ``y`` of ``(x, y)`` elements (int labels or one-hot rows).
        verbose: A progress bar in samples per second: ``"auto"`` (after two
            seconds), ``1`` or ``0``. An analyzer built from a name gets
            ``verbose=0``.
        **params: The analyzer's parameters (only with a name).

    Returns:
        The explanations of every sample, in the order of the data, memory-mapped
        read-only from ``out_dir``: one float32 array, or a list of them for a
        multi-input model (what :func:`load_explanations` returns).

    Raises:
        ValueError: If ``out_dir`` holds the shards of another method, other
            parameters, target, batch size or model, or if the samples' shapes
            change from one element of ``data`` to the next; for an empty
            ``data`` or a bad ``target``.
        TypeError: For ``params`` given with an analyzer instance, or ``data``
            of an unsupported type.
        OSError: If ``out_dir`` cannot be written; the shards finished before
            are intact and a new call resumes from them.
        RuntimeError: If another run (another process, or another call in this
            one) is writing ``out_dir``; the message names its process id. The lock
            of a run that died is taken over.

    Example:
        >>> import tempfile, keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
        >>> out_dir = tempfile.mkdtemp()
        >>> relevance = kx.explain_dataset("gradient", model, x, out_dir=out_dir, batch_size=4)
        >>> relevance.shape, type(relevance).__name__
        ((10, 4), 'memmap')
        >>> bool(np.array_equal(relevance, kx.Gradient(model).analyze(x, batch_size=4)))
        True
    """
    batch_size = _validate.positive_int(batch_size, "batch_size")
    verbose = _validate.one_of(verbose, "verbose", _batching.VERBOSE)
    analyzer, method_name, parameters = _analyzer(method, model, params)
    if strategy is not None:
        distributed.batch_runner(analyzer, strategy)  # a bad strategy fails before any file
    out_dir = os.fspath(out_dir)
    if target is not None and not _is_labels(target) and _is_index_array(target):
        target = np.asarray(target)
    stream = _Stream(data, batch_size, with_labels=_is_labels(target))
    if stream.total is not None:
        _check_target_length(target, stream.total)
    identity = {
        "keras_explain": _shards.version(),
        "method": method_name,
        "parameters": _shards.describe(parameters),
        "target": _shards.describe(target),
        "batch_size": batch_size,
        "model": _shards.model_fingerprint(analyzer.model),
        "inputs": stream.input_specs(),
    }
    _make_directory(out_dir)
    with _shards.lock(out_dir):
        return _explain(analyzer, method_name, stream, target, out_dir, identity, strategy, verbose)


def _explain(analyzer, method_name, stream, target, out_dir, identity, strategy, verbose):
    """The run, under ``out_dir``'s lock: read or write the manifest, explain what is left."""
    manifest = _shards.read_manifest(out_dir)
    if manifest is None:
        manifest = {"format": _shards.FORMAT, **identity, "outputs": None, "complete": False}
        manifest["seed"] = _run_seed(analyzer)
        _write(out_dir, "the manifest", [], _shards.write_manifest, out_dir, manifest)
    else:
        _check_same_run(out_dir, manifest, identity)
    if not manifest["complete"]:
        progress = _batching.Progress(verbose, method_name, unit="sample")
        saved_seed = getattr(analyzer, "seed", None)
        if manifest["seed"] is not None:  # the run's seed, the same after a resume
            analyzer.seed = manifest["seed"]
        try:
            _run(analyzer, stream, target, out_dir, manifest, strategy, progress)
        finally:
            progress.finish()
            if hasattr(analyzer, "seed"):
                analyzer.seed = saved_seed
    return _shards.load(out_dir, manifest)


def _run(analyzer, stream, target, out_dir, manifest, strategy, progress):
    """Explain the batches not on disk yet, one shard each, then merge the shards."""
    outputs = manifest["outputs"]
    sizes = _shards.finished_shards(out_dir, None if outputs is None else len(outputs))
    for first, inputs, labels in stream.batches(skip=sum(sizes)):
        size = len(inputs[0])
        result = analyzer.analyze_part(
            inputs if len(inputs) > 1 else inputs[0],
            _batch_target(target, labels, first, size),
            first_row=first,
            strategy=strategy,
        )
        results = result if isinstance(result, list) else [result]
        if outputs is None:  # recorded before any shard file exists
            outputs = manifest["outputs"] = [
                {"shape": list(item.shape[1:]), "dtype": str(item.dtype)} for item in results
            ]
            _write(out_dir, "the manifest", sizes, _shards.write_manifest, out_dir, manifest)
        shard = len(sizes)
        _write(out_dir, f"shard {shard}", sizes, _save_shard, out_dir, shard, first, results)
        sizes.append(size)
        progress.advance(size, stream.total, done=first)
    if not sizes:
        raise ValueError("explain_dataset: data yielded no samples; pass at least one sample.")
    _check_target_length(target, sum(sizes))
    write = _shards.consolidate
    _write(out_dir, "the merged explanations", sizes, write, out_dir, sizes, outputs)
    manifest.update(complete=True, samples=sum(sizes), shards=sizes)
    _write(out_dir, "the manifest", sizes, _shards.write_manifest, out_dir, manifest)


def load_explanations(out_dir: str | os.PathLike) -> np.ndarray | list[np.ndarray]:
    """The explanations a finished :func:`explain_dataset` run wrote to ``out_dir``.

    Args:
        out_dir: The run's output directory.

    Returns:
        Every sample's explanation, in the order of the data, as one read-only
        memory-mapped float32 array (a list of them for a multi-input model).

    Raises:
        FileNotFoundError: If ``out_dir`` holds no manifest.
        ValueError: If the run is not finished (call ``explain_dataset`` again
            with the same arguments to finish it).

    Example:
        >>> import tempfile, keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> out_dir = tempfile.mkdtemp()
        >>> _ = kx.explain_dataset("gradient", model, np.ones((5, 4), "float32"), out_dir=out_dir)
        >>> kx.load_explanations(out_dir).shape
        (5, 4)
    """
    out_dir = os.fspath(out_dir)
    manifest = _shards.read_manifest(out_dir)
    if manifest is None:
        raise FileNotFoundError(
            f"load_explanations: {out_dir!r} holds no {_shards.MANIFEST}; pass the out_dir "
            "of a kx.explain_dataset run."
        )
    if not manifest["complete"]:
        done = _shards.finished_shards(out_dir, len(manifest["outputs"] or [None]))
        raise ValueError(
            f"load_explanations: the run in {out_dir!r} is not finished ({len(done)} shard(s), "
            f"{sum(done)} samples so far). Call kx.explain_dataset again with the same "
            "arguments to finish it."
        )
    return _shards.load(out_dir, manifest)


# -- the analyzer and the run's identity ---------------------------------------------
def _analyzer(method, model, params):
    if isinstance(method, Analyzer):
        if params:
            raise TypeError(
                "explain_dataset: parameters go to the analyzer's constructor when method is "
                f"an analyzer instance. Received: {sorted(params)} with {type(method).__name__}."
            )
        if method.model is not model:
            raise ValueError(
                f"explain_dataset: model is not the model of the {type(method).__name__} "
                "passed as method. Pass the analyzer's own model (analyzer.model)."
            )
        names = [name for name in method.parameters() if name != "verbose"]
        parameters = {name: getattr(method, name) for name in names if hasattr(method, name)}
        return method, type(method).__name__, parameters
    if not isinstance(method, str):
        raise TypeError(
            "explain_dataset: method must be an analyzer name or an Analyzer instance. "
            f"Received: method of type {type(method).__name__}."
        )
    analyzer = create_analyzer(method, model, **{"verbose": 0, **params})
    return analyzer, method, {key: value for key, value in params.items() if key != "verbose"}


def _run_seed(analyzer) -> int | None:
    """The seed of a stochastic run: the analyzer's, or a new one recorded for resuming."""
    if not hasattr(analyzer, "seed"):
        return None
    return analyzer.seed if analyzer.seed is not None else random.fresh_seed()


def _check_same_run(out_dir, manifest, identity):
    for key, value in identity.items():
        if manifest.get(key) != value:
            raise ValueError(
                f"explain_dataset: {out_dir!r} holds the shards of another run; its {key} "
                f"was {manifest.get(key)!r}, this call's is {value!r}. Shards of different "
                "runs are never mixed: pass a new out_dir, or delete this one to start over."
            )


def _make_directory(out_dir):
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise OSError(
            error.errno,
            f"explain_dataset cannot create out_dir {out_dir!r} ({error.strerror or error}). "
            "Pass a writable directory.",
        ) from error


def _write(out_dir, what, sizes, write, *args):
    """``write(*args)``; an OSError says which shards are intact and how to resume."""
    try:
        write(*args)
    except OSError as error:
        raise OSError(
            error.errno,
            f"explain_dataset could not write {what} to {out_dir!r} ({error.strerror or error}). "
            f"The {len(sizes)} finished shard(s) ({sum(sizes)} samples) are intact: free some "
            "space or fix the permissions, then call again with the same arguments to resume.",
        ) from error


def _save_shard(out_dir, shard, first, results):
    ids = np.arange(first, first + len(results[0]), dtype=np.int64)
    _shards.save_array(_shards.ids_path(out_dir, shard), ids)
    for position, result in enumerate(results):  # the last file written marks the shard done
        _shards.save_array(_shards.shard_path(out_dir, shard, position), result)


# -- targets -------------------------------------------------------------------------------
def _is_labels(target) -> bool:
    return isinstance(target, str) and target == LABELS


def _is_index_array(target) -> bool:
    return not isinstance(target, str | int | np.integer) and not callable(target)


def _batch_target(target, labels, first, size):
    if _is_labels(target):
        labels = np.asarray(labels)
        return labels.argmax(axis=-1) if labels.ndim == 2 else labels.reshape(size)
    if isinstance(target, np.ndarray) and target.ndim == 1:
        if first + size > len(target):
            raise ValueError(
                f"explain_dataset: target has {len(target)} per-sample indices but data has "
                f"more samples (at least {first + size}). Pass one index per sample."
            )
        return target[first : first + size]
    return target


def _check_target_length(target, total):
    if isinstance(target, np.ndarray) and target.ndim == 1 and len(target) != total:
        raise ValueError(
            f"explain_dataset: target has {len(target)} per-sample indices but data has "
            f"{total} samples. Pass one index per sample."
        )


# -- reading the data ----------------------------------------------------------------
class _Stream:
    """``data`` as batches of ``batch_size`` samples: ``(first_position, inputs, labels)``."""

    def __init__(self, data, batch_size, with_labels):
        self.batch_size = batch_size
        self.with_labels = with_labels
        self.total = None
        if isinstance(data, np.ndarray | tf.Tensor) or (
            isinstance(data, list) and data and all(isinstance(a, np.ndarray) for a in data)
        ):
            if with_labels:
                raise ValueError(
                    'explain_dataset: target="labels" reads the y of (x, y) elements of a '
                    "dataset or generator; with an array, pass target=the label array."
                )
            self.arrays = list(data) if isinstance(data, list) else [data]
            self.total = int(self.arrays[0].shape[0])
            self.specs = [_spec(array[:0]) for array in self.arrays]
            self._elements = None
            return
        if isinstance(data, tf.data.Dataset):
            elements = data.as_numpy_iterator()
        elif isinstance(data, Iterable) and not isinstance(data, str | bytes | dict):
            elements = iter(data)
        else:
            raise TypeError(
                "explain_dataset: data must be a numpy array (a list of them for several "
                "inputs), a tf.data.Dataset or an iterable of batches. Received: data of type "
                f"{type(data).__name__}."
            )
        self.arrays = None
        self._elements = _numbered(elements)
        self._first = next(self._elements, None)
        if self._first is None:
            raise ValueError("explain_dataset: data yielded no samples; pass at least one sample.")
        self.specs = [_spec(array) for array in self._first[1]]

    def input_specs(self):
        return self.specs

    def batches(self, skip: int) -> Iterator[tuple[int, list[np.ndarray], Any]]:
        if self.arrays is not None:
            for start in range(skip, self.total, self.batch_size):
                stop = min(start + self.batch_size, self.total)
                yield start, [np.asarray(array[start:stop]) for array in self.arrays], None
            return
        pending, count, position = [], 0, 0
        elements = _chain(self._first, self._elements)
        for number, inputs, labels in elements:
            self._check(number, inputs, labels)
            pending.append((inputs, labels))
            count += len(inputs[0])
            while count >= self.batch_size:
                batch, pending, count = _take(pending, self.batch_size, count)
                if position >= skip:
                    yield position, *batch
                position += self.batch_size
        if count:
            batch, pending, count = _take(pending, count, count)
            if position >= skip:
                yield position, *batch

    def _check(self, number, inputs, labels):
        received = [_spec(array) for array in inputs]
        if received != self.specs:
            raise ValueError(
                f"explain_dataset: element {number} of data has samples of "
                f"{_specs_text(received)}, but the elements before had {_specs_text(self.specs)}. "
                "Every element must hold samples of one shape; resize or pad them first."
            )
        if self.with_labels and labels is None:
            raise ValueError(
                f'explain_dataset: target="labels" needs (x, y) elements; element {number} of '
                "data has no y."
            )


def _numbered(elements):
    for number, element in enumerate(elements):
        labels = None
        if isinstance(element, tuple):
            if not 1 <= len(element) <= 3:
                raise ValueError(
                    f"explain_dataset: element {number} of data is a tuple of {len(element)} "
                    "items; expected x, (x,), (x, y) or (x, y, sample_weight)."
                )
            x, labels = element[0], (element[1] if len(element) > 1 else None)
        else:
            x = element
        inputs = [np.asarray(item) for item in (x if isinstance(x, list | tuple) else [x])]
        if any(item.ndim == 0 for item in inputs) or len({len(item) for item in inputs}) != 1:
            raise ValueError(
                f"explain_dataset: element {number} of data is not a batch: received "
                f"{_specs_text([_spec(item, batch=True) for item in inputs])}. Each element "
                "must be a batch of samples (e.g. dataset.batch(32))."
            )
        yield number, inputs, labels


def _chain(first, rest):
    yield first
    yield from rest


def _take(pending, size, count):
    """The first ``size`` samples of the pending pieces, and what is left."""
    taken, left, need = [], [], size
    for inputs, labels in pending:
        rows = len(inputs[0])
        if need >= rows:
            taken.append((inputs, labels))
            need -= rows
        elif need > 0:
            taken.append(([item[:need] for item in inputs], _rows(labels, 0, need)))
            left.append(([item[need:] for item in inputs], _rows(labels, need, None)))
            need = 0
        else:
            left.append((inputs, labels))
    inputs = [np.concatenate(parts, axis=0) for parts in zip(*(piece[0] for piece in taken))]
    labels = None
    if all(piece[1] is not None for piece in taken):
        labels = np.concatenate([np.asarray(piece[1]) for piece in taken], axis=0)
    return (inputs, labels), left, count - size


def _rows(labels, start, stop):
    return None if labels is None else np.asarray(labels)[start:stop]


def _spec(array, batch=False):
    shape = tuple(int(d) for d in array.shape)
    dtype = array.dtype.name if hasattr(array.dtype, "name") else str(array.dtype)
    return {"shape": list(shape if batch else shape[1:]), "dtype": str(np.dtype(dtype))}


def _specs_text(specs):
    return ", ".join(f"shape {tuple(spec['shape'])} {spec['dtype']}" for spec in specs)


__all__ = ["explain_dataset", "load_explanations", "LABELS"]

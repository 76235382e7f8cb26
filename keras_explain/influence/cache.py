"""Training-set features on disk: resumable shards, memory-mapped once complete.

``TracIn(..., cache_dir=d)`` writes the features of checkpoint ``c`` under
``d/checkpoint-000c/`` in the files of :mod:`keras_explain._shards` (the machinery of
:func:`keras_explain.explain_dataset`): one shard per pass, written atomically, a
manifest naming what produced them (model, checkpoint, layers, projection, loss,
training set), and the directory lock. A run that is killed resumes at its first
missing shard; once every shard is there they are consolidated into one file per
array, which later queries memory-map. A directory written for other settings is
refused rather than mixed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from keras_explain import _shards
from keras_explain.influence.engine import Features

#: The arrays of a :class:`Features`, in the order they are stored.
FIELDS = ("full", "inputs", "deltas", "squared_norms")


def directory(path: Any, owner: str) -> str:
    """``path`` created if needed and checked writable.

    Raises:
        ValueError: For a path that cannot be created or written.
    """
    path = os.fspath(path)
    try:
        _shards.writable_directory(path)
    except OSError as error:
        raise ValueError(
            f"{owner}: cannot write cache_dir {path!r} ({error.strerror or error}). Pass a "
            "writable directory, or cache_dir=None to keep the features in memory."
        ) from None
    return path


def cached_features(
    folder: str,
    identity: dict[str, Any],
    chunks: Iterator[tuple[Any, np.ndarray]],
    compute: Callable[[Any, np.ndarray], Features],
    owner: str,
) -> Features:
    """The features of every chunk, from ``folder``'s shards, computing the missing ones.

    Args:
        folder: The checkpoint's directory (created if needed).
        identity: What produced the features; a folder holding another identity
            is refused.
        chunks: The training set's chunks, in order (the same chunking on a resume).
        compute: ``compute(x, y) -> Features`` of one chunk.
        owner: The class name, for error messages.

    Returns:
        :class:`Features` whose arrays are memory-mapped from the consolidated files.

    Raises:
        ValueError: For a folder written for other settings.
    """
    os.makedirs(folder, exist_ok=True)
    with _shards.lock(folder, owner, "cache_dir"):
        manifest = _shards.read_manifest(folder)
        if manifest is None:
            manifest = {"format": _shards.FORMAT, **identity, "outputs": None, "complete": False}
            _shards.write_manifest(folder, manifest)
        for key, value in identity.items():
            if manifest.get(key) != value:
                raise ValueError(
                    f"{owner}: {folder!r} holds the features of other settings; its {key} was "
                    f"{manifest.get(key)!r}, this one's is {value!r}. Pass another cache_dir, "
                    "or delete this one to start over."
                )
        if not manifest["complete"]:
            _fill(folder, manifest, chunks, compute)
    arrays = _shards.load(folder, manifest)
    arrays = arrays if isinstance(arrays, list) else [arrays]
    stored = dict(zip(manifest["fields"], arrays))
    return Features(
        stored.get("full"),
        stored.get("inputs"),
        stored.get("deltas"),
        bool(manifest["bias"]),
        stored.get("squared_norms"),
    )


def _fill(folder, manifest, chunks, compute) -> None:
    outputs = manifest["outputs"]
    sizes = _shards.finished_shards(folder, None if outputs is None else len(outputs))
    first = sum(sizes)
    for index, (x, y) in enumerate(chunks):
        if index < len(sizes):  # finished by an earlier run
            continue
        features = compute(x, y)
        fields = [name for name in FIELDS if getattr(features, name) is not None]
        arrays = [np.asarray(getattr(features, name)) for name in fields]
        if outputs is None:
            outputs = manifest["outputs"] = [
                {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for a in arrays
            ]
            manifest.update(fields=fields, bias=bool(features.bias))
            _shards.write_manifest(folder, manifest)
        ids = np.arange(first, first + len(arrays[0]), dtype=np.int64)
        _shards.save_array(_shards.ids_path(folder, index), ids)
        for position, array in enumerate(arrays):  # the last file marks the shard done
            _shards.save_array(_shards.shard_path(folder, index, position), array)
        sizes.append(len(ids))
        first += len(ids)
    _shards.consolidate(folder, sizes, outputs)
    manifest.update(complete=True, samples=sum(sizes), shards=sizes)
    _shards.write_manifest(folder, manifest)

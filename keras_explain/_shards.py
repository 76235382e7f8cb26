"""The on-disk form of :func:`keras_explain.explain_dataset`: shards, manifest, fingerprints.

An output directory holds:

- ``manifest.json``: what produced the shards (:func:`identity`), the seed of the
  run, the shapes of the results, and the shards written so far;
- ``shard-000000-0.npy``, ``shard-000001-0.npy``, ...: the explanations of batch
  ``k`` (one file per result array: ``-1``, ``-2`` for the other inputs of a
  multi-input model), and ``shard-000000.ids.npy``: the ids (positions in the
  data) of its samples;
- once every shard is there, ``explanations-0.npy`` (one per result array) and
  ``ids.npy``: all samples in order, the files :func:`load` memory-maps.

Every file is written to a temporary name in the same directory and renamed with
``os.replace`` (atomic on POSIX and Windows), so a crash leaves either a whole file
or none. A shard is finished when its last result file exists; ids are written
first.

``explain_dataset.lock`` holds the process id of the run writing the directory
(:func:`lock`): a second run on the same directory is refused while the first is
alive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
LOCK = "explain_dataset.lock"
FORMAT = 1
_SHARD = re.compile(r"^shard-(\d{6})-(\d+)\.npy$")


def version() -> str:
    try:
        return metadata.version("keras-explain")
    except metadata.PackageNotFoundError:  # a source checkout that is not installed
        return "unknown"


# -- identity ------------------------------------------------------------------
def describe(value: Any) -> Any:
    """A JSON value that identifies ``value``: arrays by a hash of their bytes."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, dict):
        return {str(key): describe(item) for key, item in sorted(value.items(), key=str)}
    if isinstance(value, list | tuple):
        return [describe(item) for item in value]
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        array = np.ascontiguousarray(np.asarray(value))
        digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]
        return f"array{list(array.shape)} {array.dtype} sha256:{digest}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


def model_fingerprint(model: Any) -> dict[str, Any]:
    """The model's name and a hash of its architecture (``get_config``) and weights.

    The same model saved to a ``.keras`` file and loaded again has the same
    fingerprint; any changed weight or layer changes it.
    """
    digest = hashlib.sha256(type(model).__qualname__.encode())
    try:
        config = json.dumps(model.get_config(), sort_keys=True, default=repr)
    except (AttributeError, NotImplementedError, TypeError):
        config = describe(model)
    digest.update(str(config).encode())
    for weight in getattr(model, "weights", []):
        array = np.ascontiguousarray(np.asarray(weight))
        # shapes and values in order, not variable paths: a model saved and loaded
        # again (paths lose the model's prefix) is the same model
        digest.update(f"{array.shape} {array.dtype}".encode())
        digest.update(array.tobytes())
    return {"name": getattr(model, "name", type(model).__name__), "sha256": digest.hexdigest()}


# -- files -------------------------------------------------------------------------
def shard_path(out_dir: str, index: int, result: int) -> str:
    return os.path.join(out_dir, f"shard-{index:06d}-{result}.npy")


def ids_path(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, f"shard-{index:06d}.ids.npy")


def final_path(out_dir: str, result: int) -> str:
    return os.path.join(out_dir, f"explanations-{result}.npy")


def write_atomic(path: str, write) -> None:
    """``write(file)`` into a temporary file next to ``path``, then rename it to ``path``."""
    temporary = f"{path}.partial"
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def writable_directory(path: str) -> None:
    """Create ``path`` if needed and check that a file can be written in it.

    Raises:
        OSError: If it cannot be created or written.
    """
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, ".keras_explain_probe")
    with open(probe, "w") as handle:
        handle.write("")
    os.remove(probe)


def save_array(path: str, array: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))


@contextlib.contextmanager
def lock(out_dir: str, owner: str = "explain_dataset", argument: str = "out_dir") -> Iterator[None]:
    """Hold ``out_dir``'s lock file while the body runs; refuse a directory in use.

    An exclusive ``fcntl.flock`` on ``explain_dataset.lock``, which records the
    holder's process id. The operating system releases the lock when the process
    ends, however it ends, so the lock of a killed run is stale at once and the next
    run takes it over (and writes its own id); the file itself is left in place
    (removing it would let two runs lock two different files). Without ``fcntl``
    (Windows) no lock is taken.

    Raises:
        RuntimeError: If another process (or another call in this one) holds the
            lock; the message names the directory and the holder's process id.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the guide says so
        yield
        return
    path = os.path.join(out_dir, LOCK)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RuntimeError(
                f"{owner}: {out_dir!r} is in use by another {owner} run "
                f"(process {holder} holds {LOCK}). Two runs never write one directory: "
                "wait for that run to finish (a call with the same arguments then resumes "
                f"or reads its result), or pass another {argument}."
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def read_manifest(out_dir: str) -> dict[str, Any] | None:
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_manifest(out_dir: str, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
    write_atomic(os.path.join(out_dir, MANIFEST), lambda handle: handle.write(text))


def finished_shards(out_dir: str, results: int | None) -> list[int]:
    """Sizes of the finished shards ``0, 1, ...``, in order (stops at the first gap).

    A shard is finished when its ids and all ``results`` result files exist.
    """
    found: dict[int, set[int]] = {}
    for name in os.listdir(out_dir):
        match = _SHARD.match(name)
        if match:
            found.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    sizes = []
    index = 0
    while index in found and os.path.exists(ids_path(out_dir, index)):
        if results is not None and found[index] != set(range(results)):
            break
        sizes.append(int(np.load(ids_path(out_dir, index), mmap_mode="r").shape[0]))
        index += 1
    return sizes


def consolidate(out_dir: str, sizes: list[int], outputs: list[dict[str, Any]]) -> None:
    """Append the shards, one at a time, to one ``.npy`` file per result (and ``ids.npy``).

    Written as a stream (header, then each shard's bytes), not through a writable
    memory map, so memory stays at one shard whatever the number of samples.
    """
    total = sum(sizes)
    columns = [(index, tuple(spec["shape"]), spec["dtype"]) for index, spec in enumerate(outputs)]
    for result, shape, dtype in [*columns, (None, (), "int64")]:
        path = os.path.join(out_dir, "ids.npy") if result is None else final_path(out_dir, result)
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": (total, *shape),
        }

        def write(handle, result=result, header=header, dtype=dtype):
            np.lib.format.write_array_header_2_0(handle, header)
            for index in range(len(sizes)):
                source = (
                    ids_path(out_dir, index)
                    if result is None
                    else shard_path(out_dir, index, result)
                )
                shard = np.load(source, mmap_mode="r")
                handle.write(np.ascontiguousarray(shard, dtype=np.dtype(dtype)).tobytes())

        write_atomic(path, write)


def load(out_dir: str, manifest: dict[str, Any]) -> np.ndarray | list[np.ndarray]:
    arrays = [
        np.load(final_path(out_dir, result), mmap_mode="r")
        for result in range(len(manifest["outputs"]))
    ]
    return arrays[0] if len(arrays) == 1 else arrays

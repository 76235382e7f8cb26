"""Activations as checked float64 matrices ``(N, features)``: the inputs of every measure."""

from __future__ import annotations

from typing import Any

import numpy as np


def matrix(values: Any, name: str, function: str) -> np.ndarray:
    """``values`` as a finite float64 ``(N, features)`` matrix."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim < 2:
        raise ValueError(
            f"{function}: {name} must be activations shaped (samples, features...). "
            f"Received: {name} with shape {array.shape}. Add a feature axis, e.g. "
            f"{name}[:, None]."
        )
    if not np.isfinite(array).all():
        raise ValueError(
            f"{function}: {name} contains NaN or Inf values (e.g. from NaN weights); "
            f"similarities of non-finite activations are meaningless. Received: {name} "
            f"with {int(np.sum(~np.isfinite(array)))} non-finite values."
        )
    return array.reshape(len(array), -1)


def pair(a: Any, b: Any, function: str, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as matrices of the same ``N >= minimum`` inputs."""
    a, b = matrix(a, "a", function), matrix(b, "b", function)
    if len(a) != len(b):
        raise ValueError(
            f"{function}: a and b must hold the activations of the same inputs, one row "
            f"each. Received: a with {len(a)} samples, b with {len(b)}. Compute both on "
            "the same x, in the same order."
        )
    if len(a) < minimum:
        raise ValueError(
            f"{function} needs at least {minimum} samples. Received: {len(a)} samples."
        )
    return a, b


def centered(values: np.ndarray) -> np.ndarray:
    """Each column minus its mean over the samples."""
    return values - values.mean(axis=0, keepdims=True)

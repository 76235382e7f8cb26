"""Argument checks of the figures (numpy only: kx.visualize imports no TensorFlow)."""

from __future__ import annotations

from collections.abc import Sized


def labels(labels: Sized | None, samples: int) -> None:
    """Raise unless ``labels`` is None or has one entry per sample (row of the figure)."""
    if labels is not None and len(labels) != samples:
        raise ValueError(f"labels needs one entry per sample ({samples}). Received {len(labels)}.")

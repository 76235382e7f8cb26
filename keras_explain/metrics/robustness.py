"""Robustness: does the explanation stay put when the input barely moves?

Max-sensitivity (Yeh et al. 2019), as Captum's ``sensitivity_max``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain.metrics.engine import as_batch, explain_copies, noisy_copies, relative_changes
from keras_explain.metrics.registry import MetricContext, register_metric


@_validate.accepts_renamed(radius="noise_scale")
def sensitivity_max(
    analyzer,
    x,
    target=None,
    *,
    noise_scale: float = 0.02,
    samples: int = 10,
    perturbation: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019), as Captum's ``sensitivity_max``.

    ``max_k ||e(x + d_k) - e(x)|| / ||e(x)||`` (Frobenius norms over each
    sample; a zero ``||e(x)||`` is replaced by 1, as in Captum), ``d_k`` uniform
    in the L-infinity ball of radius ``noise_scale``. ``target=None`` is resolved to the
    argmax of the clean input for an analyzer, so every perturbed copy explains
    the same output.

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions``.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`.
        noise_scale: Half-width of the uniform noise (default 0.02, Captum's
            ``perturb_radius``); formerly ``radius=``.
        samples: Perturbations per sample.
        perturbation: Optional callable: it receives the inputs repeated
            sample-major (``np.repeat(x, samples, axis=0)``) and returns ``d`` of the
            same shape; the explanations are taken at ``x + d``.
        seed: Seed of the uniform noise.

    Returns:
        ``(B,)`` float32 sensitivities (lower is better).

    Raises:
        ValueError: For a non-positive ``noise_scale`` or a perturbation of the wrong shape.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> x = np.ones((2, 3), "float32")
        >>> kx.metrics.sensitivity_max(kx.Gradient(model), x, target=0)
        array([0., 0.], dtype=float32)
    """
    function = "sensitivity_max"
    x = as_batch(x, function)
    samples, copies = noisy_copies(x, samples, noise_scale, perturbation, seed, function)
    clean, noisy = explain_copies(analyzer, x, copies, target, function)
    return relative_changes(clean, noisy).max(axis=1).astype(np.float32)


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("sensitivity_max", better="lower")
def _sensitivity_max(context: MetricContext) -> np.ndarray:
    """Max-sensitivity of the analyzer in the L∞ ball of radius 0.02."""
    return sensitivity_max(context.analyzer, context.x, context.target, seed=context.seed)

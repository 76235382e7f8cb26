"""Compactness (Quantus' complexity family): how many features does an explanation spread over?

The entropy of the attributions' fractional contributions (Bhatt et al. 2020)
and the number of features above a threshold (Nguyen & Martinez 2020). Both
read every element of a sample's attributions (of an image, each pixel's
channels separately; pass maps summed over the channels to score pixels), take
their absolute values, and evaluate no model. Lower is simpler. The Gini index
:func:`keras_explain.metrics.sparseness` is the third complexity measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain.metrics.engine import checked, feature_attributions
from keras_explain.metrics.registry import MetricContext, register_metric


def _magnitudes(attributions: Any, function: str) -> np.ndarray:
    """``|a|`` flattened per sample, ``(B, d)`` float64."""
    array = np.abs(np.asarray(feature_attributions(attributions, function), dtype=np.float64))
    if array.ndim < 2:
        raise ValueError(
            f"{function} needs a batch of attributions (B, ...). Received: attributions of "
            f"shape {array.shape}. Add the batch axis, e.g. a[None]."
        )
    return array.reshape(len(array), -1)


def complexity(attributions) -> np.ndarray:
    """Complexity (Bhatt et al. 2020): the entropy of the fractional contributions.

    With ``p_i = |a_i| / sum_j |a_j|`` over the ``d`` elements of a sample,
    ``H = -sum_i p_i log p_i`` (natural log, ``0 log 0 = 0``;
    ``scipy.stats.entropy``): 0 when one element holds everything, ``log d``
    when all are equal. NaN for all-zero attributions (no distribution).

    Args:
        attributions: Any batch ``(B, ...)``.

    Returns:
        ``(B,)`` float32 entropies in [0, log d] (nats).

    Raises:
        ValueError: For attributions without a batch axis.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> kx.metrics.complexity(np.array([[0.0, 0.0, 0.0, -5.0], [1.0, -1.0, 1.0, 1.0]]))
        array([0.       , 1.3862944], dtype=float32)
    """
    from scipy import stats

    values = _magnitudes(attributions, "complexity")
    total = values.sum(axis=1)
    entropy = np.full(len(values), np.nan)
    nonzero = total > 0
    if nonzero.any():
        entropy[nonzero] = stats.entropy(values[nonzero], axis=1)
    return entropy.astype(np.float32)


def effective_complexity(attributions, *, eps: float = 1e-5, normalize: bool = True) -> np.ndarray:
    """Effective complexity (Nguyen & Martinez 2020): the number of elements with ``|a| > eps``.

    ``#{i : |a_i| > eps}`` over the ``d`` elements of a sample. With
    ``normalize`` (Quantus' default) the attributions are first divided by the
    sample's largest ``|a_i|``, so ``eps`` is relative to it and the count does
    not depend on the attributions' scale; all-zero attributions count 0.

    Args:
        attributions: Any batch ``(B, ...)``.
        eps: The threshold, a number >= 0.
        normalize: Divide each sample by its largest ``|a_i|`` first.

    Returns:
        ``(B,)`` float32 counts in [0, d].

    Raises:
        ValueError: For attributions without a batch axis, or a negative ``eps``.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> a = np.array([[0.0, 1e-7, -0.5, 2.0], [1.0, -1.0, 1.0, 1.0]])
        >>> kx.metrics.effective_complexity(a, eps=1e-3)
        array([2., 4.], dtype=float32)
    """
    eps = checked("effective_complexity", _validate.non_negative, eps, "eps")
    _validate.boolean(normalize, "normalize", "effective_complexity")
    values = _magnitudes(attributions, "effective_complexity")
    if normalize:
        largest = values.max(axis=1, keepdims=True)
        values = values / np.where(largest > 0, largest, 1.0)
    return (values > eps).sum(axis=1).astype(np.float32)


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("complexity", better="lower", default=False)
def _complexity(context: MetricContext) -> np.ndarray:
    """Entropy of ``|a| / sum |a|`` (no options)."""
    return complexity(context.attributions)


@register_metric("effective_complexity", better="lower", default=False)
def _effective_complexity(context: MetricContext) -> np.ndarray:
    """Elements with ``|a| / max |a| > 1e-5`` (``eps=1e-5, normalize=True``)."""
    return effective_complexity(context.attributions)

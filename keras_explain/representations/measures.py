"""Similarity of two representations of the same inputs: CKA, CCA, SVCCA and PWCCA.

Every measure takes activations ``(N, ...)`` of the same ``N`` inputs, in the
same order, flattens them to ``(N, features)`` and computes in float64.

- :func:`cka`: centered kernel alignment (Kornblith et al. 2019, "Similarity of
  Neural Network Representations Revisited", ICML), linear or RBF kernel,
  biased or debiased (unbiased HSIC, Song et al. 2012).
- :func:`cca`, :func:`svcca`, :func:`pwcca`: canonical correlations by QR
  decompositions (Björck & Golub 1973), SVCCA (Raghu et al. 2017, NeurIPS) and
  projection-weighted CCA (Morcos et al. 2018, NeurIPS).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain.representations import _matrices

KERNELS = ("linear", "rbf")


# -- CKA ---------------------------------------------------------------------------------
def gram_linear(features: np.ndarray) -> np.ndarray:
    """The linear kernel matrix ``X Xᵀ``."""
    return features @ features.T


def gram_rbf(features: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """The RBF kernel ``exp(-‖xᵢ - xⱼ‖² / (2 σ²))`` with σ = ``threshold`` × the median distance.

    The median is taken over all pairs ``(i, j)``, diagonal included, as in the
    CKA paper's code (σ² = threshold² · median of the squared distances).
    """
    squared_norms = np.einsum("ij,ij->i", features, features)
    distances = squared_norms[:, None] + squared_norms[None, :] - 2 * gram_linear(features)
    distances = np.maximum(distances, 0.0)
    median = np.median(distances)
    if median == 0:
        raise ValueError(
            "cka: the RBF kernel needs a positive median distance between samples; "
            "more than half of the pairs of samples are identical. Received: median "
            "squared distance 0."
        )
    return np.exp(-distances / (2 * threshold**2 * median))


def _center_gram(gram: np.ndarray, unbiased: bool) -> np.ndarray:
    """Double centering ``H K H``, or U-centering (Székely & Rizzo 2014) when ``unbiased``."""
    gram = gram.copy()
    n = len(gram)
    if unbiased:
        np.fill_diagonal(gram, 0)
        means = gram.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        gram -= means[:, None] + means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = gram.mean(axis=0)
        means -= means.mean() / 2
        gram -= means[:, None] + means[None, :]
    return gram


def _ratio(cross: float, self_a: float, self_b: float, function: str) -> float:
    """``cross / sqrt(self_a self_b)``; unbiased self-similarities below 0 are rounding."""
    # The unbiased HSIC of a kernel with itself is the squared norm of its U-centered
    # matrix (>= 0); a negative value is rounding of a (near-)constant representation.
    self_a, self_b = max(self_a, 0.0), max(self_b, 0.0)
    if self_a == 0.0 or self_b == 0.0:
        which = "a" if self_a == 0.0 else "b"
        raise ValueError(
            f"{function}: {which} has no variance across samples (every sample has the "
            "same activations, e.g. a dead layer), so its similarity to anything is "
            f"undefined. Received: HSIC({which}, {which}) = 0."
        )
    return float(cross / math.sqrt(self_a * self_b))


def _linear_feature_terms(x: np.ndarray, y: np.ndarray, debiased: bool) -> tuple:
    """HSIC terms of linear CKA in feature space, ``O(N · D²)`` memory-free of ``N²``."""
    x, y = _matrices.centered(x), _matrices.centered(y)
    cross = np.linalg.norm(x.T @ y) ** 2
    self_x = np.linalg.norm(x.T @ x) ** 2
    self_y = np.linalg.norm(y.T @ y) ** 2
    if not debiased:
        return cross, self_x, self_y
    n = len(x)
    rows_x, rows_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)

    def unbiased(dot, rows_1, rows_2):
        # tr(K̃ L̃) form of the U-centered inner product (Kornblith et al.'s code)
        total_1, total_2 = rows_1.sum(), rows_2.sum()
        return dot - n / (n - 2) * rows_1 @ rows_2 + total_1 * total_2 / ((n - 1) * (n - 2))

    return (
        unbiased(cross, rows_x, rows_y),
        unbiased(self_x, rows_x, rows_x),
        unbiased(self_y, rows_y, rows_y),
    )


def cka(
    a: Any,
    b: Any,
    *,
    kernel: str = "linear",
    debiased: bool = False,
    threshold: float = 1.0,
) -> float:
    """Centered kernel alignment of two representations of the same inputs.

    ``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K``, ``L``
    the kernel matrices of the rows of ``a`` and ``b`` (Kornblith et al. 2019).
    Invariant to orthogonal transforms and isotropic scaling of either side
    (linear kernel; the RBF kernel with a median-relative bandwidth too).
    ``debiased=True`` uses the unbiased HSIC estimator (Song et al. 2012), whose
    cross term can be negative (so can the result); its self terms are squared
    norms, clipped at 0 against rounding, so the square root never sees a
    negative number.

    Args:
        a: Activations ``(N, ...)``, flattened to ``(N, features)``.
        b: Activations ``(N, ...)`` of the same N inputs.
        kernel: ``"linear"`` or ``"rbf"``.
        debiased: Use the unbiased HSIC (needs N >= 4).
        threshold: RBF bandwidth as a fraction of the median distance between
            samples (σ = threshold × median distance).

    Returns:
        The CKA, a float (1 for identical representations).

    Raises:
        ValueError: For different N, fewer than 2 samples (4 when debiased),
            non-finite values, an unknown kernel, a non-positive threshold, or a
            representation without variance (CKA undefined).

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> x = np.random.default_rng(0).normal(size=(50, 8))
        >>> round(representations.cka(x, 3 * x), 6)
        1.0
    """
    _validate.one_of(kernel, "kernel", KERNELS)
    threshold = _validate.positive(threshold, "threshold")
    x, y = _matrices.pair(a, b, "cka", 4 if debiased else 2)
    x_width, y_width = x.shape[1], y.shape[1]
    if kernel == "linear" and max(x_width, y_width) < len(x):
        cross, self_x, self_y = _linear_feature_terms(x, y, debiased)
    else:
        if kernel == "linear":
            gram_x, gram_y = gram_linear(x), gram_linear(y)
        else:
            gram_x, gram_y = gram_rbf(x, threshold), gram_rbf(y, threshold)
        gram_x, gram_y = _center_gram(gram_x, debiased), _center_gram(gram_y, debiased)
        cross = np.sum(gram_x * gram_y)
        self_x, self_y = np.sum(gram_x * gram_x), np.sum(gram_y * gram_y)
    return _ratio(cross, self_x, self_y, "cka")


def unbiased_hsic(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """The unbiased HSIC estimator of two kernel matrices (Song et al. 2012, Eq. 5).

    ``[tr(K̃L̃) + 1ᵀK̃1 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) 1ᵀK̃L̃1] / (n(n-3))`` where
    ``K̃``, ``L̃`` are the matrices with a zero diagonal; the per-minibatch HSIC of
    Nguyen et al. 2021. It can be negative.
    """
    n = len(gram_x)
    gram_x = gram_x - np.diag(np.diag(gram_x))
    gram_y = gram_y - np.diag(np.diag(gram_y))
    sums_x, sums_y = gram_x.sum(axis=0), gram_y.sum(axis=0)
    value = (
        np.sum(gram_x * gram_y)
        + sums_x.sum() * sums_y.sum() / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * sums_x @ sums_y
    )
    return float(value / (n * (n - 3)))


# -- CCA ---------------------------------------------------------------------------------
def _basis(matrix: np.ndarray, name: str, function: str) -> np.ndarray:
    """An orthonormal basis of the centered columns (pivoted, rank-revealing QR)."""
    import scipy.linalg

    samples, features = matrix.shape
    if samples <= features:
        raise ValueError(
            f"{function}: CCA needs more samples than features, otherwise every canonical "
            f"correlation is 1. Received: {name} with {samples} samples and {features} "
            "features. Reduce the features first, e.g. svcca(a, b, keep=0.99) or an SVD "
            "(PCA) of each side to fewer than N dimensions, or use more samples."
        )
    q, r, _ = scipy.linalg.qr(_matrices.centered(matrix), mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(r))
    rank = int(np.sum(diagonal > diagonal[0] * max(samples, features) * np.finfo(float).eps))
    if rank == 0:
        raise ValueError(
            f"{function}: {name} has no variance across samples (constant activations). "
            f"Received: {name} with {features} constant features."
        )
    return q[:, :rank]


def _canonical(x: np.ndarray, y: np.ndarray, function: str):
    """QR-based CCA: bases, singular vectors and the canonical correlations."""
    basis_x, basis_y = _basis(x, "a", function), _basis(y, "b", function)
    left, correlations, right_t = np.linalg.svd(basis_x.T @ basis_y, full_matrices=False)
    return basis_x, basis_y, left, np.clip(correlations, 0.0, 1.0), right_t.T


def cca(a: Any, b: Any) -> np.ndarray:
    """The canonical correlations of two representations, in descending order.

    Columns are centered; ``Qa``, ``Qb`` are orthonormal bases of the column
    spaces (pivoted QR; linearly dependent features such as dead units are
    dropped), and the correlations are the singular values of ``Qaᵀ Qb``
    (Björck & Golub 1973). Invariant to invertible linear maps of either side.

    Args:
        a: Activations ``(N, ...)``, flattened to ``(N, features)``.
        b: Activations ``(N, ...)`` of the same inputs.

    Returns:
        float64 array of ``min(rank a, rank b)`` correlations in ``[0, 1]``.

    Raises:
        ValueError: For different N, N <= features on either side (reduce with
            an SVD first), constant activations or non-finite values.

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> x = np.random.default_rng(0).normal(size=(50, 3))
        >>> representations.cca(x, x @ np.diag([1.0, 2.0, -3.0])).round(6).tolist()
        [1.0, 1.0, 1.0]
    """
    x, y = _matrices.pair(a, b, "cca", 2)
    return _canonical(x, y, "cca")[3]


def _svd_reduce(matrix: np.ndarray, keep: float) -> np.ndarray:
    centered = _matrices.centered(matrix)
    left, singular, _ = np.linalg.svd(centered, full_matrices=False)
    if isinstance(keep, int | np.integer) and not isinstance(keep, bool):
        count = min(int(keep), len(singular))
    else:
        explained = np.cumsum(singular**2) / np.sum(singular**2)
        count = int(np.searchsorted(explained, keep - 1e-12)) + 1
    return left[:, :count] * singular[:count]


def svcca(a: Any, b: Any, *, keep: float = 0.99) -> float:
    """SVCCA (Raghu et al. 2017): the mean canonical correlation after an SVD of each side.

    Each side is centered and reduced to its top singular directions, which
    explain a fraction ``keep`` of its variance (or, for an int ``keep``, to that
    many directions); the result is the mean of :func:`cca` of the reductions.

    Args:
        a: Activations ``(N, ...)``.
        b: Activations ``(N, ...)`` of the same inputs.
        keep: Fraction of variance kept, in ``(0, 1]``, or a number of
            directions (int >= 1).

    Returns:
        The mean canonical correlation, a float in ``[0, 1]``.

    Raises:
        ValueError: For different N, fewer than 2 samples, a bad ``keep``.

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> x = np.random.default_rng(0).normal(size=(40, 60))
        >>> round(representations.svcca(x, x[:, ::-1]), 6)
        1.0
    """
    if isinstance(keep, bool) or not (
        (isinstance(keep, int | np.integer) and keep >= 1)
        or (isinstance(keep, float) and 0 < keep <= 1)
    ):
        raise ValueError(
            "svcca: keep must be a fraction of variance in (0, 1] or a number of "
            f"directions >= 1. Received: keep={keep!r}."
        )
    x, y = _matrices.pair(a, b, "svcca", 2)
    return float(np.mean(_canonical(_svd_reduce(x, keep), _svd_reduce(y, keep), "svcca")[3]))


def pwcca(a: Any, b: Any) -> float:
    """Projection-weighted CCA (Morcos et al. 2018): ``Σ αᵢ ρᵢ / Σ αᵢ``.

    ``ρᵢ`` are the canonical correlations; ``αᵢ = Σⱼ |⟨hᵢ, zⱼ⟩|`` weighs each by
    how much of the neurons ``zⱼ`` (centered columns) of one side its canonical
    variate ``hᵢ`` (unit norm) accounts for. The side is the one with fewer
    features (``a`` on ties), as google/svcca intends; unlike google/svcca's
    ``pwcca.py``, whose other branch projects the first layer's activations onto
    the second layer's directions, the weights always use that side's own
    activations. PWCCA is therefore not symmetric in general.

    Args:
        a: Activations ``(N, ...)``.
        b: Activations ``(N, ...)`` of the same inputs.

    Returns:
        The PWCCA similarity, a float in ``[0, 1]`` (1 minus Morcos et al.'s distance).

    Raises:
        ValueError: As :func:`cca`.

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> x = np.random.default_rng(0).normal(size=(50, 4))
        >>> round(representations.pwcca(x, x + 1.0), 6)
        1.0
    """
    x, y = _matrices.pair(a, b, "pwcca", 2)
    basis_x, basis_y, left, correlations, right = _canonical(x, y, "pwcca")
    count = len(correlations)
    if x.shape[1] <= y.shape[1]:
        variates, neurons = basis_x @ left[:, :count], _matrices.centered(x)
    else:
        variates, neurons = basis_y @ right[:, :count], _matrices.centered(y)
    weights = np.abs(variates.T @ neurons).sum(axis=1)
    return float(np.sum(weights * correlations) / np.sum(weights))

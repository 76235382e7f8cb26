"""How do layers and models compare? CKA, SVCCA, PWCCA, embeddings and the TensorBoard projector.

Every measure takes activations ``(N, ...)`` of the same ``N`` inputs, in the
same order, flattens them to ``(N, features)`` and computes in float64.

- :func:`cka`: centered kernel alignment (Kornblith et al. 2019, "Similarity of
  Neural Network Representations Revisited", ICML), linear or RBF kernel,
  biased or debiased (unbiased HSIC, Song et al. 2012).
- :func:`cca`, :func:`svcca`, :func:`pwcca`: canonical correlations by QR
  decompositions (Björck & Golub 1973), SVCCA (Raghu et al. 2017, NeurIPS) and
  projection-weighted CCA (Morcos et al. 2018, NeurIPS).
- :func:`similarity_matrix`: every layer of one model against every layer of
  another, with minibatch CKA (Nguyen et al. 2021, "Do Wide and Deep Networks
  Learn the Same Things?", ICLR) so that memory is bounded by the minibatch.
- :func:`embed`, :func:`plot_embedding`, :func:`plot_similarity`,
  :func:`write_projector` (TensorBoard's embedding projector).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_explain import _validate, visualize
from keras_explain.analyzers.layer_output import LayerOutputs
from keras_explain.graph import Plan

KERNELS = ("linear", "rbf")
MEASURES = ("cka", "svcca", "pwcca")
EMBEDDINGS = ("pca", "tsne")
#: Minibatch size of :func:`similarity_matrix` when ``batch_size`` is None.
DEFAULT_MINIBATCH = 256


# -- input checks ----------------------------------------------------------------------
def _matrix(values: Any, name: str, function: str) -> np.ndarray:
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


def _pair(a: Any, b: Any, function: str, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(a, "a", function), _matrix(b, "b", function)
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


def _centered(matrix: np.ndarray) -> np.ndarray:
    return matrix - matrix.mean(axis=0, keepdims=True)


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
    x, y = _centered(x), _centered(y)
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
    x, y = _pair(a, b, "cka", 4 if debiased else 2)
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
    q, r, _ = scipy.linalg.qr(_centered(matrix), mode="economic", pivoting=True)
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
    x, y = _pair(a, b, "cca", 2)
    return _canonical(x, y, "cca")[3]


def _svd_reduce(matrix: np.ndarray, keep: float) -> np.ndarray:
    centered = _centered(matrix)
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
    x, y = _pair(a, b, "svcca", 2)
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
    x, y = _pair(a, b, "pwcca", 2)
    basis_x, basis_y, left, correlations, right = _canonical(x, y, "pwcca")
    count = len(correlations)
    if x.shape[1] <= y.shape[1]:
        variates, neurons = basis_x @ left[:, :count], _centered(x)
    else:
        variates, neurons = basis_y @ right[:, :count], _centered(y)
    weights = np.abs(variates.T @ neurons).sum(axis=1)
    return float(np.sum(weights * correlations) / np.sum(weights))


# -- layers of two models ----------------------------------------------------------------
def _default_layers(model: keras.Model) -> list:
    """Every layer with an output of its own: nested models' layers, not the models."""
    plan = Plan(model)
    return [
        layer
        for layer in plan.layers
        if isinstance(layer, keras.layers.Layer)
        and not isinstance(layer, keras.Model)
        and plan.has_output(layer)
    ]


def _rows(x: Any, start: int, stop: int) -> Any:
    if isinstance(x, list | tuple):
        return [item[start:stop] for item in x]
    return x[start:stop]


def _sample_count(x: Any, function: str) -> int:
    first = x[0] if isinstance(x, list | tuple) else x
    if not hasattr(first, "shape") or len(first.shape) == 0:
        raise TypeError(
            f"{function}: x must be an array (or a list of arrays for a multi-input model). "
            f"Received: {type(first).__name__}."
        )
    return int(first.shape[0])


def similarity_matrix(
    model_a: keras.Model,
    model_b: keras.Model,
    x: Any,
    *,
    layers_a: Sequence[Any] | None = None,
    layers_b: Sequence[Any] | None = None,
    measure: str = "cka",
    batch_size: int | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Similarity of every layer of ``model_a`` to every layer of ``model_b`` on ``x``.

    ``measure="cka"`` is minibatch linear CKA (Nguyen et al. 2021): ``x`` is
    split into minibatches of ``batch_size`` to ``2 batch_size - 1`` samples
    (``np.array_split`` into ``N // batch_size`` parts, so none is too small for
    the unbiased estimator), and
    ``CKA = mean_k HSIC₁(K_k, L_k) / sqrt(mean_k HSIC₁(K_k, K_k) · mean_k HSIC₁(L_k, L_k))``
    with :func:`unbiased_hsic`. Only one minibatch's activations and
    ``batch_size²`` kernel matrices are held at a time, never an ``N × N``
    matrix; with one minibatch holding all of ``x`` it equals
    ``cka(a, b, debiased=True)``. A pair whose layer has no variance (a dead
    layer) gets NaN, with a warning. ``"svcca"`` and ``"pwcca"`` gather all
    activations (``N × features`` per layer) and call :func:`svcca` /
    :func:`pwcca`.

    Args:
        model_a: A Functional or Sequential model.
        model_b: Another one (or the same) taking the same ``x``.
        x: Inputs, an array or a list of arrays (multi-input models).
        layers_a: Layers of ``model_a`` (names or objects); default every layer
            with an output, nested models' layers included, in execution order.
        layers_b: Likewise for ``model_b``.
        measure: ``"cka"``, ``"svcca"`` or ``"pwcca"``.
        batch_size: Minibatch size (>= 4; default 256, or all of x if smaller).

    Returns:
        ``(matrix, names_a, names_b)``: float64 ``(len(layers_a), len(layers_b))``
        and the layer names.

    Raises:
        ValueError: For an unknown layer or measure, fewer than 4 samples, or a
            ``batch_size`` below 4.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import representations
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
        ...                           keras.layers.Dense(3, name="out")])
        >>> matrix, names_a, names_b = representations.similarity_matrix(
        ...     model, model, np.random.default_rng(0).normal(size=(64, 4)))
        >>> names_a, np.diag(matrix).round(6).tolist()
        (['h', 'out'], [1.0, 1.0])
    """
    _validate.one_of(measure, "measure", MEASURES)
    batch_size = _validate.optional_positive_int(batch_size, "batch_size", "256 samples")
    if batch_size is not None and batch_size < 4:
        raise ValueError(
            "similarity_matrix: the unbiased HSIC needs minibatches of at least 4 samples. "
            f"Received: batch_size={batch_size}."
        )
    outputs_a = LayerOutputs(model_a, layers_a or _default_layers(model_a))
    outputs_b = LayerOutputs(model_b, layers_b or _default_layers(model_b))
    names_a = [layer.name for layer in outputs_a.layers]
    names_b = [layer.name for layer in outputs_b.layers]
    total = _sample_count(x, "similarity_matrix")
    if total < 4:
        raise ValueError(f"similarity_matrix needs at least 4 samples. Received: {total}.")
    if measure != "cka":
        score = svcca if measure == "svcca" else pwcca
        acts_a, acts_b = outputs_a.compute(x, batch_size), outputs_b.compute(x, batch_size)
        matrix = np.array([[score(a, b) for b in acts_b] for a in acts_a])
        return matrix, names_a, names_b
    parts = max(1, total // (batch_size or DEFAULT_MINIBATCH))
    bounds = np.cumsum([0] + [len(part) for part in np.array_split(np.arange(total), parts)])
    cross = np.zeros((len(names_a), len(names_b)))
    self_a, self_b = np.zeros(len(names_a)), np.zeros(len(names_b))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        batch = _rows(x, start, stop)
        grams_a = [_batch_gram(a) for a in outputs_a.compute(batch)]
        grams_b = [_batch_gram(b) for b in outputs_b.compute(batch)]
        self_a += [unbiased_hsic(gram, gram) for gram in grams_a]
        self_b += [unbiased_hsic(gram, gram) for gram in grams_b]
        cross += [[unbiased_hsic(ga, gb) for gb in grams_b] for ga in grams_a]
    # self-HSICs are squared norms (>= 0): a value <= 0 is a constant layer (rounding)
    dead_a, dead_b = self_a <= 0, self_b <= 0
    for name in [n for n, d in zip(names_a, dead_a) if d] + [
        n for n, d in zip(names_b, dead_b) if d
    ]:
        warnings.warn(
            f"similarity_matrix: layer {name!r} has the same activations for every "
            "sample, so its CKA is undefined; its row/column is NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = cross / np.sqrt(np.outer(np.maximum(self_a, 0), np.maximum(self_b, 0)))
    matrix[dead_a, :] = np.nan
    matrix[:, dead_b] = np.nan
    return matrix, names_a, names_b


def _batch_gram(activations: np.ndarray) -> np.ndarray:
    features = activations.reshape(len(activations), -1).astype(np.float64)
    return gram_linear(features)


# -- pictures ----------------------------------------------------------------------------
def plot_similarity(
    matrix: Any,
    names_a: Sequence[str] | None = None,
    names_b: Sequence[str] | None = None,
    *,
    title: str | None = None,
    cmap: str = "magma",
):
    """Draw a layer-similarity matrix (rows: ``model_a``'s layers, columns: ``model_b``'s).

    Args:
        matrix: ``(layers_a, layers_b)`` values, e.g. from :func:`similarity_matrix`
            (``plot_similarity(*similarity_matrix(...))``).
        names_a: Row labels.
        names_b: Column labels.
        title: Figure title.
        cmap: A matplotlib colormap name.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> figure = representations.plot_similarity(np.eye(3), ["a", "b", "c"], ["a", "b", "c"])
        >>> len(figure.axes)
        2
    """
    from matplotlib.figure import Figure

    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"plot_similarity needs a 2-D matrix. Received: shape {values.shape}.")
    rows, columns = values.shape
    figure = Figure(figsize=(1.5 + 0.45 * columns, 1.2 + 0.45 * rows), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap=cmap, vmin=min(0.0, np.nanmin(values)), vmax=1.0)
    axes.set_yticks(range(rows), names_a if names_a is not None else range(rows))
    axes.set_xticks(range(columns), names_b if names_b is not None else range(columns))
    axes.tick_params(axis="x", labelrotation=90)
    axes.set_ylabel("model a")
    axes.set_xlabel("model b")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes)
    return figure


def embed(activations: Any, *, method: str = "pca", dims: int = 2, seed: int = 0) -> np.ndarray:
    """Project activations ``(N, ...)`` to ``dims`` dimensions with scikit-learn.

    ``"pca"`` is ``sklearn.decomposition.PCA``; ``"tsne"`` is
    ``sklearn.manifold.TSNE`` with PCA initialization and a perplexity of
    ``min(30, (N - 1) / 3)`` (scikit-learn needs it below N).

    Args:
        activations: ``(N, ...)``, flattened to ``(N, features)``.
        method: ``"pca"`` or ``"tsne"``.
        dims: Output dimensions (int >= 1).
        seed: Random state of the method.

    Returns:
        float32 ``(N, dims)``.

    Raises:
        ValueError: For an unknown method, ``dims`` larger than the features
            (PCA) or fewer than 2 samples.

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> representations.embed(np.random.default_rng(0).normal(size=(20, 5))).shape
        (20, 2)
    """
    _validate.one_of(method, "method", EMBEDDINGS)
    dims = _validate.positive_int(dims, "dims")
    features = _matrix(activations, "activations", "embed")
    if len(features) < 2:
        raise ValueError(f"embed needs at least 2 samples. Received: {len(features)}.")
    if method == "pca":
        from sklearn.decomposition import PCA

        if dims > min(features.shape):
            raise ValueError(
                f"embed: PCA gives at most min(samples, features) = {min(features.shape)} "
                f"dimensions. Received: dims={dims}."
            )
        points = PCA(n_components=dims, random_state=seed).fit_transform(features)
    else:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(features) - 1) / 3)
        tsne = TSNE(n_components=dims, perplexity=perplexity, init="pca", random_state=seed)
        points = tsne.fit_transform(features)
    return points.astype(np.float32)


def plot_embedding(points: Any, labels: Any = None, *, title: str | None = None, cmap="tab10"):
    """Scatter 2-D points (from :func:`embed`), coloured by label, with a legend.

    Args:
        points: ``(N, 2)`` (more columns: the first two are drawn).
        labels: Optional ``(N,)`` labels (any values; one colour each).
        title: Figure title.
        cmap: A matplotlib colormap name for the label colours.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> figure = representations.plot_embedding(np.zeros((4, 2)), [0, 1, 0, 1])
        >>> len(figure.axes[0].collections)
        2
    """
    import matplotlib
    from matplotlib.figure import Figure

    values = np.asarray(points, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(
            f"plot_embedding needs points shaped (N, 2). Received: shape {values.shape}."
        )
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    if labels is None:
        axes.scatter(values[:, 0], values[:, 1], s=8)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(values),):
            raise ValueError(
                f"plot_embedding: labels must have one value per point, shape "
                f"({len(values)},). Received: shape {labels.shape}."
            )
        colours = matplotlib.colormaps[cmap]
        for index, label in enumerate(np.unique(labels)):
            chosen = labels == label
            colour = colours(index % colours.N if colours.N < 256 else index / 10 % 1)
            axes.scatter(values[chosen, 0], values[chosen, 1], s=8, color=colour, label=str(label))
        axes.legend(markerscale=2, fontsize="small")
    if title:
        axes.set_title(title)
    return figure


# -- TensorBoard projector ---------------------------------------------------------------
PROJECTOR_CONFIG = "projector_config.pbtxt"
#: TensorBoard's limit on the sprite image's width and height.
MAX_SPRITE_SIZE = 8192


def _require_projector():
    try:
        from tensorboard.plugins import projector
    except ImportError as error:
        raise ImportError(
            "write_projector writes TensorBoard projector files and needs the tensorboard "
            'package: pip install "keras-explainer[tensorboard]".'
        ) from error
    return projector


def _cell(value: Any) -> str:
    return " ".join(str(value).split())  # no tabs or newlines inside a TSV cell


def write_metadata(path: str, metadata: Any, count: int) -> None:
    """Write labels as TensorBoard metadata: one column without header, several with one.

    Args:
        path: The file to write.
        metadata: ``(N,)`` labels, or a dict ``{column: (N,) values}``.
        count: N, the number of embedded points.

    Raises:
        ValueError: If a column does not have one value per point.
    """
    columns = dict(metadata) if isinstance(metadata, dict) else {"label": metadata}
    values = {}
    for column, items in columns.items():
        items = list(np.asarray(items).reshape(-1)) if not isinstance(items, list) else items
        if len(items) != count:
            raise ValueError(
                f"write_projector: metadata {column!r} must have one value per point ({count}). "
                f"Received: {len(items)} values."
            )
        values[column] = items
    lines = [] if len(values) == 1 else ["\t".join(_cell(name) for name in values)]
    lines += ["\t".join(_cell(items[row]) for items in values.values()) for row in range(count)]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def write_sprite(path: str, images: Any, count: int) -> tuple[int, int]:
    """Tile images into a square sprite PNG, row-major, as the projector reads it.

    Images are brought to RGB with :func:`keras_explain.visualize.as_rgb`
    (each min-max scaled); empty cells stay black.

    Args:
        path: The PNG file to write.
        images: ``(N, H, W[, C])``.
        count: N, the number of embedded points.

    Returns:
        ``(width, height)`` of one image.

    Raises:
        ValueError: For the wrong number of images, or a sprite over 8192 pixels a side.
    """
    import tensorflow as tf

    pictures = visualize.to_uint8(visualize.as_rgb(np.asarray(images)))
    if pictures.ndim != 4 or len(pictures) != count:
        raise ValueError(
            f"write_projector: images must be ({count}, height, width[, channels]), one per "
            f"point. Received: shape {np.shape(images)}."
        )
    height, width = pictures.shape[1:3]
    side = math.ceil(math.sqrt(count))
    if side * max(height, width) > MAX_SPRITE_SIZE:
        raise ValueError(
            f"write_projector: the sprite of {count} images of {height}x{width} would be "
            f"{side * height}x{side * width} pixels; TensorBoard reads at most "
            f"{MAX_SPRITE_SIZE}x{MAX_SPRITE_SIZE}. Pass smaller thumbnails or fewer points."
        )
    sprite = np.zeros((side * side, height, width, 3), np.uint8)
    sprite[:count] = pictures
    sprite = sprite.reshape(side, side, height, width, 3).transpose(0, 2, 1, 3, 4)
    sprite = sprite.reshape(side * height, side * width, 3)
    tf.io.write_file(path, tf.io.encode_png(sprite))
    return width, height


def write_projector(
    log_dir: str | os.PathLike,
    activations: Any,
    metadata: Any = None,
    images: Any = None,
    *,
    name: str = "activations",
) -> str:
    """Write activations as a TensorBoard Projector embedding.

    Files in ``log_dir``: ``{name}.tsv`` (the values, one row per point,
    flattened), ``{name}_metadata.tsv`` (labels), ``{name}_sprite.png`` (a
    square grid of thumbnails) and ``projector_config.pbtxt``. An existing
    config is kept and the embedding named ``name`` added or replaced, so
    several embeddings (e.g. one per epoch) share a directory. Open with
    ``tensorboard --logdir log_dir``, tab "Projector".

    Args:
        log_dir: The directory (created if needed).
        activations: ``(N, ...)`` values, flattened to ``(N, features)``.
        metadata: Optional ``(N,)`` labels or ``{column: (N,) values}``.
        images: Optional ``(N, H, W[, C])`` thumbnails for the sprite.
        name: The embedding's name (its ``tensor_name``) and file prefix.

    Returns:
        The path of ``projector_config.pbtxt``.

    Raises:
        ValueError: For metadata or images that do not have one entry per
            point, or a sprite too large for TensorBoard.
        ImportError: If tensorboard is not installed.

    Example:
        >>> import tempfile, numpy as np
        >>> from keras_explain import representations
        >>> path = representations.write_projector(tempfile.mkdtemp(), np.ones((3, 4)), [0, 1, 2])
        >>> path.endswith("projector_config.pbtxt")
        True
    """
    projector = _require_projector()
    from google.protobuf import text_format

    values = _matrix(activations, "activations", "write_projector")
    log_dir = os.fspath(log_dir)
    os.makedirs(log_dir, exist_ok=True)
    count = len(values)
    embedding = projector.EmbeddingInfo(tensor_name=name, tensor_path=f"{name}.tsv")
    embedding.tensor_shape.extend(values.shape)
    if metadata is not None:
        write_metadata(os.path.join(log_dir, f"{name}_metadata.tsv"), metadata, count)
        embedding.metadata_path = f"{name}_metadata.tsv"
    if images is not None:
        width, height = write_sprite(os.path.join(log_dir, f"{name}_sprite.png"), images, count)
        embedding.sprite.image_path = f"{name}_sprite.png"
        embedding.sprite.single_image_dim.extend([width, height])
    np.savetxt(os.path.join(log_dir, f"{name}.tsv"), values.astype(np.float32), delimiter="\t")
    path = os.path.join(log_dir, PROJECTOR_CONFIG)
    config = projector.ProjectorConfig()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            text_format.Parse(handle.read(), config)
    kept = [item for item in config.embeddings if item.tensor_name != name]
    del config.embeddings[:]
    config.embeddings.extend([*kept, embedding])
    projector.visualize_embeddings(log_dir, config)
    return path

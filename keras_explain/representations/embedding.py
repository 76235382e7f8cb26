"""Activations projected to a few dimensions with scikit-learn: PCA or t-SNE."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain.representations import _matrices

EMBEDDINGS = ("pca", "tsne")


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
    features = _matrices.matrix(activations, "activations", "embed")
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

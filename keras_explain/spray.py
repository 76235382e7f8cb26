"""Spectral Relevance Analysis (SpRAy): the strategies a model uses, across a dataset.

Lapuschkin et al., "Unmasking Clever Hans predictors and assessing what machines
really learn", Nature Communications 2019, doi:10.1038/s41467-019-08987-4
(CoRelAy and ViRelAy are the PyTorch-side references). One heatmap at a time
cannot show that a model relies on a shortcut; the heatmaps of a whole class,
clustered, can: a small cluster whose heatmaps all point at the same corner is a
strategy of its own.

The pipeline, per class:

1. **Features.** Each heatmap summed over its channels, downsampled to ``size`` by
   averaging (``skimage.transform.resize`` with anti-aliasing), flattened, and
   scaled to unit maximum absolute value; or any ``(n, d)`` features as they are
   (CRP concept relevances: "concept clustering").
2. **Affinity.** A symmetric k-nearest-neighbour graph (scikit-learn), on the
   features reduced to ``components`` principal components when they have more
   (for speed; the neighbours of 50,000 maps of 32x32 in seconds).
3. **Spectral embedding.** The leading eigenvectors of the normalized affinity
   ``D^-1/2 A D^-1/2`` (``scipy.sparse.linalg.eigsh``, sparse); the eigenvalues of
   the normalized Laplacian ``1 - μ`` are returned, and the largest relative gap
   between consecutive ones suggests the number of clusters (the *eigengap*, at
   least 2).
4. **Clustering** of the row-normalized embedding (Ng, Jordan & Weiss 2001):
   k-means, agglomerative, DBSCAN or HDBSCAN (scikit-learn).
5. **A 2-D embedding** for plots: t-SNE of the non-trivial eigenvectors
   (scikit-learn), UMAP when ``umap-learn`` is installed and asked for, or the first
   two of them (``"spectral"``, instant).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from keras_explain import _shards, _validate

METHODS = ("kmeans", "agglomerative", "dbscan", "hdbscan")
EMBEDDINGS = ("tsne", "umap", "spectral")
#: Eigenvalues computed (the eigengap is looked for among them).
EIGENVALUES = 12
#: Eigenvectors t-SNE and UMAP embed (the clustering's row-normalized columns are, for two
#: clusters, a circle: t-SNE drew two arcs). t-SNE of 50,000 maps took 198 s on 4 of them
#: and 208 s on all 11; the clusters themselves took 15 s.
TSNE_VECTORS = 4
#: MiB scikit-learn may use per chunk of the neighbour search (its default: 1024).
WORKING_MEMORY = 64
#: Maps read at a time from a memory-mapped directory.
BLOCK = 4096


@dataclasses.dataclass
class SprayResult:
    """The clusters of one set of heatmaps (one class).

    Attributes:
        indices: ``(n,)`` positions of these samples in the data given.
        clusters: ``(n,)`` cluster id of each sample (``-1``: noise, DBSCAN/HDBSCAN).
        eigenvalues: The smallest eigenvalues of the normalized Laplacian, ascending.
        suggested: The number of clusters the largest eigengap suggests.
        embedding: ``(n, 2)`` coordinates for a scatter plot.
        prototypes: ``(n_clusters, *size)`` mean downsampled map of each cluster
            (of the features, for features that are not maps).
        sizes: ``(n_clusters,)`` samples per cluster.
        separation: ``(n_clusters,)`` mean simplified silhouette of each cluster's
            samples in the spectral embedding (distances to the cluster centres,
            Hruschka et al. 2004), in [-1, 1]: how apart the cluster lies. A small,
            well-separated cluster is a strategy of its own, the first to look at.
    """

    indices: np.ndarray
    clusters: np.ndarray
    eigenvalues: np.ndarray
    suggested: int
    embedding: np.ndarray
    prototypes: np.ndarray
    sizes: np.ndarray
    separation: np.ndarray


def analyze(
    maps: Any,
    labels: Any = None,
    *,
    size: tuple[int, int] = (32, 32),
    neighbors: int = 10,
    clusters: int | None = None,
    method: str = "kmeans",
    embedding: str = "tsne",
    components: int | None = 64,
    seed: int = 0,
    model: Any = None,
    analyzer: str | None = None,
) -> SprayResult | dict[int, SprayResult]:
    """SpRAy: cluster heatmaps (or other per-sample features) by spectral clustering.

    Args:
        maps: ``(n, H, W)`` or ``(n, H, W, C)`` heatmaps, ``(n, d)`` features (CRP
            concept relevances), or a directory written by
            :func:`keras_explain.explain_dataset` (memory-mapped, read in blocks).
        labels: ``(n,)`` class of each sample: each class is analyzed on its own
            and a dict ``{class: result}`` returned; None analyzes all together.
        size: ``(height, width)`` the maps are downsampled to.
        neighbors: Neighbours per sample in the affinity graph.
        clusters: The number of clusters (k-means, agglomerative); None takes the
            eigengap's suggestion. Unused by DBSCAN and HDBSCAN.
        method: ``"kmeans"``, ``"agglomerative"``, ``"dbscan"`` or ``"hdbscan"``.
        embedding: ``"tsne"``, ``"umap"`` (needs ``umap-learn``) or ``"spectral"``.
        components: Principal components the features are reduced to before the
            neighbours are searched (None: all).
        seed: Seed of k-means, t-SNE and the eigensolver's start vector.
        model: With a directory: the model its maps must explain (its name, layers
            and weights, as ``explain_dataset`` records them), or None (unchecked).
        analyzer: With a directory: the analyzer name its maps must come from (as
            given to ``explain_dataset``), or None (unchecked).

    Returns:
        A :class:`SprayResult`, or a dict of them by class.

    Raises:
        ValueError: For maps of another rank, a class with fewer samples than
            ``neighbors + 2``, more ``clusters`` than its samples allow, a directory
            of another ``model`` or ``method``, or a bad argument.
        ImportError: For ``embedding="umap"`` without ``umap-learn``.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> rng = np.random.default_rng(0)
        >>> maps = rng.uniform(size=(60, 8, 8)) * 0.1
        >>> maps[:20, :2, :2] += 1.0                       # one strategy: the corner
        >>> result = kx.spray.analyze(maps, size=(8, 8), clusters=2, embedding="spectral")
        >>> sorted(np.bincount(result.clusters).tolist())
        [20, 40]
    """
    try:
        method = _validate.one_of(method, "method", METHODS)
        embedding = _validate.one_of(embedding, "embedding", EMBEDDINGS)
        neighbors = _validate.positive_int(neighbors, "neighbors")
        if clusters is not None:
            clusters = _validate.positive_int(clusters, "clusters")
        components = _validate.optional_positive_int(components, "components", "no reduction")
        size = tuple(_validate.positive_int(side, "size") for side in size)
    except ValueError as error:
        raise ValueError(f"spray.analyze: {error}") from None
    if isinstance(maps, str | os.PathLike):
        _check_directory(os.fspath(maps), model, analyzer)
    features, shape = _features(maps, size)
    if labels is None:
        everything = np.arange(len(features))
        return _cluster(
            features, everything, shape, neighbors, clusters, method, embedding, components, seed
        )
    labels = np.asarray(labels)
    if labels.shape != (len(features),):
        raise ValueError(
            f"spray.analyze: labels needs one class per map. Received: labels of shape "
            f"{labels.shape} for {len(features)} maps."
        )
    return {
        int(label): _cluster(
            features[labels == label],
            np.flatnonzero(labels == label),
            shape,
            neighbors,
            clusters,
            method,
            embedding,
            components,
            seed,
        )
        for label in np.unique(labels)
    }


def _check_directory(directory: str, model: Any, analyzer: str | None) -> None:
    """Refuse an ``explain_dataset`` directory of another model or method."""
    manifest = _shards.read_manifest(directory) or {}
    found = {"method": manifest.get("method"), "model": manifest.get("model")}
    expected = {
        "method": analyzer,
        "model": None if model is None else _shards.model_fingerprint(model),
    }
    for key, value in expected.items():
        if value is not None and found[key] != value:
            recorded = found[key]["name"] if key == "model" and found[key] else found[key]
            wanted = value["name"] if key == "model" else value
            raise ValueError(
                f"spray.analyze: {directory!r} holds the explanations of another {key}: "
                f"{recorded!r}, not {wanted!r}"
                f"{' (the same name, other layers or weights)' if recorded == wanted else ''}. "
                "Pass the directory explain_dataset wrote for this model and method."
            )


def _features(maps: Any, size: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    """``(n, d)`` float32 features and the shape of one (for the prototypes)."""
    if isinstance(maps, str | os.PathLike):
        from keras_explain.streaming import load_explanations

        maps = load_explanations(maps)
    maps = maps if isinstance(maps, np.ndarray) else np.asarray(maps)
    if maps.ndim == 2:  # features as they are
        return np.asarray(maps, np.float32), (maps.shape[1],)
    if maps.ndim not in (3, 4):
        raise ValueError(
            "spray.analyze clusters heatmaps (n, H, W) or (n, H, W, C), or features (n, d). "
            f"Received: an array of shape {maps.shape}."
        )
    from skimage.transform import resize

    parts = []
    for start in range(0, len(maps), BLOCK):
        block = np.asarray(maps[start : start + BLOCK], np.float32)
        block = block.sum(axis=-1) if block.ndim == 4 else block
        small = resize(block, (len(block), *size), anti_aliasing=True, preserve_range=True)
        flat = small.reshape(len(block), -1).astype(np.float32)
        peak = np.abs(flat).max(axis=1, keepdims=True)
        parts.append(flat / np.where(peak > 0, peak, 1.0))
    return np.concatenate(parts), size


def _cluster(features, indices, shape, neighbors, clusters, method, embedding, components, seed):
    import sklearn
    from scipy.sparse import diags
    from scipy.sparse.linalg import eigsh
    from sklearn.decomposition import PCA
    from sklearn.neighbors import kneighbors_graph

    count = len(features)
    if count < neighbors + 2:
        raise ValueError(
            f"spray.analyze needs more maps than neighbors + 1 per class. Received: {count} "
            f"maps and neighbors={neighbors}. Pass fewer neighbors or more maps."
        )
    reduced = features
    if components is not None and features.shape[1] > components and count > components:
        reduced = PCA(components, random_state=seed).fit_transform(features)
    with sklearn.config_context(working_memory=WORKING_MEMORY):
        graph = kneighbors_graph(reduced, neighbors, include_self=False)
    affinity = graph.maximum(graph.T)  # symmetric
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    normalized = scale @ affinity @ scale
    if clusters is not None and clusters > count - 2:
        raise ValueError(
            f"spray.analyze: {count} maps cannot make {clusters} clusters (at most "
            f"{count - 2}). Received: clusters={clusters}. Pass fewer clusters, or None for "
            "the eigengap's number."
        )
    k = min(max(EIGENVALUES, (clusters or 0) + 1), count - 2)
    start = np.random.default_rng(seed).uniform(size=count)
    values, vectors = eigsh(normalized, k=k, which="LA", v0=start)
    order = np.argsort(-values)
    eigenvalues = 1.0 - values[order]  # of the normalized Laplacian, ascending
    vectors = vectors[:, order]
    suggested = _eigengap(eigenvalues)
    count_clusters = suggested if clusters is None else clusters
    spectral = vectors[:, : max(count_clusters, 2)]
    rows = np.linalg.norm(spectral, axis=1, keepdims=True)
    spectral = spectral / np.where(rows > 0, rows, 1.0)
    assigned = _assign(spectral, count_clusters, method, seed)
    ids = [c for c in np.unique(assigned) if c >= 0]
    silhouettes = _simplified_silhouettes(spectral, assigned, ids)
    return SprayResult(
        indices=indices,
        clusters=assigned,
        eigenvalues=eigenvalues,
        suggested=suggested,
        embedding=_embedding(vectors, embedding, seed),
        prototypes=np.stack([features[assigned == c].mean(axis=0).reshape(shape) for c in ids]),
        sizes=np.array([int((assigned == c).sum()) for c in ids]),
        separation=np.array(
            [
                np.nan if silhouettes is None else float(silhouettes[assigned == c].mean())
                for c in ids
            ]
        ),
    )


def _simplified_silhouettes(points, assigned, ids) -> np.ndarray | None:
    """The simplified silhouette of every point (Hruschka et al. 2004); None for one cluster.

    ``(b - a) / max(a, b)``, ``a`` the distance to the point's cluster centre and
    ``b`` to the nearest other centre: O(n k), where the silhouette's pairwise
    distances are O(n²). Noise points (``-1``) get NaN.
    """
    if len(ids) < 2:
        return None
    centres = np.stack([points[assigned == c].mean(axis=0) for c in ids])
    distances = np.linalg.norm(points[:, None, :] - centres[None], axis=2)  # (n, k)
    position = {c: i for i, c in enumerate(ids)}
    values = np.full(len(points), np.nan)
    for c in ids:
        rows = assigned == c
        own = distances[rows, position[c]]
        other = np.delete(distances[rows], position[c], axis=1).min(axis=1)
        values[rows] = (other - own) / np.maximum(np.maximum(own, other), 1e-12)
    return values


def _eigengap(eigenvalues: np.ndarray) -> int:
    """The ``k >= 2`` after which the eigenvalues jump most, relative to the next one.

    ``(λ_(k+1) - λ_k) / λ_(k+1)``: a graph of ``c`` separate components (``c`` zero
    eigenvalues) suggests ``c``. The absolute gap ``λ_(k+1) - λ_k`` (von Luxburg
    2007) is drawn to the larger eigenvalues, which are more spread out: on 90 maps of
    two strategies, two separate components, it suggested 6.
    """
    values = np.maximum(eigenvalues, 0.0)
    gaps = (values[2:] - values[1:-1]) / np.maximum(values[2:], 1e-12)
    return int(np.argmax(gaps) + 2)


def _assign(spectral, count, method, seed):
    from sklearn import cluster

    if method == "kmeans":
        return cluster.KMeans(count, n_init=10, random_state=seed).fit_predict(spectral)
    if method == "agglomerative":
        return cluster.AgglomerativeClustering(count).fit_predict(spectral)
    if method == "dbscan":
        return cluster.DBSCAN().fit_predict(spectral)
    return cluster.HDBSCAN(copy=True).fit_predict(spectral)


def _embedding(vectors, embedding, seed):
    """2-D coordinates from the first non-trivial eigenvectors (:data:`TSNE_VECTORS`).

    Not from the clustering's row-normalized ``k`` columns: with two clusters those lie
    on a circle, and t-SNE of them draws two arcs.
    """
    if embedding == "spectral":
        return np.asarray(vectors[:, 1:3], np.float32)
    points = vectors[:, 1 : 1 + TSNE_VECTORS]
    if embedding == "umap":
        try:
            import umap
        except ImportError:
            raise ImportError(
                'spray.analyze: embedding="umap" needs umap-learn: pip install umap-learn, or '
                'pass embedding="tsne" or "spectral".'
            ) from None
        return umap.UMAP(random_state=seed).fit_transform(points).astype(np.float32)
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(points) - 1) / 3)
    return (
        TSNE(2, perplexity=perplexity, random_state=seed, init="pca")
        .fit_transform(points)
        .astype(np.float32)
    )


__all__ = ["SprayResult", "analyze"]

"""SpRAy's page: the clusters of a class's heatmaps, offline, in one HTML file.

The 2-D embedding is an SVG scatter coloured by cluster; clicking a point shows the
sample, its heatmap over it, every cluster's prototype (its own highlighted) and,
when given, the cluster's concept atlas. Everything is inlined, as in
:func:`keras_explain.report.report`'s page, and the page makes no request.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_explain import visualize
from keras_explain._shards import write_atomic
from keras_explain.report import _encode


def spray_report(
    model,
    x: Any,
    labels: Any = None,
    *,
    out: Any = "spray.html",
    method: str = "lrp.epsilon_plus_flat",
    size: tuple[int, int] = (32, 32),
    clusters: int | None = None,
    embedding: str = "tsne",
    layer: Any = None,
    composite: Any = "epsilon_plus_flat",
    concepts: int = 4,
    references: int = 4,
    class_names: Sequence[str] | None = None,
    batch_size: int = 64,
    title: str | None = None,
) -> str:
    """Explain ``x``, run SpRAy per class, and write the page (``keras-explain spray``).

    Args:
        model: A Keras model.
        x: ``(n, H, W, C)`` images.
        labels: ``(n,)`` classes: the maps explain them and SpRAy groups by them
            (None: each image's predicted class).
        out: The HTML file to write.
        method: The registry name of the explanation method.
        size, clusters, embedding: As :func:`keras_explain.spray.analyze`.
        layer: A layer for a concept atlas per cluster (CRP at that layer: the
            ``concepts`` most relevant channels of the cluster's most central sample,
            their conditional heatmaps and ``references`` reference crops each,
            relevance maximization over ``x``); None: no atlas.
        composite: CRP's composite (with ``layer``).
        concepts: Concepts per atlas.
        references: Reference crops per concept.
        class_names: A name per class.
        batch_size: Samples per pass.
        title: The page's title.

    Returns:
        The path written.

    Raises:
        ValueError: As :func:`keras_explain.spray.analyze`, for labels that are not
            one per image, and a bad ``out``.
    """
    from keras_explain import crp, spray
    from keras_explain.analyzers.registry import create_analyzer

    x = np.asarray(x)
    if labels is None:
        labels = np.asarray(model.predict(x, batch_size=batch_size, verbose=0)).argmax(axis=-1)
    labels = np.asarray(labels)
    if labels.shape != (len(x),):
        raise ValueError(
            f"spray_report: labels needs one class per image. Received: labels of shape "
            f"{labels.shape} for {len(x)} images."
        )
    analyzer = create_analyzer(method, model, verbose=0)
    maps = analyzer.analyze(x, labels, batch_size=batch_size)
    results = spray.analyze(maps, labels, size=size, clusters=clusters, embedding=embedding)
    atlases = {}
    if layer is not None:
        concept = crp.CRP(model, layer, composite=composite)
        found = crp.reference_samples(
            model, x, layer, k=references, composite=composite, target=labels, verbose=0
        )
        for label, result in results.items():
            for cluster in (int(c) for c in np.unique(result.clusters) if c >= 0):
                sample = _central(result, cluster)
                relevance = concept.concept_relevance(x[sample : sample + 1], target=label)[0]
                top = [int(c) for c in np.argsort(-relevance)[:concepts]]
                heatmaps = concept.conditional(x[sample : sample + 1], top, target=label)[0]
                atlases[(label, cluster)] = visualize.plot_concept_atlas(
                    x[sample], heatmaps, relevance[top], _rows(found, top)
                )
    return spray_page(
        x,
        maps,
        results,
        out,
        class_names=class_names,
        atlases=atlases,
        method=method,
        model_name=str(model.name),
        title=title,
    )


def _central(result: Any, cluster: int) -> int:
    """The member of ``cluster`` nearest its centre in the 2-D embedding (its position in x)."""
    members = np.flatnonzero(result.clusters == cluster)
    points = np.asarray(result.embedding)[members]
    nearest = np.argmin(np.linalg.norm(points - points.mean(axis=0), axis=1))
    return int(result.indices[members[nearest]])


def _rows(found: Any, channels: list[int]) -> Any:
    """The reference samples of ``channels`` only, in that order."""
    rows = [found.channels.index(c) for c in channels]
    return dataclasses.replace(
        found,
        channels=channels,
        samples=found.samples[rows],
        scores=found.scores[rows],
        positions=found.positions[rows],
        patches=None if found.patches is None else found.patches[rows],
    )


def spray_page(
    x: Any,
    maps: Any,
    results: Any,
    out: Any,
    *,
    class_names: Sequence[str] | None = None,
    atlases: Mapping[tuple[int, int], Any] | None = None,
    method: str = "",
    model_name: str = "",
    title: str | None = None,
) -> str:
    """Write SpRAy's results as a self-contained HTML page.

    Args:
        x: ``(n, H, W, C)`` the images the maps explain.
        maps: ``(n, H, W[, C])`` their heatmaps.
        results: What :func:`keras_explain.spray.analyze` returned: one
            :class:`~keras_explain.spray.SprayResult` or a dict of them by class.
        out: The HTML file to write.
        class_names: A name per class (default: the class numbers).
        atlases: Optional matplotlib figures by ``(class, cluster)`` (concept atlases,
            :func:`keras_explain.visualize.plot_concept_atlas`), shown with the cluster.
        method: The explanation method's name, for the page's summary.
        model_name: The model's name, for the summary.
        title: The page's title.

    Returns:
        The path written.

    Raises:
        ValueError: For maps that are not one per image, and a bad ``out``.
        OSError: For a folder that cannot be written.

    Example:
        >>> import os, tempfile, numpy as np, keras_explain as kx
        >>> from keras_explain.report.spray import spray_page
        >>> rng = np.random.default_rng(0)
        >>> x, maps = rng.random((30, 8, 8, 3)), rng.random((30, 8, 8))
        >>> maps[:10, :2, :2] += 3.0
        >>> result = kx.spray.analyze(maps, size=(8, 8), neighbors=5, embedding="spectral")
        >>> path = spray_page(x, maps, result, os.path.join(tempfile.mkdtemp(), "spray.html"))
        >>> os.path.getsize(path) > 1000
        True
    """
    owner = "spray_page"
    path = _encode.writable(out, owner)
    x, maps = np.asarray(x), np.asarray(maps)
    if len(maps) != len(x):
        raise ValueError(
            f"{owner}: maps must be one per image. Received: {len(x)} images and {len(maps)} maps."
        )
    groups = results if isinstance(results, Mapping) else {0: results}
    names = (
        [str(name) for name in class_names]
        if class_names is not None
        else [str(i) for i in range(max(groups) + 1)]
    )
    shown = sorted({int(i) for result in groups.values() for i in result.indices})
    inputs = _encode.input_uris(x[shown])
    overlays = visualize.to_uint8(visualize.overlay(x[shown], maps[shown]))
    samples = {
        str(index): {"input": uri, "overlay": _encode.png_uri(picture)}
        for index, uri, picture in zip(shown, inputs, overlays)
    }
    data = {
        "version": _encode.version(),
        "method": method,
        "model": model_name,
        "class_names": names,
        "groups": [
            _group(label, result, atlases or {}) for label, result in sorted(groups.items())
        ],
        "samples": samples,
    }
    page = _encode.page(data, title or "SpRAy: strategies across the dataset", stem="_spray")
    encoded = page.encode("utf-8")
    write_atomic(path, lambda handle: handle.write(encoded))
    return path


def _group(label: int, result: Any, atlases: Mapping) -> dict[str, Any]:
    embedding = np.asarray(result.embedding, np.float64)
    ids = [int(c) for c in np.unique(result.clusters) if c >= 0]
    prototypes = np.asarray(result.prototypes)
    clusters = []
    for position, cluster in enumerate(ids):
        prototype = prototypes[position]
        picture = visualize.to_uint8(visualize.heatmap(prototype[None]))[0]
        separation = float(result.separation[position])
        figure = atlases.get((int(label), cluster))
        clusters.append(
            {
                "id": cluster,
                "size": int(result.sizes[position]),
                "separation": None if np.isnan(separation) else round(separation, 4),
                "prototype": _encode.png_uri(picture) if prototype.ndim == 2 else None,
                "atlas": None if figure is None else _figure_uri(figure),
            }
        )
    return {
        "label": int(label),
        "suggested": int(result.suggested),
        "eigenvalues": [round(float(v), 6) for v in result.eigenvalues],
        "points": [
            [round(float(a), 4), round(float(b), 4), int(c), int(i)]
            for (a, b), c, i in zip(embedding, result.clusters, result.indices)
        ],
        "clusters": clusters,
    }


def _figure_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

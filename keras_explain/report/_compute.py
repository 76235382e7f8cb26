"""The numbers of a report: predictions, explanations per top class, metrics and curves."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_explain import visualize
from keras_explain.analyzers.registry import create_analyzer
from keras_explain.benchmark import first_line
from keras_explain.metrics.faithfulness import deletion, insertion
from keras_explain.metrics.registry import metric_values

#: Steps of the deletion and insertion curves (as :func:`keras_explain.metrics.evaluate`).
CURVE_STEPS = 100


def top_classes(scores: np.ndarray, top_k: int) -> np.ndarray:
    """``(B, top_k)`` class indices by decreasing score (ties: lower index first)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :top_k].astype(np.int64)


def explain(
    model, x: np.ndarray, methods: Mapping[str, tuple[str, dict]], classes: np.ndarray, kind: str
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, str], dict[str, Any]]:
    """Run each method for each column of ``classes``; a method that fails is reported.

    Returns:
        ``({label: maps (top_k, B, ...)}, {label: seconds}, {label: reason},
        {label: (analyzer, its attributions of the first column)})``. Image maps
        are ``(B, H, W)`` (channels summed), token and feature maps ``(B, T)``;
        the attributions are as the analyzer returned them (for the metrics).
    """
    maps, seconds, failed, analyzers = {}, {}, {}, {}
    for label, (name, params) in methods.items():
        start = time.perf_counter()
        try:
            analyzer = create_analyzer(name, model, **{"verbose": 0, **params})
            raw = [analyzer.analyze(x, column) for column in classes.T]
            if any(isinstance(relevance, list) for relevance in raw):
                raise ValueError("returned one result per input; a report needs one input")
            raw = [np.asarray(relevance) for relevance in raw]
            per_class = [_reduced(relevance, x, kind) for relevance in raw]
        except Exception as error:  # the page lists the method with the reason
            failed[label] = f"{type(error).__name__}: {first_line(error)}"
            continue
        seconds[label] = time.perf_counter() - start
        maps[label] = np.stack(per_class)
        analyzers[label] = (analyzer, raw[0])
    return maps, seconds, failed, analyzers


def _reduced(relevance: Any, x: np.ndarray, kind: str) -> np.ndarray:
    relevance = relevance.astype(np.float32)
    if kind == "image" and relevance.shape == x.shape:
        relevance = relevance.sum(axis=-1)
    elif kind != "image" and relevance.shape[:2] == x.shape[:2] and relevance.ndim > 2:
        relevance = relevance.reshape(relevance.shape[:2] + (-1,)).sum(axis=-1)
    expected = x.shape[:3] if kind == "image" else x.shape[:2]
    if relevance.shape != expected:
        raise ValueError(f"returned shape {relevance.shape}, expected {expected} for {kind} input")
    if not np.all(np.isfinite(relevance)):
        raise ValueError("returned NaN or Inf values")
    return relevance


def evaluate_methods(
    model,
    x: np.ndarray,
    maps: Mapping[str, np.ndarray],
    analyzers: Mapping[str, Any],
    methods: Mapping[str, tuple[str, dict]],
    target: np.ndarray,
    metrics: list[str],
    masks: np.ndarray | None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Metric rows (means over the samples) and per-sample curves, for the top class.

    Returns:
        ``(rows, {label: {"fractions", "deletion", "insertion"}}, {"label metric": reason})``.
    """
    rows, curves, notes = [], {}, {}
    steps = min(CURVE_STEPS, math.prod(x.shape[1:3] if x.ndim == 4 else x.shape[1:2]))
    for label in maps:
        name, params = methods[label]
        analyzer, attributions = analyzers[label]
        row: dict[str, Any] = {"method": label}
        for metric in metrics:
            try:
                if metric in ("deletion_auc", "insertion_auc"):
                    curve = (deletion if metric == "deletion_auc" else insertion)(
                        model, x, attributions, target, steps=steps
                    )
                    found = curves.setdefault(label, {"fractions": curve.fractions})
                    found[metric.split("_")[0]] = curve.scores
                    values = curve.auc
                else:
                    values = metric_values(
                        metric,
                        model,
                        x,
                        attributions,
                        target,
                        analyzer=analyzer,
                        name=name,
                        params=params,
                        masks=masks,
                        steps=steps,
                        seed=0,
                    )
                row[metric] = float(np.nanmean(values))
            except Exception as error:  # one cell empty, the page says why
                row[metric] = None
                notes[f"{label} {metric}"] = f"{type(error).__name__}: {first_line(error)}"
        rows.append(row)
    return rows, curves, notes


def influential(method: Any, x: np.ndarray, predictions: np.ndarray, k: int) -> dict[str, Any]:
    """Each sample's ``k`` proponents and opponents among ``method``'s training images.

    Args:
        method: A :mod:`keras_explain.influence` method built on training arrays.
        x: The report's samples.
        predictions: ``(B,)`` predicted classes: the labels the test loss is scored
            with (the prediction is what the page explains).
        k: Examples per side.

    Returns:
        ``{"method", "train": {index: {"input", "label"}}, "samples": [{"proponents":
        [[index, score], ...], "opponents": [...]}]}`` for the page.

    Raises:
        TypeError: For anything but a :mod:`keras_explain.influence` method.
        ValueError: For a training set that is not images held as arrays.
    """
    from keras_explain.influence.base import InfluenceMethod
    from keras_explain.influence.engine import top_k
    from keras_explain.report import _encode

    if not isinstance(method, InfluenceMethod):
        raise TypeError(
            "report: influence must be a kx.influence method (TracIn, InfluenceFunction, "
            f"Similarity). Received: {type(method).__name__}."
        )
    training = method.training
    images = getattr(training, "x", None)
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise ValueError(
            "report: influence needs a method built on training images held as an array "
            f"(N, H, W, C), to show them. Received: a {type(method).__name__} on "
            f"{'a tf.data.Dataset' if images is None else f'x of shape {np.shape(images)}'}."
        )
    k = min(int(k), training.size)
    scores = method.influence(x, predictions)  # once: both sides are its extremes
    proponents = top_k(scores, k, True, "report")
    opponents = top_k(scores, k, False, "report")
    shown = np.unique(np.concatenate([proponents[0].ravel(), opponents[0].ravel()]))
    labels = np.asarray(training.y)
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
        labels = labels.argmax(axis=1)
    labels = labels.reshape(len(labels), -1)[:, 0]
    uris = _encode.input_uris(images[shown])
    return {
        "method": type(method).__name__,
        "train": {
            str(int(i)): {"input": uri, "label": int(labels[i])} for i, uri in zip(shown, uris)
        },
        "samples": [
            {
                side: [[int(i), float(score)] for i, score in zip(indices[row], scores[row])]
                for side, (indices, scores) in (
                    ("proponents", proponents),
                    ("opponents", opponents),
                )
            }
            for row in range(len(x))
        ],
    }


def concept_panel(
    crp: Any, x: np.ndarray, predictions: np.ndarray, k: int, references: Any
) -> dict[str, Any]:
    """Each sample's ``k`` most relevant concepts at ``crp``'s layer, for the page.

    Args:
        crp: A :class:`keras_explain.crp.CRP`.
        x: The report's samples (images).
        predictions: ``(B,)`` the classes explained (the predicted ones).
        k: Concepts per sample.
        references: :class:`keras_explain.crp.ReferenceSamples` of the same layer
            (their crops are shown with each concept they hold), or None.

    Returns:
        ``{"layer", "samples": [{"concepts": [{"channel", "share", "overlay",
        "references": [uri, ...]}]}]}``.

    Raises:
        TypeError: For anything but a ``CRP``.
        ValueError: For references of another layer or without crops.
    """
    from keras_explain.crp import CRP
    from keras_explain.report import _encode

    if not isinstance(crp, CRP):
        raise TypeError(f"report: concepts must be a kx.crp.CRP. Received: {type(crp).__name__}.")
    if references is not None and (
        references.layer != crp.layer.name or references.patches is None
    ):
        raise ValueError(
            f"report: references must be the crops (crop=True) of layer {crp.layer.name!r}, the "
            f"concepts' layer. Received: references of layer {references.layer!r}"
            f"{'' if references.patches is not None else ' without crops'}."
        )
    k = min(int(k), crp.channels)
    relevances = crp.concept_relevance(x, target=predictions)
    crops = {}
    if references is not None:
        for row, channel in enumerate(references.channels):
            pixels = visualize.to_uint8(visualize.as_rgb(references.patches[row]))
            crops[int(channel)] = [_encode.png_uri(picture) for picture in pixels]
    samples = []
    for row in range(len(x)):
        top = [int(c) for c in np.argsort(-relevances[row], kind="stable")[:k]]
        heatmaps = crp.conditional(x[row : row + 1], top, target=int(predictions[row]))[0]
        overlays = visualize.to_uint8(
            visualize.overlay(np.repeat(x[row : row + 1], k, 0), heatmaps)
        )
        total = float(np.abs(relevances[row]).sum()) or 1.0
        samples.append(
            {
                "concepts": [
                    {
                        "channel": channel,
                        "share": round(float(relevances[row, channel]) / total, 4),
                        "overlay": _encode.png_uri(overlay),
                        "references": crops.get(channel, []),
                    }
                    for channel, overlay in zip(top, overlays)
                ]
            }
        )
    return {"layer": crp.layer.name, "samples": samples}

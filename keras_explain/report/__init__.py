"""One self-contained HTML page that shows a model's explanations: :func:`report`.

The page inlines everything (pictures as PNG data URIs, the data as JSON, its
own JavaScript and CSS) and forbids network access with a Content Security
Policy, so it opens from disk, by mail or from a model card, offline.
"""

from __future__ import annotations

import datetime
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_explain import _validate, text, visualize
from keras_explain._shards import write_atomic
from keras_explain.metrics import registry
from keras_explain.metrics.table import parse_methods
from keras_explain.report import _compute, _encode

__all__ = ["report"]


def report(
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]],
    model,
    x,
    *,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    targets: int | Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
    masks=None,
    tokens: Sequence[Sequence[str]] | None = None,
    feature_names: Sequence[str] | None = None,
    out: str = "report.html",
    title: str | None = None,
    max_new_tokens: int = 8,
    influence: Any = None,
    influence_k: int = 3,
    concepts: Any = None,
    concepts_k: int = 4,
    references: Any = None,
) -> str:
    """Explain ``x`` with every method and write one offline HTML page to browse the results.

    The page has a gallery of the samples (true and predicted labels); for the
    selected sample, every method side by side (images: overlays with a choice
    of colormap and of signed or absolute view; text: token heatmaps; tabular
    data: signed bar charts); a class selector over the explained classes; the
    metrics table (sortable) and the sample's deletion and insertion curves; a
    header with the model summary, the library version and each method's time.
    Arrow keys move between samples. Methods that fail are listed with the
    reason. The file is written to a temporary name and renamed, so a failure
    leaves no partial page.

    The input kind follows ``x``: ``(B, H, W, C)`` images; ``(B, T)`` integer
    token ids (text, shown with ``tokens``, default the ids); other ``(B, F)``
    arrays are tabular. A KerasHub causal LM (a ``*CausalLM``) with a prompt
    ``x`` (token ids, a dict of its inputs or a string) gets the page of
    :func:`keras_explain.text.generation_page`: the first method generates
    ``max_new_tokens`` tokens greedily and every method explains that same
    generation (``"ablation"`` is a method there too).

    Args:
        methods: Registry names, or a dict ``{name: {parameter: value}}``. The
            method comes first, as in ``create_analyzer(name, model)``; a call in
            the former order ``report(model, x, methods)`` still works, with a
            ``FutureWarning``.
        model: A Keras classifier ``(B, ...) -> (B, classes)``.
        x: The samples (a numpy array).
        labels: True class indices, one per sample (optional).
        class_names: One name per class (default: the indices).
        targets: The classes explained per sample: ``None`` (the top 3 predicted
            classes), an int ``k`` (the top ``k``) or a list of class indices
            (the same classes for every sample).
        metrics: Columns of the metrics table, from
            :data:`keras_explain.metrics.METRICS`, computed for the top class
            (``targets``' first). Default for images: the registered metrics
            marked ``report_default`` (deletion and insertion AUC, sparseness,
            and with ``masks`` pointing game and relevance mass); none for text
            and tabular data; ``[]`` for none. Deletion and insertion also give
            the curves.
        masks: Ground-truth masks ``(B, H, W)`` for the localisation metrics.
        tokens: Token strings per sample, for text models.
        feature_names: Names of the features of tabular data.
        out: The HTML file to write.
        title: The page title (default: ``"Explanations of <model name>"``).
        max_new_tokens: For a causal LM: how many tokens to generate.
        influence: A :mod:`keras_explain.influence` method (``TracIn``,
            ``InfluenceFunction``, ``Similarity``) built on training images held
            as an array: the page shows each sample's ``influence_k`` proponents
            and opponents with their labels and scores, the test loss scored with
            the predicted class.
        influence_k: Proponents and opponents shown per sample.
        concepts: A :class:`keras_explain.crp.CRP`: the page shows each image's
            ``concepts_k`` most relevant concepts (channels of its layer) for the
            predicted class, with their conditional heatmaps (a concept atlas).
        concepts_k: Concepts shown per sample.
        references: :class:`keras_explain.crp.ReferenceSamples` of the same layer
            (``kx.crp.reference_samples`` over the training images): each concept
            shown with its reference crops.

    Returns:
        The absolute path of the written page.

    Raises:
        ValueError: For bad ``x``, ``labels``, ``masks``, ``tokens``,
            ``feature_names``, ``class_names``, ``targets`` or ``metrics``, or
            if every method fails.
        OSError: If the folder of ``out`` does not exist or is not writable
            (checked before any explanation is computed).

    Example:
        >>> import os, tempfile, keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> x = np.random.default_rng(0).random((2, 4, 4, 1), dtype="float32")
        >>> path = kx.report(["gradient"], model, x, metrics=[],
        ...                  out=os.path.join(tempfile.mkdtemp(), "r.html"))
        >>> open(path).read().startswith("<!DOCTYPE html>")
        True
    """
    started = time.perf_counter()
    methods, model, x = _validate.methods_first("report", methods, model, x)
    out = _encode.writable(out, "report")
    if _generates(model):
        return _generation(parse_methods(methods, "report"), model, x, out, title, max_new_tokens)
    x = np.asarray(x)
    kind = _kind(x)
    if kind != "text":
        x = x.astype(np.float32)
    samples = len(x)
    labels = _per_sample(labels, samples, "labels")
    masks = _per_sample(masks, samples, "masks")
    if masks is not None and (kind != "image" or np.shape(masks)[1:] != x.shape[1:3]):
        raise ValueError(
            f"report: masks must be (B, H, W) = {(samples, *x.shape[1:3])} for images. Received: "
            f"masks of shape {np.shape(masks)}; pass masks=None for text or tabular data."
        )
    tokens = _per_sample(tokens, samples, "tokens")
    _check_names(kind, x, tokens, feature_names)
    chosen = parse_methods(methods, "report")
    scores = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(
            "report: the model must output class scores (B, classes). Received: outputs of shape "
            f"{scores.shape}."
        )
    count = scores.shape[1]
    names = _class_names(class_names, count)
    classes = _classes(targets, scores, count)
    metrics = _metrics(metrics, masks, kind)

    maps, seconds, failed, analyzers = _compute.explain(model, x, chosen, classes, kind)
    if not maps:
        reasons = "; ".join(f"{name}: {why}" for name, why in failed.items())
        raise ValueError(f"report: every method failed on this model, no page written. {reasons}")
    explained = time.perf_counter()
    target = classes[:, 0]
    rows, curves, notes = _compute.evaluate_methods(
        model, x, maps, analyzers, chosen, target, metrics, masks
    )
    evaluated = time.perf_counter()
    predicted = scores.argmax(axis=1)
    influential = atlas = None
    if influence is not None:
        k = _panel_size(kind, influence_k, "influence", "shows training images", influence)
        influential = _compute.influential(influence, x, predicted, k)
    if concepts is not None:
        shows = "shows conditional heatmaps of images"
        k = _panel_size(kind, concepts_k, "concepts", shows, concepts)
        atlas = _compute.concept_panel(concepts, x, predicted, k, references)

    data = {
        "kind": kind,
        "model": _model_summary(model),
        "version": _encode.version(),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "class_names": names,
        "methods": [{"name": name, "seconds": seconds[name]} for name in maps],
        "failed": [{"name": name, "reason": reason} for name, reason in failed.items()],
        "samples": _samples(x, kind, labels, scores, classes),
        "explanations": _explanations(maps, x, kind, tokens, feature_names),
        "colormaps": _encode.colour_tables() if kind == "image" else {},
        "metrics": {
            "columns": metrics,
            "better": {metric: registry.get_metric(metric).better for metric in metrics},
            "rows": [{key: _number(value) for key, value in row.items()} for row in rows],
            "notes": notes,
        },
        "influence": influential,
        "concepts": atlas,
        "curves": {
            label: {key: np.round(value, 4).tolist() for key, value in curve.items()}
            for label, curve in curves.items()
        },
    }
    encoded = time.perf_counter()
    data["timings"] = {
        "explanations": explained - started,
        "metrics": evaluated - explained,  # with the influence and concept panels, if any
        "encoding": encoded - evaluated,
    }
    title = title or f"Explanations of {data['model']['name']}"
    text = _encode.page(data, title).encode("utf-8")
    write_atomic(out, lambda handle: handle.write(text))
    return out


def _generates(model) -> bool:
    """Whether ``model`` is a KerasHub causal LM (its class or a base is a ``*CausalLM``)."""
    return any(cls.__name__.endswith("CausalLM") for cls in type(model).__mro__)


def _generation(chosen: dict, model, prompt, out: str, title: str | None, new: int) -> str:
    """The page of a causal LM: every method explains the first method's generation."""
    generations, failed, continuation = {}, {}, None
    for label, (name, params) in chosen.items():
        try:
            generation = text.explain_generation(
                model,
                prompt,
                max_new_tokens=new,
                method=name,
                continuation=continuation,
                **params,
            )
        except (ValueError, TypeError) as error:
            failed[label] = f"{type(error).__name__}: {error}"
            continue
        continuation = generation.generated
        generations[label] = generation
    reasons = "; ".join(f"{name}: {why}" for name, why in failed.items())
    if not generations:
        raise ValueError(f"report: every method failed on this model, no page written. {reasons}")
    if failed:
        warnings.warn(f"report: methods left out of the page: {reasons}", stacklevel=3)
    title = title or f"Explained generation of {model.name}"
    return os.path.abspath(text.generation_page(generations, out, title=title))


def _panel_size(kind: str, k: Any, name: str, shows: str, given: Any) -> int:
    """``k`` of the ``name`` panel, which only images have.

    Raises:
        ValueError: For data that are not images, or ``k`` not a positive int.
    """
    if kind != "image":
        raise ValueError(
            f"report: {name} {shows}; x holds {kind} data. Received: {name}={type(given).__name__}."
        )
    try:
        return _validate.positive_int(k, f"{name}_k")
    except ValueError as error:
        raise ValueError(f"report: {error}") from None


def _kind(x: np.ndarray) -> str:
    if x.ndim == 4:
        return "image"
    if x.ndim == 2:
        return "text" if np.issubdtype(x.dtype, np.integer) else "tabular"
    raise ValueError(
        "report: x must be images (B, H, W, C), token ids (B, T) or tabular rows (B, F). "
        f"Received: x of shape {x.shape}."
    )


def _per_sample(values, samples: int, name: str):
    if values is None:
        return None
    if len(values) != samples:
        raise ValueError(
            f"report: {name} must have one entry per sample of x ({samples}). Received: "
            f"{len(values)} {name}; pass {samples} or None."
        )
    return values if name == "tokens" else np.asarray(values)


def _check_names(kind: str, x: np.ndarray, tokens, feature_names) -> None:
    if tokens is not None:
        lengths = sorted({len(row) for row in tokens} - {x.shape[1]})
        if kind != "text" or lengths:
            raise ValueError(
                f"report: tokens must be {x.shape[1]} strings per sample of token ids x (B, T). "
                f"Received: rows of {lengths or 'matching'} tokens for x of shape {x.shape} "
                f"({kind} data); pass tokens only with integer token ids."
            )
    if feature_names is not None and (kind != "tabular" or len(feature_names) != x.shape[1]):
        raise ValueError(
            f"report: feature_names must name the {x.shape[-1]} features of tabular x (B, F). "
            f"Received: {len(feature_names)} names for x of shape {x.shape} ({kind} data)."
        )


def _class_names(class_names, count: int) -> list[str]:
    if class_names is None:
        return [str(index) for index in range(count)]
    if len(class_names) != count:
        raise ValueError(
            f"report: class_names must name the model's {count} classes. Received: "
            f"{len(class_names)} names; pass {count} names or None."
        )
    return [str(name) for name in class_names]


def _classes(targets, scores: np.ndarray, count: int) -> np.ndarray:
    if targets is None or (isinstance(targets, int | np.integer) and not isinstance(targets, bool)):
        top_k = 3 if targets is None else int(targets)
        if top_k < 1:
            raise ValueError(
                f"report: targets=k asks for the top k classes, k >= 1. Received: targets={top_k}."
            )
        return _compute.top_classes(scores, min(top_k, count))
    chosen = np.asarray(targets)
    if chosen.ndim != 1 or not chosen.size or not np.issubdtype(chosen.dtype, np.integer):
        chosen = None
    if chosen is None or chosen.min() < 0 or chosen.max() >= count:
        raise ValueError(
            "report: targets must be None (top 3 classes), an int k (top k) or a list of class "
            f"indices in [0, {count}). Received: targets={targets!r}."
        )
    return np.tile(chosen.astype(np.int64), (len(scores), 1))


def _metrics(metrics, masks, kind: str) -> list[str]:
    if metrics is None:
        return (
            registry.default_metrics(masks=masks is not None, report=True)
            if kind == "image"
            else []
        )
    return registry.check_metrics(metrics, masks=masks is not None, caller="report")


def _model_summary(model) -> dict[str, Any]:
    return {
        "name": str(getattr(model, "name", type(model).__name__)),
        "parameters": int(model.count_params()),
        "input_shape": str(model.input_shape),
        "output_shape": str(model.output_shape),
    }


def _samples(x, kind, labels, scores, classes) -> list[dict[str, Any]]:
    inputs = _encode.input_uris(x) if kind == "image" else [None] * len(x)
    return [
        {
            "label": None if labels is None else int(labels[index]),
            "prediction": int(np.argmax(scores[index])),
            "classes": classes[index].tolist(),
            "scores": [_number(scores[index, c]) for c in classes[index]],
            "input": inputs[index],
        }
        for index in range(len(x))
    ]


def _explanations(maps, x, kind, tokens, feature_names) -> dict[str, list[list[str]]]:
    """``{method: [[one PNG URI, token HTML or bar SVG per class] per sample]}``."""
    result = {}
    for label, stack in maps.items():
        per_class = stack.transpose(1, 0, *range(2, stack.ndim))  # (B, top_k, ...)
        if kind == "image":
            pixels = _encode.quantize(per_class)
            result[label] = [[_encode.png_uri(m) for m in sample] for sample in pixels]
        elif kind == "text":
            words = tokens if tokens is not None else [[str(i) for i in row] for row in x]
            result[label] = [
                [visualize.text_heatmap(words[index], m) for m in sample]
                for index, sample in enumerate(per_class)
            ]
        else:
            names = feature_names or [f"x{i}" for i in range(x.shape[1])]
            scale = float(np.abs(stack).max())  # one axis per method, as plot_features
            result[label] = [
                [_encode.bars_svg(m.tolist(), names, scale) for m in sample] for sample in per_class
            ]
    return result


def _number(value):
    if value is None or isinstance(value, str):
        return value
    value = float(value)
    return value if math.isfinite(value) else None

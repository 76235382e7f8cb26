"""Token attributions: HTML heatmaps (text_heatmap), Figures (plot_text), id-to-word."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_explain.visualize import _checks
from keras_explain.visualize.maps import ColormapLike, colormap


def token_strings(ids: Any, vocabulary: Sequence[str] | None = None) -> list[str]:
    """Words for token ids: ``vocabulary[id]``, or the id itself without a vocabulary.

    Args:
        ids: A sequence of int token ids (one sample).
        vocabulary: The words by id, e.g. ``TextVectorization.get_vocabulary()``
            or ``StringLookup.get_vocabulary()``; None shows the ids.

    Returns:
        A list of strings, one per id.

    Raises:
        ValueError: For an id outside ``vocabulary``.

    Example:
        >>> from keras_explain import visualize
        >>> visualize.token_strings([2, 1, 0], ["", "[UNK]", "good"])
        ['good', '[UNK]', '']
        >>> visualize.token_strings([5, 7])
        ['5', '7']
    """
    values = [int(i) for i in np.asarray(ids).reshape(-1)]
    if vocabulary is None:
        return [str(i) for i in values]
    words = list(vocabulary)
    bad = [i for i in values if not 0 <= i < len(words)]
    if bad:
        raise ValueError(
            f"token_strings: token id {bad[0]} is outside the vocabulary of {len(words)} "
            f"words. Received: ids from {min(values)} to {max(values)}. Pass the vocabulary "
            "the model's ids come from (e.g. TextVectorization.get_vocabulary())."
        )
    return [words[i] for i in values]


def _token_positions(scores: np.ndarray, signed: bool) -> np.ndarray:
    """Colormap positions: signed ``0.5 + 0.5 s / max|s|``, else ``s / max s`` (0 if all 0)."""
    peak = float(np.max(np.abs(scores))) if scores.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        return np.full(scores.shape, 0.5 if signed else 0.0)
    if signed:
        return 0.5 + 0.5 * scores / peak
    return np.clip(scores, 0.0, None) / peak


def _text_rows(tokens: Any, scores: Any, function: str) -> list[tuple[list[str], np.ndarray]]:
    """``(tokens, scores)`` as rows: one sample, or a batch (list of token lists, (B, T))."""
    values = np.asarray(scores, dtype=np.float64)
    items = list(tokens)
    batched = values.ndim == 2
    rows = list(zip(items, values)) if batched else [(items, values)]
    if values.ndim not in (1, 2) or (batched and len(items) != len(values)):
        raise ValueError(
            f"{function} needs scores shaped (T,) for one sample or (B, T) with B token lists. "
            f"Received: scores of shape {values.shape} for {len(items)} token entries."
        )
    result = []
    for words, row in rows:
        words = [str(word) for word in words]
        if len(words) != len(row):
            raise ValueError(
                f"{function} needs one score per token. Received: {len(words)} tokens and "
                f"{len(row)} scores. Drop the padding from both, or pass the padded tokens."
            )
        if not np.isfinite(row).all():
            raise ValueError(f"{function}: scores contain NaN or Inf. Received: {row.tolist()}.")
        result.append((words, row))
    return result


def text_heatmap(
    tokens: Any,
    scores: Any,
    *,
    cmap: ColormapLike = "bwr",
    signed: bool = True,
) -> str:
    """Token attributions as HTML: each token on a background coloured by its score.

    Colours are scaled per sample: with ``signed=True`` a score ``s`` sits at
    ``0.5 + 0.5 s / max|s|`` of the colormap, so the token of largest ``|s|``
    gets one end of the colormap exactly and 0 its centre (white in ``"bwr"``:
    red for evidence for the target, blue against); with ``signed=False`` at
    ``s / max s`` (negative scores clipped to 0), for colormaps such as
    ``"Reds"``. Tokens are escaped with :func:`html.escape`; each span's
    ``title`` holds the score (shown on hover). Show it in a notebook with
    ``IPython.display.HTML``.

    Args:
        tokens: The words of one sample (strings or ids), or a list of such
            lists for several samples (one line each).
        scores: ``(T,)`` for one sample, ``(B, T)`` for several.
        cmap: A matplotlib colormap name or callable (see :func:`colormap`).
        signed: Diverging scale around 0 (default) or ``[0, max]``.

    Returns:
        An HTML string: a ``<div>`` per sample of ``<span>`` tokens.

    Raises:
        ValueError: For a different number of tokens and scores, non-finite
            scores, or an unknown colormap.

    Example:
        >>> from keras_explain import visualize
        >>> html = visualize.text_heatmap(["not", "<b>good</b>"], [-1.0, 0.5])
        >>> html.count("<span"), "&lt;b&gt;good&lt;/b&gt;" in html
        (2, True)
    """
    import html as html_module

    from matplotlib.colors import to_hex

    lines = []
    for words, row in _text_rows(tokens, scores, "text_heatmap"):
        colours = colormap(_token_positions(row, signed), cmap)
        spans = []
        for word, score, colour in zip(words, row, colours):
            ink = "#000000" if _luminance(colour) > 0.45 else "#ffffff"
            spans.append(
                f'<span class="kx-token" title="{score:.4g}" '
                f'style="background-color: {to_hex(colour)}; '
                f'color: {ink}; padding: 1px 3px; margin: 1px; border-radius: 3px">'
                f"{html_module.escape(word)}</span>"
            )
        lines.append('<div class="kx-text" style="line-height: 1.9">' + " ".join(spans) + "</div>")
    return "\n".join(lines)


def _luminance(rgb: np.ndarray) -> float:
    """Relative luminance (ITU-R BT.709 weights) of an RGB colour in [0, 1]."""
    return float(np.dot(rgb[:3], [0.2126, 0.7152, 0.0722]))


def plot_text(
    tokens: Any,
    scores: Any,
    *,
    cmap: ColormapLike = "bwr",
    signed: bool = True,
    width: int = 60,
    labels: Sequence[str] | None = None,
):
    """Token attributions as a matplotlib Figure (the variant of :func:`text_heatmap`).

    The same colours as :func:`text_heatmap`; tokens are set in a monospace
    font, left to right, wrapped at ``width`` characters; one block per sample.

    Args:
        tokens: The words of one sample, or a list of such lists.
        scores: ``(T,)`` or ``(B, T)``.
        cmap: A matplotlib colormap name or callable.
        signed: Diverging scale around 0 (default) or ``[0, max]``.
        width: Characters per line before wrapping.
        labels: Optional titles, one per sample.

    Returns:
        A ``matplotlib.figure.Figure`` with one axis per sample; each token is
        an entry of ``ax.texts`` whose ``get_bbox_patch().get_facecolor()`` is
        its colour.

    Raises:
        ValueError: As :func:`text_heatmap`, or ``labels`` of the wrong length.

    Example:
        >>> from keras_explain import visualize
        >>> fig = visualize.plot_text(["not", "good"], [-1.0, 0.5])
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['not', 'good']
    """
    from matplotlib.figure import Figure

    rows = _text_rows(tokens, scores, "plot_text")
    if labels is not None:
        _checks.labels(labels, len(rows))
    layouts = [_wrap_tokens(words, width) for words, _ in rows]
    heights = [max(1, lines) * 0.32 + (0.3 if labels is not None else 0.1) for _, lines in layouts]
    figure = Figure(figsize=(0.11 * width + 0.4, sum(heights)))
    axes = figure.subplots(len(rows), 1, squeeze=False, height_ratios=heights)[:, 0]
    for index, (ax, (words, row), (places, lines)) in enumerate(zip(axes, rows, layouts)):
        colours = colormap(_token_positions(row, signed), cmap)
        ax.set_xlim(0, width)
        ax.set_ylim(max(1, lines), 0)
        ax.axis("off")
        for word, colour, (column, line) in zip(words, colours, places):
            ink = "black" if _luminance(colour) > 0.45 else "white"
            ax.text(
                column,
                line + 0.5,
                word,
                family="monospace",
                va="center",
                color=ink,
                bbox={"facecolor": tuple(colour), "edgecolor": "none", "pad": 1.5},
            )
        if labels is not None:
            ax.set_title(labels[index], fontsize=9, loc="left")
    return figure


def _wrap_tokens(words: Sequence[str], width: int) -> tuple[list[tuple[int, int]], int]:
    """``(column, line)`` of each word, wrapping at ``width`` characters; and the line count."""
    places, column, line = [], 0, 0
    for word in words:
        if column and column + len(word) > width:
            column, line = 0, line + 1
        places.append((column, line))
        column += len(word) + 1
    return places, line + 1

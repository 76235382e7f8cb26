"""Turn relevance into pictures: heatmaps, graymaps, overlays and figure grids.

Everything here is numpy plus matplotlib's colormaps (which need no display),
so it runs in a training callback or on a headless server; only
:func:`plot_explanations` (images), :func:`plot_features` (tabular data: signed
bar charts), :func:`plot_sequences` (1-D sequences: heat strips) and
:func:`plot_text` (tokens), :func:`plot_examples` (influential training
images) and :func:`plot_concept_atlas` (CRP's concepts) build a matplotlib
Figure; :func:`text_heatmap` returns HTML for token attributions.

Shapes: the first axis is the batch axis. Relevance of an image batch is
``(B, H, W, C)`` (channels last, as Keras' default) and is reduced over the
channel axis; CAM-family maps are already ``(B, H, W)``. A single map
``(H, W)`` is accepted too. Pictures come back as float32 RGB in ``[0, 1]``,
shaped ``(B, H, W, 3)`` (or ``(H, W, 3)``).

Normalization: relevance is scaled per sample by a high percentile of its
magnitude (default 99.5), so that one extreme pixel does not wash out the
rest, then clipped. Signed relevance is scaled symmetrically to ``[-1, 1]``
(zero stays zero, drawn white by the default diverging colormap: red for
positive, blue for negative evidence); non-negative relevance to ``[0, 1]``.
"""

from keras_explain.visualize.concepts import plot_concept_atlas
from keras_explain.visualize.examples import plot_examples
from keras_explain.visualize.figures import plot_explanations, plot_features, plot_sequences
from keras_explain.visualize.maps import (
    REDUCTIONS,
    ColormapLike,
    as_rgb,
    colormap,
    graymap,
    heatmap,
    normalize,
    overlay,
    reduce_channels,
    to_uint8,
)
from keras_explain.visualize.text import plot_text, text_heatmap, token_strings

__all__ = [
    "REDUCTIONS",
    "ColormapLike",
    "as_rgb",
    "colormap",
    "graymap",
    "heatmap",
    "normalize",
    "overlay",
    "plot_concept_atlas",
    "plot_examples",
    "plot_explanations",
    "plot_features",
    "plot_sequences",
    "plot_text",
    "reduce_channels",
    "text_heatmap",
    "to_uint8",
    "token_strings",
]

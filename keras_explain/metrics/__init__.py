"""``kx.metrics``: is an explanation right?

Faithfulness (:func:`deletion`, :func:`insertion`, :func:`pixel_flipping`,
:func:`faithfulness_correlation`, :func:`infidelity`, :func:`completeness`),
robustness (:func:`sensitivity_max`), the randomization sanity check
(:func:`randomization`, :func:`similarity`), localisation against ground-truth
masks (:func:`pointing_game`, :func:`relevance_mass`, :func:`relevance_rank`) and
complexity (:func:`sparseness`). Each returns one value per sample, ``(B,)``,
unless it returns a :class:`Curve`; :func:`evaluate` tabulates them for many
methods.
"""

from keras_explain.metrics.engine import Curve
from keras_explain.metrics.faithfulness import (
    completeness,
    deletion,
    faithfulness_correlation,
    infidelity,
    insertion,
    pixel_flipping,
)
from keras_explain.metrics.localisation import (
    pointing_game,
    relevance_mass,
    relevance_rank,
    sparseness,
)
from keras_explain.metrics.randomization import randomization, similarity
from keras_explain.metrics.robustness import sensitivity_max
from keras_explain.metrics.table import METRICS, evaluate

__all__ = [
    "METRICS",
    "Curve",
    "evaluate",
    "completeness",
    "deletion",
    "faithfulness_correlation",
    "infidelity",
    "insertion",
    "pixel_flipping",
    "pointing_game",
    "randomization",
    "relevance_mass",
    "relevance_rank",
    "sensitivity_max",
    "similarity",
    "sparseness",
]

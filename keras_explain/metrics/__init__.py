"""``kx.metrics``: is an explanation right?

Faithfulness (:func:`deletion`, :func:`insertion`, :func:`pixel_flipping`,
:func:`faithfulness_correlation`, :func:`infidelity`, :func:`completeness`),
robustness (:func:`sensitivity_max`), the randomization sanity check
(:func:`randomization`, :func:`similarity`), localisation against ground-truth
masks (:func:`pointing_game`, :func:`relevance_mass`, :func:`relevance_rank`) and
complexity (:func:`sparseness`). Each returns one value per sample, ``(B,)``,
unless it returns a :class:`Curve`; :func:`evaluate` tabulates them for many
methods. Its columns are the metrics of :mod:`keras_explain.metrics.registry`:
``METRICS`` is their names, in order, read from the registry whenever it is
accessed, and :func:`register_metric` adds one.
"""

from keras_explain.metrics import registry  # first: the families below register into it
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
from keras_explain.metrics.registry import register_metric
from keras_explain.metrics.robustness import sensitivity_max
from keras_explain.metrics.sanity import randomization, similarity
from keras_explain.metrics.table import evaluate

__all__ = [
    "METRICS",
    "Curve",
    "evaluate",
    "register_metric",
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


def __getattr__(name: str):
    """``METRICS``: the registered column names, in order (a tuple, always current)."""
    if name == "METRICS":
        return registry.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "METRICS"])

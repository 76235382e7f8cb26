"""``kx.metrics``: is an explanation right?

Every metric returns one value per sample, ``(B,)``, unless it returns a curve;
:func:`evaluate` tabulates them for many methods, and :func:`meta_evaluate` asks
which metric to trust (MetaQuantus). The families, after Quantus' catalogue:

- faithfulness: :func:`deletion`, :func:`insertion`, :func:`pixel_flipping`,
  :func:`faithfulness_correlation`, :func:`infidelity`, :func:`faithfulness_estimate`,
  :func:`monotonicity`, :func:`monotonicity_correlation`, :func:`sensitivity_n`,
  :func:`irof`, :func:`road`, :func:`sufficiency`;
- robustness: :func:`sensitivity_max`, :func:`avg_sensitivity`,
  :func:`local_lipschitz_estimate`, :func:`continuity`, :func:`consistency`,
  :func:`relative_input_stability`, :func:`relative_output_stability`,
  :func:`relative_representation_stability`;
- localisation against ground-truth masks: :func:`pointing_game`,
  :func:`relevance_mass`, :func:`relevance_rank`, :func:`top_k_intersection`,
  :func:`attribution_localisation`, :func:`localisation_auc`, :func:`focus`;
- complexity: :func:`sparseness`, :func:`complexity`, :func:`effective_complexity`;
- randomisation: :func:`randomization` (MPRT), :func:`smooth_mprt`,
  :func:`efficient_mprt`, :func:`random_logit`, :func:`similarity`;
- axiomatic: :func:`completeness`, :func:`non_sensitivity`, :func:`input_invariance`.

The columns of :func:`evaluate` are the metrics of
:mod:`keras_explain.metrics.registry`: ``METRICS`` is their names, in order, read
from the registry whenever it is accessed, and :func:`register_metric` adds one.
Each family's module registers its own columns when it is imported; the imports
below fix their order: the default columns first, then the others by family.
"""

# Each family's module registers its columns when it is imported: these imports fix
# the column order (the first release's families first, then the others by family).
# isort: off
from keras_explain.metrics import registry
from keras_explain.metrics import faithfulness, localisation, robustness, sanity  # noqa: F401
from keras_explain.metrics import feature_removal, region_removal  # noqa: F401
from keras_explain.metrics import stability, explanation_neighbours  # noqa: F401
from keras_explain.metrics import compactness, model_randomization, axiomatic  # noqa: F401

# isort: on
from keras_explain.metrics.axiomatic import input_invariance, non_sensitivity
from keras_explain.metrics.compactness import complexity, effective_complexity
from keras_explain.metrics.engine import Curve
from keras_explain.metrics.explanation_neighbours import consistency, sufficiency
from keras_explain.metrics.faithfulness import (
    completeness,
    deletion,
    faithfulness_correlation,
    infidelity,
    insertion,
    pixel_flipping,
)
from keras_explain.metrics.feature_removal import (
    CorrelationCurve,
    faithfulness_estimate,
    monotonicity,
    monotonicity_correlation,
    sensitivity_n,
)
from keras_explain.metrics.localisation import (
    attribution_localisation,
    focus,
    localisation_auc,
    pointing_game,
    relevance_mass,
    relevance_rank,
    sparseness,
    top_k_intersection,
)
from keras_explain.metrics.meta import MetaEvaluation, meta_evaluate
from keras_explain.metrics.model_randomization import (
    efficient_mprt,
    random_logit,
    smooth_mprt,
)
from keras_explain.metrics.region_removal import irof, noisy_linear_imputation, road
from keras_explain.metrics.registry import register_metric
from keras_explain.metrics.robustness import sensitivity_max
from keras_explain.metrics.sanity import randomization, similarity
from keras_explain.metrics.stability import (
    avg_sensitivity,
    continuity,
    local_lipschitz_estimate,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
)
from keras_explain.metrics.table import evaluate

__all__ = [
    "METRICS",
    "Curve",
    "evaluate",
    "MetaEvaluation",
    "meta_evaluate",
    "efficient_mprt",
    "input_invariance",
    "non_sensitivity",
    "random_logit",
    "smooth_mprt",
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
    "avg_sensitivity",
    "continuity",
    "local_lipschitz_estimate",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "consistency",
    "sufficiency",
    "irof",
    "noisy_linear_imputation",
    "road",
    "sensitivity_max",
    "similarity",
    "sparseness",
    "attribution_localisation",
    "complexity",
    "effective_complexity",
    "focus",
    "localisation_auc",
    "top_k_intersection",
    "CorrelationCurve",
    "faithfulness_estimate",
    "monotonicity",
    "monotonicity_correlation",
    "sensitivity_n",
]


def __getattr__(name: str):
    """``METRICS``: the registered column names, in order (a tuple, always current)."""
    if name == "METRICS":
        return registry.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "METRICS"])

"""Model-agnostic methods: explanations from evaluating the model on perturbed inputs.

One file per method, all on the batched evaluator of
:mod:`~keras_explain.analyzers.perturbation.engine`; superpixels in
:mod:`~keras_explain.analyzers.perturbation.segmentation`.
"""

from keras_explain.analyzers.perturbation.engine import Perturbation
from keras_explain.analyzers.perturbation.feature_ablation import (
    FeatureAblation,
    FeaturePermutation,
)
from keras_explain.analyzers.perturbation.kernel_shap import KernelShap
from keras_explain.analyzers.perturbation.lime import Lime
from keras_explain.analyzers.perturbation.meaningful import MeaningfulPerturbation
from keras_explain.analyzers.perturbation.occlusion import Occlusion
from keras_explain.analyzers.perturbation.rise import RISE
from keras_explain.analyzers.perturbation.shapley import ShapleySampling

__all__ = [
    "RISE",
    "FeatureAblation",
    "FeaturePermutation",
    "KernelShap",
    "Lime",
    "MeaningfulPerturbation",
    "Occlusion",
    "Perturbation",
    "ShapleySampling",
]

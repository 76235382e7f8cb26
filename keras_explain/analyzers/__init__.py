"""Analyzers and their registry; importing this package registers every method."""

from keras_explain.analyzers import (  # noqa: F401  (importing registers the names)
    agnostic,
    cam,
    gradient,
    noise,
    perturbation,
    relevance,
)
from keras_explain.analyzers.agnostic import KernelShap, Lime
from keras_explain.analyzers.base import Analyzer
from keras_explain.analyzers.cam import (
    CAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    LayerCAM,
    ScoreCAM,
)
from keras_explain.analyzers.gradient import (
    Backpropagation,
    Deconvnet,
    Gradient,
    GuidedBackprop,
    InputTimesGradient,
)
from keras_explain.analyzers.noise import (
    IntegratedGradients,
    SmoothGrad,
    SquareGrad,
    VarGrad,
    quadrature,
)
from keras_explain.analyzers.perturbation import (
    RISE,
    MeaningfulPerturbation,
    Occlusion,
    ShapleySampling,
)
from keras_explain.analyzers.registry import create_analyzer, names, register

__all__ = [
    "CAM",
    "RISE",
    "KernelShap",
    "Lime",
    "MeaningfulPerturbation",
    "Occlusion",
    "ShapleySampling",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedGradCAM",
    "LayerCAM",
    "ScoreCAM",
    "Analyzer",
    "Backpropagation",
    "Deconvnet",
    "Gradient",
    "GuidedBackprop",
    "InputTimesGradient",
    "IntegratedGradients",
    "SmoothGrad",
    "SquareGrad",
    "VarGrad",
    "create_analyzer",
    "names",
    "quadrature",
    "register",
]

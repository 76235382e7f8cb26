"""Analyzers and their registry; importing this package registers every method."""

from keras_explain.analyzers import (  # noqa: F401  (importing registers the names)
    cam,
    deeplift,
    gradient,
    gradient_wrappers,
    layer_paths,
    perturbation,
    relevance,
    wrappers,
)
from keras_explain.analyzers import relevance as _relevance
from keras_explain.analyzers.backprop import Backpropagation
from keras_explain.analyzers.base import Analyzer
from keras_explain.analyzers.cam import (
    CAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    LayerCAM,
    ScoreCAM,
)
from keras_explain.analyzers.deeplift import DeepLift, DeepLiftShap
from keras_explain.analyzers.gradient import (
    Deconvnet,
    Gradient,
    GuidedBackprop,
    InputTimesGradient,
)
from keras_explain.analyzers.gradient_wrappers import (
    GradientShap,
    IntegratedGradients,
    SmoothGrad,
    SquareGrad,
    VarGrad,
)
from keras_explain.analyzers.layer_paths import (
    InternalInfluence,
    LayerConductance,
    NeuronConductance,
)
from keras_explain.analyzers.perturbation import (
    RISE,
    FeatureAblation,
    FeaturePermutation,
    KernelShap,
    Lime,
    MeaningfulPerturbation,
    Occlusion,
    ShapleySampling,
)
from keras_explain.analyzers.registry import create_analyzer, names, register
from keras_explain.analyzers.relevance import LRP
from keras_explain.analyzers.wrappers import NoiseTunnel, PathIntegral, quadrature

__all__ = [
    "DeepLift",
    "DeepLiftShap",
    "GradientShap",
    "LRP",
    "CAM",
    "RISE",
    "FeatureAblation",
    "FeaturePermutation",
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
    "InternalInfluence",
    "LayerConductance",
    "NeuronConductance",
    "NoiseTunnel",
    "PathIntegral",
    "SmoothGrad",
    "SquareGrad",
    "VarGrad",
    "create_analyzer",
    "names",
    "quadrature",
    "register",
]


def __getattr__(name: str):
    """The LRP presets' classes of earlier releases (``LRPEpsilon``, ``DeepTaylor``, ...).

    Importable, outside ``__all__``: ``kx.LRP(model, preset)`` and the registry names
    ``"lrp.<preset>"`` are the one way.
    """
    if name in _relevance.ALIASES:
        return getattr(_relevance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

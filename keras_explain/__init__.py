"""keras_explain: explain the predictions of Keras 3 models on TensorFlow.

Example:
    >>> import keras_explain as kx
    >>> sorted(kx.analyzers.names())[:2]
    ['deconvnet', 'gradient']
"""

from keras_explain import analyzers, targets
from keras_explain.analyzers import (
    CAM,
    RISE,
    KernelShap,
    Lime,
    MeaningfulPerturbation,
    Occlusion,
    ShapleySampling,
    Analyzer,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    LayerCAM,
    ScoreCAM,
    Deconvnet,
    Gradient,
    GuidedBackprop,
    InputTimesGradient,
    IntegratedGradients,
    SmoothGrad,
    SquareGrad,
    VarGrad,
    create_analyzer,
)

__version__ = "0.1.0"

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
    "Deconvnet",
    "Gradient",
    "GuidedBackprop",
    "InputTimesGradient",
    "IntegratedGradients",
    "SmoothGrad",
    "SquareGrad",
    "VarGrad",
    "analyzers",
    "create_analyzer",
    "targets",
]

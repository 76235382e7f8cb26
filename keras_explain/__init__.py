"""keras_explain: explain the predictions of Keras 3 models on TensorFlow.

Example:
    >>> import keras_explain as kx
    >>> sorted(kx.analyzers.names())[:2]
    ['deconvnet', 'gradient']
"""

from keras_explain import analyzers, targets
from keras_explain.analyzers import (
    Analyzer,
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

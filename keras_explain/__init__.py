"""keras_explain: explain the predictions of Keras 3 models on TensorFlow.

Example:
    >>> import keras_explain as kx
    >>> "lrp.epsilon" in kx.analyzers.names()
    True
"""

from keras_explain import (
    analyzers,
    callbacks,
    concepts,
    config,
    crp,
    datasets,
    distributed,
    features,
    graph,
    influence,
    lrp,
    metrics,
    random,
    ray,
    representations,
    robust,
    spray,
    streaming,
    targets,
    text,
    visualize,
)
from keras_explain.analyzers import (
    CAM,
    LRP,
    RISE,
    Analyzer,
    Deconvnet,
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    FeaturePermutation,
    GradCAM,
    GradCAMPlusPlus,
    Gradient,
    GradientShap,
    GuidedBackprop,
    GuidedGradCAM,
    InputTimesGradient,
    IntegratedGradients,
    InternalInfluence,
    KernelShap,
    LayerCAM,
    LayerConductance,
    Lime,
    MeaningfulPerturbation,
    NeuronConductance,
    NoiseTunnel,
    Occlusion,
    PathIntegral,
    ScoreCAM,
    ShapleySampling,
    SmoothGrad,
    SquareGrad,
    VarGrad,
    create_analyzer,
)
from keras_explain.analyzers import relevance as _relevance
from keras_explain.analyzers.layer_output import activations
from keras_explain.callbacks import EmbeddingLogger, ExplanationLogger
from keras_explain.lrp import canonizers, composites, rules
from keras_explain.report import report
from keras_explain.streaming import explain_dataset, load_explanations

__version__ = "0.1.0"

__all__ = [
    "report",
    "EmbeddingLogger",
    "ExplanationLogger",
    "activations",
    "representations",
    "concepts",
    "features",
    "callbacks",
    "visualize",
    "LRP",
    "canonizers",
    "config",
    "datasets",
    "graph",
    "crp",
    "influence",
    "lrp",
    "metrics",
    "composites",
    "rules",
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
    "Deconvnet",
    "DeepLift",
    "DeepLiftShap",
    "Gradient",
    "GradientShap",
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
    "analyzers",
    "create_analyzer",
    "targets",
    "streaming",
    "distributed",
    "explain_dataset",
    "load_explanations",
    "ray",
    "random",
    "robust",
    "spray",
    "text",
]


def __getattr__(name: str):
    """The LRP presets' classes of earlier releases (``LRPEpsilon``, ``DeepTaylor``, ...).

    Importable, outside ``__all__``: ``kx.LRP(model, preset)`` and the registry names
    ``"lrp.<preset>"`` are the one way.
    """
    if name in _relevance.ALIASES:
        return getattr(_relevance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

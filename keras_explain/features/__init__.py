"""kx.features: what does a unit detect?

- :func:`maximize`: images that maximize objectives (:func:`neuron`,
  :func:`channel`, :func:`logit`, :func:`direction`, combined with ``+``, ``-``
  and ``* float``), with the :class:`Fourier` or :class:`Pixel`
  parameterization, random :class:`Transforms` and regularizers
  (:func:`total_variation`, :func:`lp`, :func:`l1`, :func:`l2`, :func:`norm`),
  any Keras optimizer, several inputs and a per-step callback; Olah et al.
  2017, "Feature Visualization", Distill.
- :func:`receptive_field`: a layer's exact receptive field from the graph.
- :func:`top_patches`: the dataset patches that activate a channel most.
- :func:`occlusion_receptive_field`: the empirical receptive field by
  occlusion (Zhou et al. 2015).

The guide :doc:`/guide/features` gives the formulas.
"""

from keras_explain.features.fields import (
    OcclusionField,
    Patches,
    ReceptiveField,
    occlusion_receptive_field,
    receptive_field,
    top_patches,
)
from keras_explain.features.objectives import Objective, channel, direction, logit, neuron
from keras_explain.features.optimization import maximize
from keras_explain.features.parameterization import (
    COLOR_CORRELATION,
    Fourier,
    Pixel,
    Regularizer,
    Transforms,
    l1,
    l2,
    lp,
    norm,
    total_variation,
)

__all__ = [
    "COLOR_CORRELATION",
    "Fourier",
    "Objective",
    "OcclusionField",
    "Patches",
    "Pixel",
    "ReceptiveField",
    "Regularizer",
    "Transforms",
    "channel",
    "direction",
    "l1",
    "l2",
    "logit",
    "lp",
    "maximize",
    "neuron",
    "norm",
    "occlusion_receptive_field",
    "receptive_field",
    "top_patches",
    "total_variation",
]

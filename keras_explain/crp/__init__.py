"""``kx.crp``: Concept Relevance Propagation, from "where" to "what".

A heatmap says where the model looked. :class:`CRP` (Achtibat et al. 2023) splits it
by the concepts of a layer, its channels: the heatmap of each concept, how much of
the decision each one carries, and which lower-layer concepts feed it.
:func:`reference_samples` finds the dataset examples that show what each concept
is (relevance maximization).
"""

from keras_explain.crp.explainer import CRP, concept_relevance, conditional, hierarchy
from keras_explain.crp.reference import ReferenceSamples, reference_samples

__all__ = [
    "CRP",
    "ReferenceSamples",
    "concept_relevance",
    "conditional",
    "hierarchy",
    "reference_samples",
]

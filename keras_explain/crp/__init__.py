"""``kx.crp``: Concept Relevance Propagation, from "where" to "what".

A heatmap says where the model looked. :class:`CRP` (Achtibat et al. 2023) splits it
by the concepts of a layer, its channels: the heatmap of each concept, how much of
the decision each one carries, and which lower-layer concepts feed it.
"""

from keras_explain.crp.explainer import CRP, concept_relevance, conditional, hierarchy

__all__ = ["CRP", "concept_relevance", "conditional", "hierarchy"]

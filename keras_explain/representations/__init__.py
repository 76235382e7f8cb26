"""How do layers and models compare? CKA, SVCCA, PWCCA, embeddings and the TensorBoard projector.

Every measure takes activations ``(N, ...)`` of the same ``N`` inputs, in the
same order, flattens them to ``(N, features)`` and computes in float64.

- :func:`cka`: centered kernel alignment (Kornblith et al. 2019, "Similarity of
  Neural Network Representations Revisited", ICML), linear or RBF kernel,
  biased or debiased (unbiased HSIC, Song et al. 2012).
- :func:`cca`, :func:`svcca`, :func:`pwcca`: canonical correlations by QR
  decompositions (Björck & Golub 1973), SVCCA (Raghu et al. 2017, NeurIPS) and
  projection-weighted CCA (Morcos et al. 2018, NeurIPS).
- :func:`similarity_matrix`: every layer of one model against every layer of
  another, with minibatch CKA (Nguyen et al. 2021, "Do Wide and Deep Networks
  Learn the Same Things?", ICLR) so that memory is bounded by the minibatch.
- :func:`embed`, :func:`plot_embedding`, :func:`plot_similarity`,
  :func:`write_projector` (TensorBoard's embedding projector).
"""

from keras_explain.representations.embedding import EMBEDDINGS, embed
from keras_explain.representations.layer_similarity import (
    DEFAULT_MINIBATCH,
    MEASURES,
    similarity_matrix,
)
from keras_explain.representations.measures import (
    KERNELS,
    cca,
    cka,
    gram_linear,
    gram_rbf,
    pwcca,
    svcca,
    unbiased_hsic,
)
from keras_explain.representations.plots import plot_embedding, plot_similarity
from keras_explain.representations.projector import (
    MAX_SPRITE_SIZE,
    PROJECTOR_CONFIG,
    write_metadata,
    write_projector,
    write_sprite,
)

# In the order of the API page.
__all__ = [
    "KERNELS",
    "MEASURES",
    "EMBEDDINGS",
    "DEFAULT_MINIBATCH",
    "gram_linear",
    "gram_rbf",
    "cka",
    "unbiased_hsic",
    "cca",
    "svcca",
    "pwcca",
    "similarity_matrix",
    "plot_similarity",
    "embed",
    "plot_embedding",
    "PROJECTOR_CONFIG",
    "MAX_SPRITE_SIZE",
    "write_metadata",
    "write_sprite",
    "write_projector",
]

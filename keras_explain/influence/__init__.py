"""``kx.influence``: which training examples made this prediction?

Example-based explanations: :class:`TracIn` (Pruthi et al. 2020) traces the loss
gradients through training checkpoints, :class:`InfluenceFunction` (Koh & Liang
2017) predicts the effect of removing a training example from the Hessian, and
:class:`Similarity` ranks training examples by a layer's representation. Each
returns ``(n_test, n_train)`` scores, higher meaning more helpful (or more
similar), and the ``proponents`` / ``opponents`` of each test example.
"""

from keras_explain.influence.influence_function import InfluenceFunction
from keras_explain.influence.similarity import Similarity
from keras_explain.influence.tracin import TracIn

__all__ = ["InfluenceFunction", "Similarity", "TracIn"]

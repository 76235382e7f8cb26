"""The call shape every influence method shares: scores, proponents, opponents."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_explain.influence import engine


class InfluenceMethod:
    """Scores of test examples against training examples; higher means more helpful.

    Subclasses set ``owner`` and implement :meth:`influence`.
    """

    owner = "InfluenceMethod"

    def influence(self, x: Any, y: Any = None) -> np.ndarray:
        """``(n_test, n_train)`` scores of every test example against every training one."""
        raise NotImplementedError

    def proponents(self, x: Any, y: Any = None, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` training examples with the highest scores for each test example.

        Args:
            x: Test inputs ``(n_test, ...)``.
            y: Their labels (the loss' ``y_true``; unused by :class:`Similarity`).
            k: How many, at most the size of the training set.

        Returns:
            ``(indices, scores)``, each ``(n_test, k)``, highest score first;
            ``indices`` index the training set in its order.

        Raises:
            ValueError: For ``k`` outside ``[1, n_train]``, and as :meth:`influence`.
        """
        return engine.top_k(self.influence(x, y), k, True, self.owner)

    def opponents(self, x: Any, y: Any = None, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` lowest-scoring training examples, lowest first (as :meth:`proponents`)."""
        return engine.top_k(self.influence(x, y), k, False, self.owner)


def checked_model(model: Any, owner: str) -> keras.Model:
    """``model`` if it is a Keras model.

    Raises:
        TypeError: Otherwise.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{owner} differentiates a Keras model on a clone of it. Received: model of type "
            f"{type(model).__name__}."
        )
    return model

"""Clones of a user's model: metrics and influence methods change weights on a copy only."""

from __future__ import annotations

import keras

from keras_explain import random


def cloned(model: keras.Model) -> keras.Model:
    """A clone of ``model`` (``keras.models.clone_model``) holding a copy of its weights.

    The user's model is never touched; the clone is built with the global random
    state kept (unseeded initializers draw Python's default seed).

    Example:
        >>> import keras
        >>> from keras_explain._clone import cloned
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> clone = cloned(model)
        >>> clone is model, bool((clone.get_weights()[0] == model.get_weights()[0]).all())
        (False, True)
    """
    with random.global_state_kept():
        clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def leaf_layers(model: keras.Model) -> list[keras.Layer]:
    """The model's layers in order, nested models expanded."""
    result = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            result.extend(leaf_layers(layer))
        else:
            result.append(layer)
    return result

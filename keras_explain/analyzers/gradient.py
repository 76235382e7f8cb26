"""Gradient family: saliency, input × gradient, guided backprop, deconvnet.

All four run on :class:`~keras_explain.analyzers.backprop.Backpropagation`;
guided backprop and deconvnet replace the backward pass of every ReLU with a
rule (:class:`~keras_explain.lrp.rules.GuidedReLU`, :class:`~keras_explain.lrp.rules.DeconvReLU`).
"""

from __future__ import annotations

import tensorflow as tf

from keras_explain.analyzers.backprop import Backpropagation
from keras_explain.analyzers.registry import register
from keras_explain.lrp import rules

POSTPROCESS = (None, "abs", "square")


@register("gradient")
class Gradient(Backpropagation):
    """Saliency: the gradient of the target score w.r.t. the input.

    Simonyan et al. 2014, "Deep Inside Convolutional Networks", arXiv:1312.6034.

    Args:
        model: A Keras model (subclassed models work too).
        postprocess: None, ``"abs"`` or ``"square"``, applied to the gradient.
        **kwargs: ``layer``, ``output_layer``, ``output_index``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns the (post-processed) gradient, shaped like x.

    Raises:
        ValueError: For an unknown ``postprocess``.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.Gradient(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(self, model, *, postprocess: str | None = None, **kwargs):
        if postprocess not in POSTPROCESS:
            raise ValueError(
                f"Unknown postprocess. Received: postprocess={postprocess!r}. "
                f"Expected one of {POSTPROCESS}."
            )
        self.postprocess = postprocess
        super().__init__(model, **kwargs)

    def attribution(self, grads, sources):
        """Apply ``postprocess`` to the gradient."""
        if self.postprocess == "abs":
            return [tf.abs(g) for g in grads]
        if self.postprocess == "square":
            return [tf.square(g) for g in grads]
        return grads


@register("input_t_gradient")
class InputTimesGradient(Backpropagation):
    """Input times gradient (Shrikumar et al. 2016, arXiv:1605.01713).

    Args:
        model: A Keras model.
        **kwargs: See :class:`Gradient`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.InputTimesGradient(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def attribution(self, grads, sources):
        """Gradient times the source values."""
        return [g * tf.cast(s, g.dtype) for g, s in zip(grads, sources)]


class _ReLURuleAnalyzer(Backpropagation):
    requires_graph = True
    relu_rule: rules.Rule

    def hook(self, step, inputs):
        if rules.is_relu(step):
            return self.relu_rule(step, inputs)
        return step.op.forward(*inputs)


@register("guided_backprop")
class GuidedBackprop(_ReLURuleAnalyzer):
    """Guided backpropagation (Springenberg et al. 2015, arXiv:1412.6806).

    At every ReLU (fused ``activation="relu"``, ``Activation("relu")``,
    ``ReLU()``, ``keras.ops.relu``, inside nested models too) the backward pass
    is ``g_in = relu(g_out) * 1[x > 0]``.

    Args:
        model: A Functional or Sequential Keras model.
        **kwargs: See :class:`Gradient`.

    Raises:
        TypeError: For a subclassed model (its ReLUs cannot be found).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> kx.GuidedBackprop(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    relu_rule = rules.GuidedReLU()


@register("deconvnet")
class Deconvnet(_ReLURuleAnalyzer):
    """Deconvnet (Zeiler & Fergus 2014, arXiv:1311.2901): ``g_in = relu(g_out)`` at every ReLU.

    Args:
        model: A Functional or Sequential Keras model.
        **kwargs: See :class:`Gradient`.

    Raises:
        TypeError: For a subclassed model.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> kx.Deconvnet(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    relu_rule = rules.DeconvReLU()

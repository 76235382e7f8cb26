"""Several outputs explained together (``output_index=[...]``, tf-keras-vis' list of scores).

The explained output is the concatenation of the outputs flattened per sample; with
``kx.targets.per_output`` the score is the sum of one class of each. Every method here is
linear in the score it explains (the gradient, signed Grad-CAM, LRP-epsilon's propagation
for a fixed forward pass, occlusion's score drops), so the joint explanation must equal the
sum of the per-output explanations; the gradient is also checked against a tape.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx


@pytest.fixture(scope="module")
def two_heads():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 2))
    features = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    first = keras.layers.Dense(3, name="first")(pooled)
    second = keras.layers.Dense(2, activation="softmax", name="second")(pooled)
    return keras.Model(inputs, [first, second])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((3, 8, 8, 2)).astype("float32")


JOINT = kx.targets.per_output([2, 1])


def test_the_joint_gradient_is_the_gradient_of_the_summed_scores(two_heads, x):
    joint = kx.Gradient(two_heads, output_index=[0, 1]).analyze(x, target=JOINT)
    # the second head's logits (its softmax is stripped, as for one output)
    logits = keras.Model(two_heads.inputs, two_heads.get_layer("second").input)
    w, b = two_heads.get_layer("second").get_weights()
    tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        score = two_heads(tensor)[0][:, 2] + (logits(tensor) @ w + b)[:, 1]
    np.testing.assert_allclose(joint, tape.gradient(score, tensor).numpy(), rtol=1e-5, atol=1e-7)
    each = kx.Gradient(two_heads, output_index=0).analyze(x, target=2) + kx.Gradient(
        two_heads, output_index=1
    ).analyze(x, target=1)
    np.testing.assert_allclose(joint, each, rtol=1e-5, atol=1e-7)
    # an int indexes the concatenation: 3 values of the first output, then the second's
    np.testing.assert_allclose(
        kx.Gradient(two_heads, output_index=[0, 1]).analyze(x, target=3 + 1),
        kx.Gradient(two_heads, output_index=1).analyze(x, target=1),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda model, index: kx.GradCAM(model, output_index=index, rectify=False),
        lambda model, index: kx.LRP(model, "epsilon", output_index=index),
        lambda model, index: kx.Occlusion(model, window=4, output_index=index),
        lambda model, index: kx.IntegratedGradients(model, steps=8, output_index=index),
    ],
    ids=["grad_cam_signed", "lrp_epsilon", "occlusion", "integrated_gradients"],
)
def test_methods_linear_in_the_score_add_up_over_the_outputs(two_heads, x, make):
    joint = make(two_heads, [0, 1]).analyze(x, target=JOINT)
    each = make(two_heads, 0).analyze(x, target=2) + make(two_heads, 1).analyze(x, target=1)
    np.testing.assert_allclose(joint, each, rtol=1e-4, atol=1e-6)


def test_several_outputs_errors(two_heads, x):
    gradient = kx.Gradient(two_heads, output_index=[0, 1])
    with pytest.raises(
        ValueError,
        match=r"Gradient explains 2 outputs together \(output_index=\[0, 1\]\); the argmax over "
        r"them means nothing\. Received: target=None",
    ):
        gradient.analyze(x)
    with pytest.raises(ValueError, match=r"per_output\(\[1\]\) names 1 classes for 2 explained"):
        gradient.analyze(x, target=kx.targets.per_output([1]))
    with pytest.raises(ValueError, match=r"class 2 is outside output 1, which has 2 values"):
        gradient.analyze(x, target=kx.targets.per_output([0, 2]))
    with pytest.raises(ValueError, match=r"per_output takes one class index"):
        kx.targets.per_output([0, -1])
    with pytest.raises(ValueError, match=r"output_index lists the outputs to explain together"):
        kx.Gradient(two_heads, output_index=[0, 0])
    with pytest.raises(ValueError, match=r"output_index must be an int in \[0, 2\), or a list"):
        kx.Gradient(two_heads, output_index=[0, 2])
    with pytest.raises(ValueError, match=r"CAM \(Zhou et al\. 2016\) reads the weights of one"):
        kx.CAM(two_heads, output_index=[0, 1])

"""Dense outputs (segmentation): a region of the mask as the target, for several families.

Grad-CAM, Score-CAM, Integrated Gradients and guided backprop on a tiny U-Net, each
against a reference computed on the U-Net written by hand from its layers' weights.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import cam_images as images

import keras_explain as kx

layers = keras.layers


def unet(seed=0):
    """A tiny U-Net: encoder, bottleneck, UpSampling2D, skip Concatenate, decoder; (B,8,8,2)."""
    helpers.seeded(seed)
    inputs = keras.Input((8, 8, 2))
    e1 = layers.Conv2D(4, 3, padding="same", activation="relu", name="enc")(inputs)
    p = layers.MaxPooling2D(name="pool")(e1)
    b = layers.Conv2D(6, 3, padding="same", activation="relu", name="bottleneck")(p)
    u = layers.UpSampling2D(name="up")(b)
    c = layers.Concatenate(name="skip")([u, e1])
    d = layers.Conv2D(4, 3, padding="same", activation="relu", name="decoder")(c)
    outputs = layers.Conv2D(2, 1, name="mask_logits")(d)
    return helpers.randomize_biases(keras.Model(inputs, outputs, name="unet"))


# -- dense outputs: segmentation ---------------------------------------------------------
REGION = np.zeros((8, 8), np.float32)
REGION[:4, :4] = 1.0


def region_score(out):
    """The custom forward function: class-1 logits summed over a region of the mask."""
    return tf.reduce_sum(out[..., 1] * REGION, axis=[1, 2])


def unet_forward(model, x, watch=None, tape=None, relu_fn=tf.nn.relu):
    """The U-Net written by hand from its layers' weights."""

    def conv(name, h, activation=True):
        layer = model.get_layer(name)
        z = tf.nn.conv2d(h, layer.kernel, 1, "SAME") + layer.bias
        return relu_fn(z) if activation else z

    values = {}
    values["enc"] = conv("enc", x)
    pooled = tf.nn.max_pool2d(values["enc"], 2, 2, "VALID")
    values["bottleneck"] = conv("bottleneck", pooled)
    if watch == "bottleneck":
        tape.watch(values["bottleneck"])
    up = tf.repeat(tf.repeat(values["bottleneck"], 2, axis=1), 2, axis=2)
    values["decoder"] = conv("decoder", tf.concat([up, values["enc"]], -1))
    if watch == "decoder":
        tape.watch(values["decoder"])
    return conv("mask_logits", values["decoder"], activation=False), values


@pytest.mark.parametrize("layer", ["decoder", "bottleneck"])
def test_grad_cam_on_segmentation_region(layer):
    model, x = unet(), images(batch=2)
    with tf.GradientTape() as tape:
        out, values = unet_forward(model, tf.constant(x), watch=layer, tape=tape)
        score = region_score(out)
    gradient = tape.gradient(score, values[layer]).numpy()
    reference = helpers.grad_cam_reference(values[layer].numpy(), gradient)
    np.testing.assert_allclose(model(x).numpy(), out.numpy(), rtol=1e-5, atol=1e-5)
    analyzer = kx.GradCAM(model, layer=layer, upsample=False)
    maps = analyzer.analyze(x, target=region_score)
    np.testing.assert_allclose(maps, reference, rtol=1e-4, atol=1e-6)
    assert maps.max() > 0
    # the last spatial layer that is not the explained output (the final logits)
    assert kx.GradCAM(model).layer.name == "decoder"


def test_integrated_gradients_completeness_on_segmentation_region():
    model, x = unet(), images(batch=2)
    attributions = kx.IntegratedGradients(model, steps=128).analyze(x, target=region_score)
    assert attributions.shape == x.shape
    gap = region_score(model(x)).numpy() - region_score(model(np.zeros_like(x))).numpy()
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), gap, rtol=2e-2, atol=2e-2)


def test_guided_backprop_on_segmentation_region():
    guided_relu = helpers.reference_relu("guided")
    model, x = unet(), images(batch=2)
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out, _ = unet_forward(model, inputs, relu_fn=guided_relu)
        score = region_score(out)
    reference = tape.gradient(score, inputs).numpy()
    result = kx.GuidedBackprop(model).analyze(x, target=region_score)
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-6)
    assert (result != 0).any()


def test_score_cam_on_segmentation_region():
    model, x = unet(), images(batch=2)
    values = unet_forward(model, tf.constant(x))[1]

    def scores_of(masked, b):
        return float(region_score(model(masked)).numpy()[0])

    reference = helpers.score_cam_reference(
        values["decoder"].numpy().astype(np.float64), x, scores_of
    )
    maps = kx.ScoreCAM(model, layer="decoder", internal_batch_size=3).analyze(x, region_score)
    np.testing.assert_allclose(maps, reference, rtol=1e-4, atol=1e-5)

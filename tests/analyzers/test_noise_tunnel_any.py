"""NoiseTunnel around any analyzer: Integrated Gradients, perturbation methods, LIME/KernelSHAP.

Each result equals the wrapped analyzer run alone on the same noisy copies (drawn by
``NoiseTunnel.noisy_copies``) with the target fixed on the clean input, combined as the
kind says; on a linear model, a closed form.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain.analyzers.layer_output import LayerOutputs


@pytest.fixture(scope="module")
def tabular_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="tanh"),
            keras.layers.Dense(3),
        ]
    )


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).normal(size=(4, 6)).astype("float32")


def copies_of(tunnel, x, seed):
    """The tunnel's noisy copies of x, (samples, B, ...), as numpy."""
    (copies,) = tunnel.noisy_copies([tf.constant(x)], tf.constant([seed, 0], tf.int64))
    return copies.numpy()


def combined(values, kind):
    values = np.asarray(values, np.float64)
    if kind == "smoothgrad":
        return values.mean(0)
    if kind == "squaregrad":
        return (values**2).mean(0)
    return values.var(0)


@pytest.mark.parametrize("kind", ["smoothgrad", "squaregrad", "vargrad"])
def test_noise_tunnel_of_integrated_gradients_is_the_mean_of_ig_on_the_copies(
    tabular_model, x, kind
):
    ig = kx.IntegratedGradients(tabular_model, steps=8)
    tunnel = kx.NoiseTunnel(ig, kind=kind, samples=5, noise_scale=0.2, seed=3)
    result = tunnel.analyze(x)
    clean = np.argmax(tabular_model.predict(x, verbose=0), axis=1)  # fixed on the clean input
    expected = combined([ig.analyze(c, target=clean) for c in copies_of(tunnel, x, 3)], kind)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    # the same seed, whatever the batch size
    np.testing.assert_allclose(tunnel.analyze(x, batch_size=3), result, rtol=1e-6, atol=1e-7)


def test_noise_tunnel_of_ig_on_a_linear_model_has_its_closed_form(x):
    keras.utils.set_random_seed(2)
    linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    weights, bias = linear.get_weights()
    tunnel = kx.NoiseTunnel(kx.IntegratedGradients(linear, steps=4), samples=6, seed=1)
    copies = copies_of(tunnel, x, 1)
    # IG from a zero baseline of a linear logit: x_i w_i exactly; the mean over copies
    expected = copies.mean(0) * weights[:, 1]
    np.testing.assert_allclose(tunnel.analyze(x, target=1), expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(bias).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda model: kx.Occlusion(model, window=2, baseline=0.0),
        lambda model: kx.ShapleySampling(model, samples=3, seed=0),
    ],
    ids=["occlusion", "shapley_sampling"],
)
def test_noise_tunnel_of_a_perturbation_method_averages_it_over_the_copies(tabular_model, x, make):
    method = make(tabular_model)
    tunnel = kx.NoiseTunnel(method, kind="squaregrad", samples=4, noise_scale=0.1, seed=7)
    result = tunnel.analyze(x, target=2)
    # the wrapped method sees the tunnel's seed, as it does inside the tunnel
    alone = make(tabular_model)
    alone.seed = 7
    expected = combined([alone.analyze(c, target=2) for c in copies_of(tunnel, x, 7)], "squaregrad")
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


def test_noise_tunnel_of_occlusion_on_images():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )
    images = np.random.default_rng(4).random((2, 8, 8, 2), dtype=np.float32)
    occlusion = kx.Occlusion(model, window=4)
    tunnel = kx.NoiseTunnel(occlusion, samples=3, seed=0)
    expected = np.mean([occlusion.analyze(c, target=1) for c in copies_of(tunnel, images, 0)], 0)
    np.testing.assert_allclose(tunnel.analyze(images, target=1), expected, rtol=1e-5, atol=1e-7)
    zero_noise = kx.NoiseTunnel(occlusion, samples=2, noise_scale=0.0)
    np.testing.assert_allclose(
        zero_noise.analyze(images, target=1), occlusion.analyze(images, target=1), rtol=1e-6
    )


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_noise_tunnel_runs_host_methods_on_the_host(tabular_model, x, name):
    pytest.importorskip("lime" if name == "lime" else "shap")
    data = {"training_data": x} if name == "lime" else {"background": x[:2]}

    def make():
        return kx.create_analyzer(name, tabular_model, samples=40, seed=5, **data)

    tunnel = kx.NoiseTunnel(make(), samples=2, noise_scale=0.1, seed=5)
    assert tunnel.execution == "host"
    expected = np.mean([make().analyze(c, target=0) for c in copies_of(tunnel, x, 5)], 0)
    np.testing.assert_allclose(tunnel.analyze(x, target=0), expected, rtol=1e-5, atol=1e-6)


def test_noise_tunnel_refuses_what_noise_cannot_be_added_to(tabular_model):
    tokens = keras.Sequential(
        [keras.Input((5,), dtype="int32"), keras.layers.Embedding(10, 4), keras.layers.Flatten()]
    )
    with pytest.raises(
        ValueError,
        match=r"NoiseTunnel adds Gaussian noise to the input, and input \[0\] of model "
        r"'sequential\w*' holds token ids, which Occlusion explains whole\. Received: "
        r"Occlusion\. Wrap a backpropagation analyzer",
    ):
        kx.NoiseTunnel(kx.Occlusion(tokens, window=1))
    with pytest.raises(TypeError, match=r"NoiseTunnel averages attributions; LayerOutputs"):
        kx.NoiseTunnel(LayerOutputs(tabular_model, layers=[tabular_model.layers[0]]))
    first = keras.Input((3,), name="a")
    second = keras.Input((3,), name="b")
    joined = keras.layers.Dense(2)(keras.layers.Concatenate()([first, second]))
    two_inputs = keras.Model([first, second], joined)
    with pytest.raises(ValueError, match=r"model with one feature input|explains models with one"):
        kx.NoiseTunnel(kx.Occlusion(two_inputs, window=1))

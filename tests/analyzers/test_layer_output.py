"""``kx.activations``: a layer's output against ``keras.Model(inputs, layer.output)``."""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx


def test_flat_model_equals_sub_model_for_every_layer():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=5)
    for layer in model.layers:
        expected = keras.Model(model.inputs[0], layer.output)(x).numpy()
        by_name = kx.activations(model, layer.name, x)
        assert by_name.dtype == np.float32
        assert by_name.shape == expected.shape
        # the same ops on the same float32 values: equal up to kernel reordering
        np.testing.assert_allclose(by_name, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(kx.activations(model, layer, x), by_name)


def test_nested_model_inner_layer_and_nested_output():
    model = helpers.nested()
    x = helpers.data((6,), batch=4)
    backbone = model.get_layer("backbone")
    inner = backbone.layers[0]  # Dense(8, relu) inside the nested model
    expected = keras.Model(backbone.inputs[0], inner.output)(x).numpy()
    np.testing.assert_allclose(kx.activations(model, inner.name, x), expected, rtol=1e-6, atol=1e-6)
    # the nested model itself stands for its output
    np.testing.assert_allclose(
        kx.activations(model, "backbone", x), backbone(x).numpy(), rtol=1e-6, atol=1e-6
    )
    # the softmax output is returned as is (no softmax stripping here)
    last = kx.activations(model, model.layers[-1], x)
    np.testing.assert_allclose(last, model(x).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(last.sum(axis=1), 1.0, rtol=1e-5)


def test_batched_and_dataset_inputs_equal_one_batch():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=7)
    whole = kx.activations(model, model.layers[2], x)
    # a chunk runs the same ops on the same rows: bit-identical per row is not
    # guaranteed across batch shapes by the kernels, so allow float32 rounding
    np.testing.assert_allclose(
        kx.activations(model, model.layers[2], x, batch_size=3), whole, rtol=1e-6, atol=1e-6
    )
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(7))).batch(2)
    np.testing.assert_allclose(
        kx.activations(model, model.layers[2], dataset), whole, rtol=1e-6, atol=1e-6
    )


def test_training_mode_layers_run_in_inference_mode():
    helpers.seeded(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dropout(0.9, name="drop"), keras.layers.Dense(2)]
    )
    x = helpers.data((6,), batch=3)
    np.testing.assert_array_equal(kx.activations(model, "drop", x), x)


def test_unknown_layer_is_rejected_with_the_available_names():
    model = helpers.dense_sequential()
    with pytest.raises(ValueError, match=r"No layer named 'nope'.*Received: layer='nope'"):
        kx.activations(model, "nope", helpers.data((6,)))


def test_wrong_input_shape_is_rejected():
    model = helpers.dense_sequential()
    with pytest.raises(ValueError, match=r"must have shape \(batch, 6\)\. Received: shape"):
        kx.activations(model, model.layers[0], np.zeros((2, 5), "float32"))


def test_subclassed_model_is_rejected():
    model = helpers.subclassed()
    with pytest.raises(TypeError, match="subclassed model with no layer graph"):
        kx.activations(model, "anything", helpers.data((6,)))

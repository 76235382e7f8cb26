"""Analyzer lifetime (issue #27): a dropped analyzer leaves nothing of its traces behind.

TensorFlow keeps a traced graph alive as long as anything refers to one of its
tensors. Two things did after an analyzer was dropped, so every LRP analyzer created
in a notebook loop kept its whole graph (about 90 MiB on EfficientNetB0 at 64 x 64):
the backward closures ``tf.custom_gradient`` registers in TensorFlow's global
gradient registry, and a ``GradientTape`` opened inside a backward function (a
relevance rule's vector-Jacobian product through an ``Add``). These tests count the
traced graphs alive and the registry's entries before and after.
"""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

import keras_explain as kx

METHODS = [
    "gradient",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "deeplift",
    "grad_cam",
    "lrp.z",
    "lrp.epsilon",
    "lrp.alpha_2_beta_1",
    "lrp.sequential_preset_a_flat",
    "deep_taylor",
]


def residual_cnn() -> keras.Model:
    layers = keras.layers
    inputs = keras.Input((12, 12, 3))
    h = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    h = layers.BatchNormalization()(h)
    h = layers.Add()([h, layers.Conv2D(4, 3, padding="same")(h)])
    h = layers.ReLU()(h)
    h = layers.AveragePooling2D(2)(h)
    h = layers.GlobalAveragePooling2D()(layers.Conv2D(5, 3, padding="same")(h))
    return keras.Model(inputs, layers.Dense(3)(h))


def traced_graphs() -> int:
    gc.collect()
    return sum(type(item).__name__ == "FuncGraph" for item in gc.get_objects())


def registered_gradients() -> int:
    return len(tf_ops._gradient_registry._registry)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    model = residual_cnn()
    model(np.zeros((1, 12, 12, 3), "float32"))
    return model


@pytest.mark.parametrize("name", METHODS)
def test_a_dropped_analyzer_leaves_no_traced_graph_and_no_registered_gradient(model, name):
    x = np.random.default_rng(0).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    kx.create_analyzer(name, model, verbose=0).analyze(x)  # TensorFlow's own first traces
    registered, before = registered_gradients(), traced_graphs()
    graphs, dropped = [], []
    for _ in range(3):
        analyzer = kx.create_analyzer(name, model, verbose=0)
        relevance = analyzer.analyze(x)
        dropped.append(weakref.ref(analyzer))
        del analyzer
        graphs.append(traced_graphs())
        assert registered_gradients() == registered
    # under pytest the most recent analyzer and its trace may stay referenced until
    # the next one is made (not under plain Python; other tests' graphs are counted
    # too); before the fix each LRP analyzer added one graph for good
    assert graphs[-1] == graphs[0] <= before + 1, (before, graphs)
    # the loop's analyzers are equal, so they share one trace (which refers to the
    # analyzer that made it): at most that one is alive
    assert sum(alive() is not None for alive in dropped) <= 1
    assert np.all(np.isfinite(relevance)) and np.abs(relevance).sum() > 0


def test_releasing_the_registrations_keeps_the_analyzer_working(model):
    """Traced again for a new batch size, and called under a user's GradientTape."""
    analyzer = kx.LRPEpsilon(model, verbose=0)
    x = np.random.default_rng(1).uniform(0, 1, (3, 12, 12, 3)).astype("float32")
    first = analyzer.analyze(x[:2])
    again = analyzer.analyze(x)  # a second signature: a second trace
    np.testing.assert_allclose(again[:2], first, rtol=1e-5, atol=1e-7)
    with tf.GradientTape() as tape:  # watches the model's variables the trace reads
        under_tape = analyzer.analyze(x)
        loss = tf.reduce_sum(model(x))
    np.testing.assert_array_equal(under_tape, again)
    assert all(g is not None for g in tape.gradient(loss, model.trainable_variables))


def test_the_same_analyzer_created_twice_traces_once(model):
    x = np.random.default_rng(2).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    first = kx.create_analyzer("lrp.epsilon", model, verbose=0)
    expected = first.analyze(x)
    graphs = traced_graphs()
    second = kx.create_analyzer("lrp.epsilon", model, verbose=0)
    np.testing.assert_array_equal(second.analyze(x), expected)
    assert traced_graphs() == graphs  # nothing traced for the second one
    assert kx.LRP(model, composite="epsilon", verbose=0)._trace_identity() == (
        second._trace_identity()
    )


@pytest.mark.parametrize(
    "other",
    [
        {"name": "lrp.epsilon", "epsilon": 0.5},
        {"name": "lrp.z"},
        {"name": "lrp.epsilon", "output_index": 0},
        {"name": "lrp.epsilon", "target_layer_changed": True},
    ],
)
def test_analyzers_that_differ_do_not_share_traces(model, other):
    x = np.random.default_rng(3).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    first = kx.create_analyzer("lrp.epsilon", model, verbose=0)
    first.analyze(x)
    params = {key: value for key, value in other.items() if key != "name"}
    changed = params.pop("target_layer_changed", False)
    second = kx.create_analyzer(other["name"], model, verbose=0, **params)
    if changed:  # a parameter changed after creation, before the first analysis
        second.strip_softmax = False
    assert second._trace_identity() != first._trace_identity()
    expected = kx.create_analyzer(other["name"], model, verbose=0, **params)
    if changed:
        expected.strip_softmax = False
    del first
    np.testing.assert_allclose(second.analyze(x), expected.analyze(x), rtol=1e-6)


def test_an_argument_compared_by_identity_shares_nothing(model):
    analyzer = kx.LRP(model, composite=kx.lrp.composites.get("epsilon"), verbose=0)
    assert analyzer._trace_identity() is None
    by_name = kx.LRP(model, composite="epsilon", verbose=0)
    assert by_name._trace_identity() is not None


def test_the_same_layer_object_shares_and_another_layer_does_not(model):
    first = kx.GradCAM(model, layer=model.layers[5], verbose=0)
    assert first._trace_identity() == kx.GradCAM(model, layer=model.layers[5])._trace_identity()
    assert first._trace_identity() != kx.GradCAM(model, layer=model.layers[4])._trace_identity()


@pytest.mark.parametrize("name", ["gradient", "lrp.epsilon", "lrp.alpha_2_beta_1", "smoothgrad"])
def test_jit_compile_equals_the_default_path(model, name):
    """XLA reorders float32 sums: equal to rounding, and traced separately."""
    x = np.random.default_rng(4).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    params = {"seed": 0, "samples": 4} if name == "smoothgrad" else {}
    default = kx.create_analyzer(name, model, verbose=0, **params)
    xla = kx.create_analyzer(name, model, verbose=0, jit_compile=True, **params)
    assert xla._trace_identity() != default._trace_identity()
    expected = default.analyze(x)
    np.testing.assert_allclose(
        xla.analyze(x), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max()
    )


def test_jit_compile_must_be_a_bool(model):
    message = r"LRPEpsilon: jit_compile must be True or False. Received: jit_compile='yes'\."
    with pytest.raises(TypeError, match=message):
        kx.LRPEpsilon(model, jit_compile="yes")

"""CRP against numbers computed by zennit-crp, the PyTorch reference.

The numbers in ``data/zennit_crp_reference.npz`` came from zennit-crp 0.6.0 with
zennit 0.4.6 and torch 2.13.0 (CPU), computed by a scratch script
(``/work/scratch/crp_check/compare.py``, not part of the project, torch is no
dependency): the same network in PyTorch (Conv2d(3, 8) -> ReLU -> Conv2d(8, 8) ->
ReLU -> MaxPool2d(2) -> Conv2d(8, 12) -> ReLU -> AdaptiveAvgPool2d(1) -> Flatten ->
Linear(12, 5), with biases, the weights below transposed to NCHW), explained with
``crp.attribution.CondAttribution`` and zennit's ``EpsilonPlusFlat()``, conditions
``[{"conv3": [c], "y": [target]}]`` per channel, the heatmaps kept per colour
channel and stored NHWC. The concept relevances are
``ChannelConcept().attribute(relevance_at_conv3, abs_norm=False)``.

zennit 0.4.6 stabilizes every rule with ε = 1e-6; keras_explain's presets default
to 1e-7, so the preset ``"epsilon_plus_flat"`` agrees to about 1e-5 of the largest
value, and a composite with every stabilizer at 1e-6 to float32 round-off.
"""

import pathlib

import keras
import numpy as np
import pytest

import keras_explain as kx
from keras_explain.lrp import composites, rules

DATA = pathlib.Path(__file__).parent / "data" / "zennit_crp_reference.npz"


def build():
    """The network of the reference file (Keras' get_weights() order: w0..w7)."""
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv1")(inputs)
    h = keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv2")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(12, 3, activation="relu", padding="same", name="conv3")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = keras.layers.Dense(5, name="head")(h)
    return keras.Model(inputs, outputs)


def zennit_stabilizers():
    """EpsilonPlusFlat with zennit 0.4.6's stabilizer, 1e-6, in every rule."""
    return composites.Composite(
        [
            ("conv", rules.AlphaBeta(1, 0, epsilon=1e-6)),
            ("linear", rules.Epsilon(1e-6)),
            ("sum_pool", rules.Proportional(1e-6)),
        ],
        first=rules.Flat(epsilon=1e-6),
    )


@pytest.fixture(scope="module")
def reference():
    data = dict(np.load(DATA))
    model = build()
    model.set_weights([data[f"w{i}"] for i in range(8)])
    return model, data


def close(actual, expected, rtol):
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize(
    ("composite", "rtol"), [("epsilon_plus_flat", 1e-4), (zennit_stabilizers(), 1e-5)]
)
def test_conditional_heatmaps_match_zennit_crp(reference, composite, rtol):
    model, data = reference
    x, targets = data["x"], data["targets"]
    for layer in ("conv3", "conv2"):
        heatmaps = kx.crp.CRP(model, layer, composite=composite).conditional(x, target=targets)
        assert heatmaps.shape == data[f"{layer}_conditional"].shape
        close(heatmaps, data[f"{layer}_conditional"], rtol)


@pytest.mark.parametrize(
    ("composite", "rtol"), [("epsilon_plus_flat", 1e-4), (zennit_stabilizers(), 1e-5)]
)
def test_concept_relevance_and_lower_layer_match_zennit_crp(reference, composite, rtol):
    model, data = reference
    x, targets = data["x"], data["targets"]
    crp = kx.crp.CRP(model, "conv3", composite=composite)
    close(crp.concept_relevance(x, target=targets), data["conv3_concept_relevance"], rtol)
    # relevance at conv2 conditioned on each conv3 channel, summed over positions
    lower = crp.conditional(x, target=targets, lower="conv2")
    close(lower.reshape(4, 12, -1, 8).sum(axis=2), data["conv3_to_conv2_relevance"], rtol)


def test_hierarchy_matches_zennit_crp(reference):
    model, data = reference
    x, targets = data["x"], data["targets"]
    crp = kx.crp.CRP(model, "conv3", composite="epsilon_plus_flat")
    expected = data["conv3_to_conv2_relevance"][:, 0]
    order = np.argsort(-expected, axis=1, kind="stable")[:, :3]
    indices, relevances = crp.hierarchy(x, 0, "conv2", k=3, target=targets)
    np.testing.assert_array_equal(indices, order)
    close(relevances, np.take_along_axis(expected, order, axis=1), 1e-4)

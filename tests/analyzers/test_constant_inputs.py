"""Inputs that are not features (masks, segment ids) are held constant; dict inputs.

Expected values: tape gradients and the model's own outputs on the same arrays, and
completeness of Integrated Gradients with the mask held at its value.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_explain as kx

layers = keras.layers


def masked_text_model(seed=0):
    """tokens -> Embedding, times the padding mask, plus a segment embedding -> pool -> Dense."""
    helpers.seeded(seed)
    tokens = keras.Input((6,), dtype="int32", name="token_ids")
    segments = keras.Input((6,), dtype="int32", name="segment_ids")
    mask = keras.Input((6,), dtype="int32", name="padding_mask")
    h = layers.Embedding(20, 4, name="tokens_embedding")(tokens)
    h = h + layers.Embedding(2, 4, name="segment_embedding")(segments)
    h = h * ops.cast(mask, "float32")[..., None]
    h = layers.GlobalAveragePooling1D(name="pool")(
        layers.Dense(5, activation="tanh", name="hidden")(h)
    )
    outputs = layers.Dense(3, name="logits")(h)
    return helpers.randomize(keras.Model([tokens, segments, mask], outputs), seed)


def batch(seed=1):
    rng = np.random.default_rng(seed)
    mask = np.ones((3, 6), "int32")
    mask[1, 4:] = 0
    return {
        "token_ids": rng.integers(1, 20, (3, 6)).astype("int32") * mask,
        "segment_ids": (np.arange(6)[None] >= 3).astype("int32").repeat(3, 0),
        "padding_mask": mask,
    }


def embedding_gradient(model, x, target):
    """Per-token gradient at the token embedding, the other inputs held (a tape, layer by layer)."""
    vectors = model.get_layer("tokens_embedding")(x["token_ids"])
    with tf.GradientTape() as tape:
        tape.watch(vectors)
        h = vectors + model.get_layer("segment_embedding")(x["segment_ids"])
        h = h * tf.cast(x["padding_mask"], tf.float32)[..., None]
        h = model.get_layer("pool")(model.get_layer("hidden")(h))
        score = tf.reduce_sum(model.get_layer("logits")(h)[:, target])
    return tape.gradient(score, vectors).numpy().sum(-1)


def test_masks_and_segments_are_held_constant_and_a_dict_gives_a_dict():
    model, x = masked_text_model(), batch()
    analyzer = kx.Gradient(model)
    assert analyzer.input_names == ["token_ids", "segment_ids", "padding_mask"]
    assert analyzer.constant_inputs == (1, 2)
    result = analyzer.analyze(x, target=2)
    assert sorted(result) == sorted(x)
    np.testing.assert_array_equal(result["padding_mask"], 0.0)
    np.testing.assert_array_equal(result["segment_ids"], 0.0)
    np.testing.assert_allclose(
        result["token_ids"], embedding_gradient(model, x, 2), rtol=1e-5, atol=1e-7
    )
    # a list in the input order gives a list
    listed = analyzer.analyze([x[name] for name in analyzer.input_names], target=2)
    np.testing.assert_array_equal(listed[0], result["token_ids"])


@pytest.mark.parametrize("name", ["integrated_gradients", "deeplift", "lrp.epsilon", "smoothgrad"])
def test_every_family_holds_the_mask(name):
    model, x = masked_text_model(), batch()
    params = {"steps": 128} if name == "integrated_gradients" else {}
    params = {"samples": 4, "seed": 0} if name == "smoothgrad" else params
    result = kx.create_analyzer(name, model, **params).analyze(x, target=1)
    np.testing.assert_array_equal(result["padding_mask"], 0.0)
    np.testing.assert_array_equal(result["segment_ids"], 0.0)
    assert np.abs(result["token_ids"]).sum() > 0
    # padded positions (mask 0) reach nothing: their attribution is exactly 0
    np.testing.assert_array_equal(result["token_ids"][1, 4:], 0.0)
    if name in ("integrated_gradients", "deeplift"):
        # completeness from the padding-token baseline, the mask and segments unchanged
        baseline = {**x, "token_ids": np.zeros_like(x["token_ids"])}
        delta = model(x).numpy()[:, 1] - model(baseline).numpy()[:, 1]
        tolerance = 1e-3 if name == "integrated_gradients" else 1e-5
        np.testing.assert_allclose(result["token_ids"].sum(1), delta, atol=tolerance)


def test_constant_inputs_override_and_errors():
    model, x = masked_text_model(), batch()
    named = kx.Gradient(model, constant_inputs=["padding_mask"])
    assert named.constant_inputs == (2,)
    with pytest.raises(
        ValueError,
        match=r"Gradient: every input of model '.*' is held constant \(\['token_ids', "
        r"'segment_ids', 'padding_mask'\]\), so nothing is left to attribute",
    ):
        kx.Gradient(model, constant_inputs=[1, 2, "token_ids"])
    with pytest.raises(
        ValueError,
        match=r"Gradient: constant_inputs names inputs of model .* Received: 'mask'\. "
        r"Inputs: \['token_ids', 'segment_ids', 'padding_mask'\]",
    ):
        kx.Gradient(model, constant_inputs=["mask"])
    with pytest.raises(
        ValueError,
        match=r"Gradient: a dict x needs one array per input of model .*, keyed by the input "
        r"names \['token_ids', 'segment_ids', 'padding_mask'\]\. Received keys "
        r"\['padding_mask', 'tokens'\] \(missing: \['segment_ids', 'token_ids'\], unknown: "
        r"\['tokens'\]\)",
    ):
        kx.Gradient(model).analyze({"tokens": x["token_ids"], "padding_mask": x["padding_mask"]})

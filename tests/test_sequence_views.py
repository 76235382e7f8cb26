"""LRP through recurrent layers, attention and LayerNormalization (SPEC 4.5).

The layers are re-executed step by step from primitive ops (``op.inner``): the
re-execution must equal ``model(x)``; LRP-ε must conserve relevance on bias-free
networks and equal the numpy references written from Arras et al. 2017 (LSTM, GRU);
masked steps get no relevance; Integrated Gradients, a gradient-path method, must be
complete on the same architectures.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers

#: Layers whose programs are checked against model(x) (Masking pads the batch).
RECURRENT = {
    "lstm": lambda: layers.LSTM(5),
    "lstm_sequences": lambda: layers.LSTM(5, return_sequences=True),
    "gru": lambda: layers.GRU(4),
    "gru_reset_before": lambda: layers.GRU(4, reset_after=False, return_sequences=True),
    "simple_rnn_backwards": lambda: layers.SimpleRNN(3, go_backwards=True),
    "lstm_backwards_sequences": lambda: layers.LSTM(3, go_backwards=True, return_sequences=True),
    "bidirectional_concat": lambda: layers.Bidirectional(layers.LSTM(3)),
    "bidirectional_sum": lambda: layers.Bidirectional(
        layers.GRU(3, return_sequences=True), merge_mode="sum"
    ),
    "bidirectional_ave": lambda: layers.Bidirectional(
        layers.LSTM(3, return_sequences=True), merge_mode="ave"
    ),
}


def padded(batch=4, steps=5, features=4, seed=0):
    """Float sequences, with zero padding after (sample 0) and before (sample 1) the data."""
    x = helpers.data((steps, features), seed=seed, batch=batch)
    x[0, 3:] = 0.0
    x[1, :2] = 0.0
    return x


#: The default step checks these; the slow step all of RECURRENT.
FAST_RECURRENT = ("lstm", "bidirectional_sum")


def slow_unless(names, fast):
    """Parameters for ``names``, marked slow unless in ``fast``."""
    return [
        pytest.param(name, marks=() if name in fast else pytest.mark.slow) for name in sorted(names)
    ]


@pytest.mark.parametrize("name", slow_unless(RECURRENT, FAST_RECURRENT))
def test_recurrent_program_equals_the_layer_on_padded_batches(name):
    helpers.seeded(0)
    pooled = "sequences" in name or name.endswith(("sum", "ave"))
    model = helpers.recurrent_classifier(RECURRENT[name](), masking=True, pooled=pooled)
    helpers.randomize(model)
    x = padded()
    assert set(helpers.program_kinds(model).values()) == {"recurrent"}
    # the same float32 operations in another order (fused gate matmul): rounding only
    np.testing.assert_allclose(helpers.program_output(model, x), model(x), atol=1e-5)


@pytest.mark.parametrize("causal", [pytest.param(False, marks=pytest.mark.slow), True])
def test_attention_program_equals_the_layer(causal):
    helpers.seeded(1)
    model = helpers.randomize(helpers.transformer_classifier(causal=causal))
    x = helpers.data((5, 8), seed=1)
    assert set(helpers.program_kinds(model).values()) == {"attention"}
    np.testing.assert_allclose(helpers.program_output(model, x), model(x), atol=1e-5)


def test_attention_program_with_token_masks_and_attention_mask_input():
    helpers.seeded(2)
    tokens = keras.Input((6,), dtype="int32")
    allowed = keras.Input((6, 6), dtype="bool")
    x = layers.Embedding(20, 8, mask_zero=True)(tokens)
    x = layers.MultiHeadAttention(2, 4)(x, x, attention_mask=allowed)
    model = helpers.randomize(keras.Model([tokens, allowed], layers.GlobalAveragePooling1D()(x)))
    ids = np.array([[3, 5, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6], [9, 9, 0, 0, 0, 0]], "int32")
    mask = np.random.default_rng(0).random((3, 6, 6)) > 0.3
    plan = helpers.plan_of(model)
    attention = [s for s in plan.steps if s.op.kind == "attention"][0]
    # the Embedding's mask reaches the layer as an input of its own
    assert [plan.dtype_of(key) for key in attention.inputs].count("bool") == 3

    values = dict(zip(plan.input_keys, [keras.ops.convert_to_tensor(ids), mask]))
    for step in plan.steps:
        tensors = [values[key] for key in step.inputs]
        run = step.op.inner.run if step.op.inner is not None else None
        values[step.outputs[0]] = run(tensors) if run else step.op.forward(*tensors)
    np.testing.assert_allclose(values[plan.output_keys[0]], model([ids, mask]), atol=1e-5)


def test_lstm_behind_an_embedding_mask_equals_the_layer():
    helpers.seeded(3)
    model = helpers.randomize(helpers.token_recurrent_classifier(layers.LSTM(4)))
    ids = np.array([[3, 5, 7, 0, 0, 0], [0, 0, 2, 4, 6, 8]], "int32")
    np.testing.assert_allclose(helpers.program_output(model, ids), model(ids), atol=1e-5)


# -- conservation ------------------------------------------------------------------------
CONSERVING = {
    "lstm": lambda: helpers.recurrent_classifier(layers.LSTM(5)),
    "gru": lambda: helpers.recurrent_classifier(layers.GRU(4)),
    "gru_reset_before": lambda: helpers.recurrent_classifier(layers.GRU(4, reset_after=False)),
    "simple_rnn": lambda: helpers.recurrent_classifier(layers.SimpleRNN(4)),
    "bidirectional_concat": lambda: helpers.recurrent_classifier(
        layers.Bidirectional(layers.LSTM(3, return_sequences=True)), pooled=True
    ),
    "bidirectional_sum": lambda: helpers.recurrent_classifier(
        layers.Bidirectional(layers.GRU(3), merge_mode="sum")
    ),
    "time_distributed": lambda: helpers.recurrent_classifier(
        layers.TimeDistributed(layers.Dense(6, activation="relu")), pooled=True
    ),
    "transformer": lambda: helpers.transformer_classifier(features=4),
    "transformer_rms": lambda: helpers.transformer_classifier(features=4, blocks=1, rms=True),
}


@pytest.mark.parametrize("name", slow_unless(CONSERVING, ("lstm", "transformer")))
def test_lrp_epsilon_conserves_relevance_on_bias_free_networks(name):
    helpers.seeded(4)
    model = helpers.bias_free(CONSERVING[name]())
    x = helpers.data((5, 4), seed=4)
    relevance = kx.LRPEpsilon(model, epsilon=1e-9).analyze(x, target=1)
    logit = model(x).numpy()[:, 1]
    # Gates take no relevance, the sums split theirs in proportion, the attention
    # weights and LayerNorm scales are constants: every step conserves, up to the
    # float32 rounding of ~100 chained ops (measured ~1e-6) and the stabilizers.
    error = np.abs(relevance.sum(axis=(1, 2)) - logit).max() / np.abs(logit).max()
    assert error <= 1e-4
    assert np.abs(relevance).max() > 1e-3 * np.abs(logit).max()  # not all zeros


def test_conservation_fails_when_biases_absorb_relevance():
    # The conservation check above can fail: with biases, part of the relevance goes
    # to the bias terms of the gates' and the classifier's linear maps.
    helpers.seeded(4)
    model = helpers.randomize(helpers.recurrent_classifier(layers.LSTM(5)), scale=1.0)
    x = helpers.data((5, 4), seed=4)
    relevance = kx.LRPEpsilon(model, epsilon=1e-9).analyze(x, target=1)
    logit = model(x).numpy()[:, 1]
    assert np.abs(relevance.sum(axis=(1, 2)) - logit).max() / np.abs(logit).max() > 1e-2


# -- the references of Arras et al. ------------------------------------------------------
CELLS = {
    "lstm": (lambda: layers.LSTM(4), helpers.lstm_lrp_reference),
    "gru": (lambda: layers.GRU(4), helpers.gru_lrp_reference),
}


@pytest.mark.parametrize(
    "cell, steps",
    [("lstm", 1), ("lstm", 3), pytest.param("gru", 1, marks=pytest.mark.slow), ("gru", 3)],
)
def test_lrp_epsilon_equals_the_cell_references(cell, steps):
    make, reference = CELLS[cell]
    helpers.seeded(5)
    model = helpers.randomize(helpers.recurrent_classifier(make(), steps=steps))
    x = helpers.data((steps, 4), seed=5)
    relevance = kx.LRPEpsilon(model, epsilon=0.01).analyze(x, target=2)
    layer, dense = model.layers[1], model.layers[2]
    expected = np.stack([reference(layer, dense, sample, 2, eps=0.01) for sample in x])
    # float32 against float64 through a few dozen ops
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # ε reaches the gates' linear maps: another ε gives other values
    other = np.stack([reference(layer, dense, sample, 2, eps=0.5) for sample in x])
    assert np.abs(other - expected).max() > 1e-3 * np.abs(expected).max()


# -- masks -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["lstm", pytest.param("bidirectional_concat", marks=pytest.mark.slow)]
)
def test_masked_steps_get_no_relevance(name):
    helpers.seeded(7)
    pooled = name != "lstm"
    layer = (
        RECURRENT[name]()
        if not pooled
        else layers.Bidirectional(layers.LSTM(3, return_sequences=True))
    )
    model = helpers.randomize(helpers.recurrent_classifier(layer, masking=True, pooled=pooled))
    x = padded()
    relevance = kx.LRPEpsilon(model).analyze(x, target=0)
    assert np.all(relevance[0, 3:] == 0) and np.all(relevance[1, :2] == 0)
    assert np.all(np.abs(relevance[0, :3]).sum(axis=-1) > 0)


def test_padding_tokens_get_no_relevance_through_lstm_and_attention():
    helpers.seeded(8)
    ids = np.array([[3, 5, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6], [9, 0, 0, 0, 0, 0]], "int32")
    for model in (
        helpers.token_recurrent_classifier(layers.LSTM(4)),
        helpers.transformer_classifier(steps=6, features=8, blocks=1, tokens=20),
    ):
        model = helpers.randomize(model)
        relevance = kx.LRPEpsilon(model).analyze(ids, target=1)
        assert relevance.shape == ids.shape
        np.testing.assert_array_equal(relevance[ids == 0], 0.0)
        assert np.all(relevance[ids != 0] != 0)


# -- Integrated Gradients: the gradient path ---------------------------------------------
@pytest.mark.parametrize(
    "name", slow_unless(["lstm", "gru", "bidirectional_concat", "transformer"], ("lstm",))
)
def test_integrated_gradients_on_float_sequences(name):
    helpers.seeded(9)
    model = helpers.randomize(CONSERVING[name]())
    x = helpers.data((5, 4), seed=9, batch=2)
    # a path between two samples (a zero baseline crosses LayerNorm's variance ≈ 0)
    baseline = helpers.data((5, 4), seed=99, batch=2)
    # the library's IG equals IG written with a plain tape on model(x)
    alphas, weights = helpers.trapezoid_rule(16)
    analyzer = kx.create_analyzer("integrated_gradients", model, steps=16, baseline=baseline)
    expected = helpers.reference_ig(model, x, baseline, 0, alphas, weights)
    np.testing.assert_allclose(analyzer.analyze(x, target=0), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru", "bidirectional_concat"])
def test_integrated_gradients_are_complete_on_float_sequences(name):
    helpers.seeded(9)
    model = helpers.randomize(CONSERVING[name]())
    x = helpers.data((5, 4), seed=9, batch=2)
    baseline = helpers.data((5, 4), seed=99, batch=2)
    analyzer = kx.create_analyzer("integrated_gradients", model, steps=256, baseline=baseline)
    difference = model(x).numpy()[:, 0] - model(baseline).numpy()[:, 0]
    total = analyzer.analyze(x, target=0).sum(axis=(1, 2))
    # tanh and sigmoid paths are smooth: the trapezoid error is O(1/steps²). (The
    # transformer's ReLU kinks make it O(1/steps): its IG is checked above only.)
    np.testing.assert_allclose(total, difference, rtol=1e-3, atol=1e-4)


# -- other rules, TimeDistributed, errors ---------------------------------------------------
def test_time_distributed_dense_equals_the_dense_layer_on_sequences():
    helpers.seeded(10)
    dense = layers.Dense(6, activation="relu")
    wrapped = helpers.recurrent_classifier(layers.TimeDistributed(dense), pooled=True)
    inputs = keras.Input((5, 4))
    plain = keras.Model(inputs, wrapped.layers[-1](wrapped.layers[-2](dense(inputs))))
    helpers.randomize(wrapped)
    x = helpers.data((5, 4), seed=10)
    for name in ("lrp.epsilon", "lrp.epsilon_plus_flat"):
        np.testing.assert_allclose(
            kx.create_analyzer(name, wrapped).analyze(x, target=0),
            kx.create_analyzer(name, plain).analyze(x, target=0),
            rtol=1e-5,
            atol=1e-7,
        )


def test_gates_take_relevance_under_proportional_split():
    # the composite decides the products' rule inside the layer too
    helpers.seeded(11)
    model = helpers.bias_free(helpers.recurrent_classifier(layers.LSTM(4)))
    x = helpers.data((5, 4), seed=11)
    split = kx.composites.Composite(
        [("multiply", kx.rules.ProportionalSplit()), ("linear", kx.rules.Epsilon(1e-9))]
    )
    default = kx.LRPEpsilon(model, epsilon=1e-9).analyze(x, target=0)
    relevance = kx.LRP(model, split).analyze(x, target=0)
    assert np.abs(relevance - default).max() > 1e-3 * np.abs(default).max()


def test_a_product_merge_is_refused_with_the_reason():
    helpers.seeded(12)
    model = helpers.recurrent_classifier(layers.Bidirectional(layers.LSTM(3), merge_mode="mul"))
    with pytest.raises(ValueError, match=r"bidirectional.*merge_mode='mul'.*supported: 'concat'"):
        kx.LRPEpsilon(model)
    # the gradient family still runs the layer as one op
    assert kx.create_analyzer("gradient", model).analyze(helpers.data((5, 4))).shape == (4, 5, 4)


def test_a_whole_layer_can_take_one_rule():
    helpers.seeded(13)
    model = helpers.recurrent_classifier(layers.LSTM(4))  # Dense bias 0 (its initializer)
    x = helpers.data((5, 4), seed=13)
    composite = kx.composites.Composite(
        [(layers.LSTM, kx.rules.Gradient()), ("linear", kx.rules.Epsilon(1e-9))]
    )
    relevance = kx.LRP(model, composite).analyze(x, target=0)
    # Dense under ε gives the LSTM output R_h = h ⊙ V[:, 0]; the LSTM passes its gradient
    lstm, dense = model.layers[1], model.layers[2]
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        hidden = lstm(inputs)
    expected = tape.gradient(hidden, inputs, output_gradients=hidden * dense.kernel[:, 0])
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)


def test_a_layer_class_entry_with_a_linear_rule_covers_its_gate_maps():
    helpers.seeded(16)
    model = helpers.randomize(helpers.recurrent_classifier(layers.LSTM(4)))
    x = helpers.data((5, 4), seed=16)
    by_class = kx.composites.Composite(
        [(layers.LSTM, kx.rules.Epsilon(0.01)), ("linear", kx.rules.Flat())]
    )
    by_family = kx.composites.Composite(
        [("dense", kx.rules.Flat()), ("linear", kx.rules.Epsilon(0.01))]
    )
    np.testing.assert_allclose(
        kx.LRP(model, by_class).analyze(x, target=0),
        kx.LRP(model, by_family).analyze(x, target=0),
        rtol=1e-6,
        atol=1e-8,
    )


@pytest.mark.parametrize("name", ["lrp.flat", "lrp.w_square"])
def test_input_independent_rules_inside_the_time_loop(name):
    # Flat and WSquare redistribute over ones shaped like the input: inside the loop
    # they must still reach it. One step of h = tanh([x, h0] [W; U]), then Dense V:
    # the input's share of relevance is the rows of x in the chosen weights (the rows
    # of the zero initial state h0 take the rest, which leaves the network).
    helpers.seeded(17)
    model = helpers.bias_free(helpers.recurrent_classifier(layers.SimpleRNN(3), steps=1))
    x = helpers.data((1, 4), seed=17)
    relevance = kx.create_analyzer(name, model).analyze(x, target=0)
    kernel, recurrent = (w.astype(np.float64) for w in model.layers[1].get_weights()[:2])
    dense = model.layers[2].get_weights()[0].astype(np.float64)
    square = name == "lrp.w_square"
    weigh = np.square if square else np.ones_like
    joint, column = weigh(np.concatenate([kernel, recurrent])), weigh(dense[:, 0])
    to_units = column / column.sum()  # the Dense's share per hidden unit
    from_x = (joint[: len(kernel)] / joint.sum(axis=0)) @ to_units  # per input feature
    logit = model(x).numpy()[:, :1]
    np.testing.assert_allclose(relevance[:, 0], logit * from_x, rtol=1e-5, atol=1e-7)


# -- every lrp.* analyzer runs ---------------------------------------------------------------
SWEEP_MODELS = {
    "lstm": lambda: helpers.recurrent_classifier(layers.LSTM(3), steps=3, features=2),
    "gru": lambda: helpers.recurrent_classifier(layers.GRU(3), steps=3, features=2),
    "bidirectional": lambda: helpers.recurrent_classifier(
        layers.Bidirectional(layers.LSTM(2)), steps=3, features=2
    ),
    # a dense input projection: LayerNorm over 2 features would leave ±1 only
    "transformer": lambda: helpers.transformer_classifier(
        steps=3, features=2, blocks=1, key_dim=2, hidden=4, width=4
    ),
}
LRP_NAMES = [name for name in kx.analyzers.names() if name.startswith(("lrp", "deep_taylor"))]


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(SWEEP_MODELS))
def test_every_lrp_analyzer_runs_through_sequence_layers(model_name):
    helpers.seeded(14)
    model = helpers.randomize(SWEEP_MODELS[model_name]())
    x = helpers.data((3, 2), seed=14, batch=2)
    for name in LRP_NAMES:
        relevance = kx.create_analyzer(name, model).analyze(x, target=0)
        assert relevance.shape == x.shape, name
        assert np.isfinite(relevance).all(), name
        assert np.abs(relevance).max() > 0, name


@pytest.mark.parametrize(
    "name",
    ["lrp.alpha_2_beta_1", pytest.param("lrp.sequential_preset_a_flat", marks=pytest.mark.slow)],
)
def test_presets_run_through_an_lstm_and_a_transformer(name):
    helpers.seeded(15)
    x = helpers.data((3, 2), seed=15, batch=2)
    for model_name in ("lstm", "transformer"):
        model = helpers.randomize(SWEEP_MODELS[model_name]())
        relevance = kx.create_analyzer(name, model).analyze(x, target=0)
        assert relevance.shape == x.shape and np.isfinite(relevance).all()
        assert np.abs(relevance).max() > 0

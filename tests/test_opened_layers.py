"""Layers the table does not know are opened into their keras.ops operations.

Every value is compared with the model itself (exact re-execution), with a tape
gradient, or with the same analysis on a twin whose layer opens when the plan is
built, so the expected values never come from the code under test.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_explain as kx

layers = keras.layers


class GatedDense(layers.Layer):
    """A custom layer written in keras.ops around a sublayer: dense(x) * sigmoid(x @ g)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(units, name="inner_dense")
        self.units = units

    def build(self, input_shape):
        self.gate = self.add_weight(shape=(input_shape[-1], self.units), name="gate")
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(x) * ops.sigmoid(ops.matmul(x, self.gate)) + 0.0


class PrependToken(layers.Layer):
    """ViT's class token: a learned vector put in front of the sequence, tiled to the batch.

    ``ops.shape(x)[0]`` is None on symbolic inputs of unknown batch size, so the call
    can only be opened when the shapes of a run are known.
    """

    def build(self, input_shape):
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), name="token")

    def call(self, x):
        token = ops.tile(self.token, (ops.shape(x)[0], 1, 1))
        return ops.concatenate([token, x], axis=1)


class SortedDense(layers.Layer):
    """A custom layer whose output is sorted: ``sort`` has no entry in the layer table."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(units, name="inner_dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return ops.sort(self.dense(x), axis=-1)


def gated_model(seed=0, layer=GatedDense):
    helpers.seeded(seed)
    inputs = keras.Input((5,))
    h = layer(4, name="gated")(layers.Dense(6, activation="relu", name="first")(inputs))
    return helpers.randomize(keras.Model(inputs, layers.Dense(3, name="logits")(h)), seed)


class PrependTokenByAddition(PrependToken):
    """The same values from operations of any batch size: zeros of x's first row + token."""

    def call(self, x):
        return ops.concatenate([ops.zeros_like(x[:, :1]) + self.token, x], axis=1)


def token_model(layer=PrependToken, seed=0, width=3, pool=layers.Flatten, name="prepend"):
    """Input (4, 3) -> Dense(width) -> ``layer`` -> Dense(2, relu) -> ``pool`` -> Dense(3)."""
    helpers.seeded(seed)
    inputs = keras.Input((4, 3))
    h = layer(name=name)(layers.Dense(width, name="embed")(inputs))
    h = pool()(layers.Dense(2, activation="relu", name="mix")(h))
    return helpers.randomize(keras.Model(inputs, layers.Dense(3, name="logits")(h)), seed)


def test_an_unknown_layer_is_opened_and_reexecuted_exactly():
    model = gated_model()
    plan = helpers.plan_of(model)
    opened = [(s.op.kind, type(s.op.layer).__name__) for s in plan.steps[2:-1]]
    # the sublayer keeps its entry; a matmul with a weight is a fixed linear map of x
    assert ("linear", "Dense") in opened and ("activation", "Sigmoid") in opened
    assert ("sum_pool", "Matmul") in opened and ("multiply", "Multiply") in opened
    assert all(s.op.owner.name == "gated" for s in plan.steps[2:-1])
    x = helpers.data((5,), batch=3)
    values = plan.run([tf.constant(x)])
    np.testing.assert_array_equal(values[plan.output_keys[0]].numpy(), model(x).numpy())
    # gradient through the opened layer equals the tape gradient of the model
    np.testing.assert_allclose(
        kx.Gradient(model).analyze(x, target=1),
        helpers.tape_gradient(model, x, 1),
        rtol=1e-5,
        atol=1e-7,
    )


def test_opening_leaves_the_model_as_it_was():
    model = gated_model()
    gated = model.get_layer("gated")
    before = helpers.node_counts(gated)
    helpers.plan_of(model)
    kx.Gradient(model)
    assert helpers.node_counts(gated) == before
    assert len(model.layers) == 4 and model.get_layer("gated") is gated


def test_the_unsupported_operation_of_an_opened_layer_is_named_with_its_layer():
    with pytest.raises(
        ValueError,
        match=r"of class Sort \(an operation of layer 'gated' of class SortedDense, opened "
        r"into its keras\.ops operations\) has no LRP rule \(op kind 'other'\).*"
        r'kx\.graph\.register_op\("Sort", kind=\.\.\.\) or '
        r"kx\.graph\.register_layer\(SortedDense, kind=\.\.\.\)",
    ):
        kx.LRP(gated_model(layer=SortedDense), "epsilon")


def test_a_layer_needing_static_shapes_is_opened_at_run_time_like_its_twin():
    dynamic, static = token_model(), token_model(PrependTokenByAddition)
    static.set_weights(dynamic.get_weights())
    step = helpers.plan_of(dynamic).steps[1]
    assert step.op.kind == "other" and step.op.deferred is not None
    assert "opened into its operations when the shapes of a run are known" in (
        kx.graph.Plan(dynamic).describe()
    )
    # the twin computes the same values from operations of any batch size: it opens
    # when the plan is built; the token's positions pass no relevance in either
    assert all(s.op.deferred is None for s in helpers.plan_of(static).steps)
    x = helpers.data((4, 3), batch=2)
    for name in ("lrp.epsilon", "lrp.alpha_1_beta_0", "guided_backprop", "deeplift"):
        np.testing.assert_allclose(
            kx.create_analyzer(name, dynamic).analyze(x, target=2),
            kx.create_analyzer(name, static).analyze(x, target=2),
            rtol=1e-6,
            atol=1e-8,
            err_msg=name,
        )
    np.testing.assert_allclose(
        kx.Gradient(dynamic).analyze(x, target=2),
        helpers.tape_gradient(dynamic, x, 2),
        rtol=1e-5,
        atol=1e-7,
    )


class PairsByBatch(layers.Layer):
    """Swin's window partition in small: a reshape to ``(batch, -1, 2)``.

    On symbolic inputs ``ops.shape(x)[0]`` is None, which the recorded reshape would
    keep: the layer is opened when the shapes of a run are known instead.
    """

    def call(self, x):
        return ops.reshape(x, (ops.shape(x)[0], -1, 2))


class PairsAnyBatch(layers.Layer):
    def call(self, x):
        return ops.reshape(x, (-1, 12, 2))


def pairs_model(layer):
    return token_model(layer, width=6, pool=layers.GlobalAveragePooling1D, name="pairs")


def test_a_reshape_holding_the_unknown_batch_size_is_opened_at_run_time():
    dynamic, static = pairs_model(PairsByBatch), pairs_model(PairsAnyBatch)
    static.set_weights(dynamic.get_weights())
    step = helpers.plan_of(dynamic).steps[1]
    assert step.op.deferred is not None
    assert "a reshape to (None, -1, 2) holds a dimension unknown" in step.op.note
    assert all(s.op.deferred is None for s in helpers.plan_of(static).steps)
    x = helpers.data((4, 3), batch=3)
    for name in ("lrp.epsilon", "integrated_gradients"):
        np.testing.assert_allclose(
            kx.create_analyzer(name, dynamic).analyze(x, target=1),
            kx.create_analyzer(name, static).analyze(x, target=1),
            rtol=1e-6,
            atol=1e-8,
            err_msg=name,
        )


def test_describe_lists_each_step_with_its_rule():
    text = kx.LRP(token_model(), "epsilon").describe()
    lines = text.splitlines()
    assert lines[0].split() == ["step", "class", "kind", "rule", "note"]
    assert lines[1].split()[:4] == ["embed", "Dense", "linear", "Epsilon(epsilon=1e-07)"]
    assert "prepend" in lines[2] and "its operations' rules, when it is opened" in lines[2]
    assert kx.Gradient(gated_model()).describe().splitlines()[1].split() == [
        "first",
        "Dense",
        "linear",
        "gradient",
    ]


class GatheredDense(layers.Layer):
    """A custom layer calling a backend function: ``tf.gather`` of a dense output.

    TensorFlow functions cannot take symbolic tensors, so its call cannot be
    opened; a registered stand-in written in ``keras.ops`` can.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(units, name="inner_dense")
        self.order = [2, 0, 3, 1]

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return tf.gather(self.dense(x), self.order, axis=-1)


class TakenDense(GatheredDense):
    """Its twin, written in keras.ops: opened without help."""

    def call(self, x):
        return ops.take(self.dense(x), self.order, axis=-1)


def test_a_layer_calling_a_backend_function_is_opened_through_its_registered_stand_in():
    backend, twin = gated_model(layer=GatheredDense), gated_model(layer=TakenDense)
    twin.set_weights(backend.get_weights())
    x = helpers.data((5,), batch=3)
    with pytest.raises(ValueError, match=r"class GatheredDense has no LRP rule.*symbolic"):
        kx.LRP(backend, "epsilon")
    entry = kx.graph.register_layer(
        GatheredDense,
        kind="other",
        call=lambda layer: lambda inputs: ops.take(layer.dense(inputs), layer.order, axis=-1),
    )
    try:
        plan = helpers.plan_of(backend)
        kinds = [(s.op.kind, type(s.op.layer).__name__) for s in plan.steps[2:-1]]
        assert kinds == [("linear", "Dense"), ("reshape", "Take")]
        values = plan.run([tf.constant(x)])
        np.testing.assert_array_equal(values[plan.output_keys[0]].numpy(), backend(x).numpy())
        for name in ("lrp.epsilon", "lrp.alpha_2_beta_1"):
            np.testing.assert_array_equal(
                kx.create_analyzer(name, backend).analyze(x, target=1),
                kx.create_analyzer(name, twin).analyze(x, target=1),
                err_msg=name,
            )
    finally:
        kx.graph.unregister(entry)
    with pytest.raises(ValueError, match=r"Entry for .*: a stand-in call opens a layer of kind "):
        kx.graph.register_layer(GatheredDense, kind="reshape", call=lambda layer: layer.call)


class ScoredBlock(layers.Layer):
    """A block returning ``(y, None)``, as DeiT's blocks do when no scores are asked for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(4, activation="relu")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(x), None


class ScoredEncoder(layers.Layer):
    """DeiT's encoder in small: blocks, and empty arrays for what was not asked for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [ScoredBlock(name=f"block_{i}") for i in range(2)]

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)

    def call(self, x):
        for block in self.blocks:
            x, _ = block(x)
        return x, ops.empty((0, 4)), ops.empty((0, 4))


class PlainEncoder(ScoredEncoder):
    """Its twin: the same blocks, one output."""

    def call(self, x):
        for block in self.blocks:
            x = block.dense(x)
        return x


def test_outputs_no_layer_reads_are_left_out_of_an_opened_layer():
    def model(encoder):
        helpers.seeded(0)
        inputs = keras.Input((4,))
        hidden = encoder(name="encoder")(layers.Dense(4, name="first")(inputs))
        hidden = hidden[0] if isinstance(hidden, tuple | list) else hidden
        return helpers.randomize(keras.Model(inputs, layers.Dense(3, name="logits")(hidden)), 0)

    scored, plain = model(ScoredEncoder), model(PlainEncoder)
    plain.set_weights(scored.get_weights())
    plan = helpers.plan_of(scored)
    assert [type(s.op.layer).__name__ for s in plan.steps[1:-1]] == ["Dense"] * 4
    x = helpers.data((4,), batch=3)
    values = plan.run([tf.constant(x)])
    np.testing.assert_array_equal(values[plan.output_keys[0]].numpy(), scored(x).numpy())
    for name in ("lrp.epsilon", "lrp.attn", "gradient"):
        np.testing.assert_array_equal(
            kx.create_analyzer(name, scored).analyze(x, target=1),
            kx.create_analyzer(name, plain).analyze(x, target=1),
            err_msg=name,
        )

"""The layer table: lookup along the MRO, registration, linear views, the lists generated from it.

The worked example of docs/guide/extending.md (a new layer seen everywhere after one
registration) is executed in tests/across/test_extension_points.py.
"""

import pathlib
import re

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers


GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "extending.md"


GENERATED = re.compile(r"% BEGIN supported-layers\n\n(.*?)\n% END supported-layers", re.DOTALL)


class Twice(layers.Layer):
    """A layer the table does not know, whose call cannot be opened (a TensorFlow op)."""

    def call(self, x):
        return tf.math.scalar_mul(2.0, x)


def test_the_guide_lists_the_table():
    (copy,) = GENERATED.findall(GUIDE.read_text(encoding="utf-8"))
    expected = kx.graph.supported_layers(markdown=True)
    assert copy == expected, (
        "docs/guide/extending.md's supported layers differ from the layer table; paste "
        "kx.graph.supported_layers(markdown=True) between its BEGIN and END lines:\n" + expected
    )


def test_lrp_errors_list_the_table():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2)(Twice(name="twice")(inputs)))
    with pytest.raises(ValueError) as error:
        kx.LRPEpsilon(model)
    assert f"Supported: {kx.graph.supported_layers()}. To proceed" in str(error.value)


def test_subclasses_inherit_their_base_entry():
    class MyConv(layers.Conv2D):
        pass

    class MyLSTM(layers.LSTM):
        pass

    helpers.seeded(0)
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, layers.Flatten()(MyConv(3, 3, name="mine")(inputs)))
    assert [step.op.kind for step in helpers.plan_of(model).steps] == ["linear", "reshape"]
    # the "conv" family of composites: EpsilonPlus' convolution rule
    rules = kx.LRPEpsilonPlus(model).rule_of("mine")
    assert repr(rules) == "[AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)]"
    assert kx.features.receptive_field(model, "mine").size == (3, 3)
    # a recurrent subclass is re-executed by the LSTM program, exactly as the layer
    recurrent = helpers.randomize(helpers.recurrent_classifier(MyLSTM(4)))
    assert "recurrent" in helpers.program_kinds(recurrent).values()
    x = helpers.data((5, 4))
    np.testing.assert_allclose(
        helpers.program_output(recurrent, x), recurrent(x).numpy(), rtol=1e-5, atol=1e-6
    )


def test_names_are_looked_up_in_their_own_namespace():
    class Add(layers.Layer):  # a layer named like the keras.ops class Add (not openable)
        def call(self, x, y):
            return tf.add(x, y)

    first, second = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([first, second], [Add()(first, second), first + second])
    steps = helpers.plan_of(model).steps
    kinds = {isinstance(step.op.layer, layers.Layer): step.op.kind for step in steps}
    assert [type(step.op.layer).__name__ for step in steps] == ["Add", "Add"]
    assert kinds == {True: "other", False: "sum_pool"}  # the layer is unknown, the op is not

    # keras.applications' layers are known by their class name (they are not importable)
    class LayerScale(layers.Layer):
        def build(self, input_shape):
            self.gamma = self.add_weight(shape=input_shape[-1:], initializer="ones")

        def call(self, x):
            return x * self.gamma

    inputs = keras.Input((3,))
    model = keras.Model(inputs, LayerScale()(inputs))
    model.layers[-1].gamma.assign(np.array([1.0, -2.0, 0.5], "float32"))
    (step,) = helpers.plan_of(model).steps
    assert (step.op.kind, step.op.linear.elementwise) == ("linear", True)
    kernel, bias = step.op.linear.weights()
    np.testing.assert_array_equal(kernel.numpy(), [1.0, -2.0, 0.5])
    assert bias is None


def test_a_later_entry_overrides_and_unregister_restores():
    inputs = keras.Input((6, 6, 2))
    h = layers.Dropout(0.5, name="dropout")(inputs)
    model = keras.Model(inputs, layers.SpatialDropout2D(0.5, name="spatial")(h))
    before = [step.op.kind for step in helpers.plan_of(model).steps]
    entry = kx.graph.register_layer(layers.Dropout, kind="other")
    try:
        # SpatialDropout2D subclasses Dropout but has its own entry
        assert [step.op.kind for step in helpers.plan_of(model).steps] == ["other", "reshape"]
    finally:
        kx.graph.unregister(entry)
    assert before == [step.op.kind for step in helpers.plan_of(model).steps] == ["reshape"] * 2
    with pytest.raises(ValueError, match=r"not registered \(already removed\?\)"):
        kx.graph.unregister(entry)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (dict(kind="linear"), ValueError, r"kind 'linear' needs linear=.*Received: linear=None"),
        (dict(kind="blend"), ValueError, r"kind must be one of \('linear'.*Received: kind='blend'"),
        (
            dict(kind="sum_pool", family="conv"),
            ValueError,
            r"a layer family is a family of linear layers.*Received: family='conv'",
        ),
        (
            dict(kind="sum_pool", field="diagonal"),
            ValueError,
            r"field must be one of \(None, 'window'.*Received: field='diagonal'",
        ),
        (dict(kind="reshape", role="head"), ValueError, r"Received: role='head'"),
        (
            dict(layer=int, kind="reshape"),
            TypeError,
            r"needs a keras.layers.Layer subclass or a class name; use register_op.*layer=<class",
        ),
        (dict(op=Twice, kind="reshape"), TypeError, r"class name \(a string, e\.g\. 'Erf'\)"),
    ],
)
def test_registration_errors(call, error, message):
    call = dict(call)
    with pytest.raises(error, match=message):
        if "op" in call:
            kx.graph.register_op(call.pop("op"), **call)
        else:
            kx.graph.register_layer(call.pop("layer", Twice), **call)
    assert kx.graph.entry_of(Twice()) is None  # nothing was registered


def sinh_model(seed=0):
    helpers.seeded(seed)
    inputs = keras.Input((5,))
    h = keras.ops.sinh(layers.Dense(4, name="hidden")(inputs))
    return helpers.randomize(keras.Model(inputs, layers.Dense(3, name="logits")(h)), seed)


def test_a_registered_op_gets_its_rule():
    model = sinh_model()
    x = helpers.data((5,), seed=1)
    with pytest.raises(
        ValueError,
        match=r"of class Sinh has no LRP rule \(op kind 'other'\).*"
        r'kx\.graph\.register_op\("Sinh", kind=\.\.\.\)',
    ):
        kx.LRPEpsilon(model)
    entry = kx.graph.register_op("Sinh", kind="activation", activation="sinh")
    try:
        step = helpers.plan_of(model).steps[1]
        assert (step.op.kind, step.op.activation) == ("activation", "sinh")
        assert "sinh" in kx.graph.supported_layers().split("raw keras.ops: ")[1].split(", ")
        relevance = kx.LRPEpsilon(model, epsilon=0.01).analyze(x)
    finally:
        kx.graph.unregister(entry)
    # numpy: ε on both Dense layers, relevance passing through sinh unchanged (Pass)
    epsilon = helpers.ref_from_repr("Epsilon(epsilon=0.01)")
    weights = [
        (v.numpy().astype(np.float64) for v in model.get_layer(n).weights)
        for n in ("hidden", "logits")
    ]
    (kernel1, bias1), (kernel2, bias2) = weights
    hidden = np.sinh(x.astype(np.float64) @ kernel1 + bias1)
    logits = hidden @ kernel2 + bias2
    rows, target = np.arange(len(x)), logits.argmax(axis=1)
    expected = np.zeros_like(logits)
    expected[rows, target] = logits[rows, target]
    ones = np.ones_like(kernel2, bool)
    expected = helpers.rule_reference(epsilon, hidden, kernel2, bias2, expected, ones)
    expected = helpers.rule_reference(epsilon, x, kernel1, bias1, expected, ones)
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)


def test_linear_view_evaluates_the_layer_with_any_weights():
    model = helpers.conv_sequential()
    plan = helpers.plan_of(model)
    step = plan.steps[0]
    kernel, bias = step.op.linear.weights()
    x = tf.constant(helpers.data((8, 8, 2)))
    np.testing.assert_array_equal(
        step.op.linear.apply(x, kernel, bias).numpy(), step.op.forward(x).numpy()
    )
    positive = step.op.linear.apply(x, tf.nn.relu(kernel), None).numpy()
    expected = tf.nn.conv2d(x, tf.nn.relu(kernel), 1, "SAME").numpy()
    np.testing.assert_allclose(positive, expected, rtol=1e-5, atol=1e-6)

"""The graph engine re-executes every supported model exactly, in inference mode."""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers


def run_plan(model, x):
    plan = helpers.plan_of(model)
    inputs = [tf.constant(item) for item in (x if isinstance(x, list) else [x])]
    values = plan.run(inputs)
    return plan, [values[key].numpy() for key in plan.output_keys]


def batchnorm_dropout(seed=0):
    """Dense -> BN -> ReLU -> Dropout -> Conv-free head, with non-trivial BN statistics."""
    helpers.seeded(seed)
    inputs = keras.Input((6,))
    h = layers.Dense(8)(inputs)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.ReLU()(h)
    h = layers.Dropout(0.5)(h)
    h = layers.GaussianNoise(1.0)(h)
    outputs = layers.Dense(3)(h)
    return helpers.randomize(keras.Model(inputs, outputs, name="bn_dropout"), seed)


def conv_batchnorm(seed=0):
    """Conv -> BN (channels last) -> Activation -> AveragePooling -> GAP -> Dense."""
    helpers.seeded(seed)
    inputs = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    h = layers.BatchNormalization(name="bn", center=False)(h)
    h = layers.Activation("relu")(h)
    h = layers.AveragePooling2D(2)(h)
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(3)(h)
    return helpers.randomize(keras.Model(inputs, outputs, name="conv_bn"), seed)


def test_reexecution_equals_model_exactly(graph_model):
    model, x = graph_model
    plan, (output,) = run_plan(model, x)
    np.testing.assert_array_equal(output, model(x).numpy())
    assert not plan.unsupported(
        {"linear", "activation", "softmax", "max_pool", "sum_pool", "reshape"}
    )


def test_reexecution_multi_output_exactly(multi_input_model, multi_input_data):
    _, outputs = run_plan(multi_input_model, multi_input_data)
    expected = multi_input_model(multi_input_data)
    assert len(outputs) == 2
    for got, want in zip(outputs, expected):
        np.testing.assert_array_equal(got, want.numpy())


@pytest.mark.parametrize("factory,shape", [(batchnorm_dropout, (6,)), (conv_batchnorm, (8, 8, 3))])
def test_reexecution_uses_inference_mode(factory, shape):
    model = factory()
    x = helpers.data(shape, batch=5)
    _, (output,) = run_plan(model, x)
    np.testing.assert_array_equal(output, model(x, training=False).numpy())
    # The fixture is meaningful: training mode gives something else.
    assert not np.allclose(output, model(x, training=True).numpy(), atol=1e-3)


def test_reexecution_inside_tf_function(graph_model):
    model, x = graph_model
    plan = helpers.plan_of(model)
    compiled = tf.function(lambda t: plan.run([t])[plan.output_keys[0]])
    np.testing.assert_allclose(
        compiled(tf.constant(x)).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6
    )


def test_fused_activations_are_split_and_nested_models_inlined():
    plan = helpers.plan_of(helpers.nested())
    kinds = [(step.op.kind, step.op.activation) for step in plan.steps]
    assert kinds == [
        ("linear", None),
        ("activation", "relu"),  # backbone Dense(relu), split in two
        ("linear", None),  # backbone Dense
        ("activation", "relu"),  # ReLU()
        ("linear", None),
        ("softmax", "softmax"),  # Dense(softmax), split in two
    ]
    assert [step.first_linear for step in plan.steps] == [True] + [False] * 5
    backbone = plan.find_layer("backbone", "layer")
    assert all(any(item is layer for item in plan.layers) for layer in backbone.layers)
    assert plan.steps[0].op.layer is backbone.layers[0]


def test_every_relu_form_is_an_activation_step():
    plan = helpers.plan_of(helpers.functional_relu_forms())
    relus = [step for step in plan.steps if step.op.kind == "activation"]
    assert len(relus) == 4
    assert all(step.op.activation == "relu" for step in relus)
    kinds = [type(step.op.layer).__name__ for step in relus]
    assert kinds[1:3] == ["Activation", "ReLU"]
    assert not isinstance(relus[3].op.layer, keras.layers.Layer)  # keras.ops.relu


def test_shared_layer_runs_twice_with_the_same_weights():
    model = helpers.shared_layer()
    plan = helpers.plan_of(model)
    shared = [step for step in plan.steps if step.op.name == "shared"]
    assert len(shared) == 2
    assert shared[0].op.layer is shared[1].op.layer is model.get_layer("shared")
    assert shared[1].inputs != shared[0].inputs


def test_raw_ops_are_classified():
    plan = helpers.plan_of(helpers.raw_ops())
    kinds = [step.op.kind for step in plan.steps]
    assert kinds == ["linear", "linear", "sum_pool", "activation", "linear"]


def test_hook_sees_every_step_and_can_change_outputs():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,))
    plan = helpers.plan_of(model)
    seen = []

    def doubling(step, inputs):
        seen.append(step)
        output = step.op.forward(*inputs)
        return output * 2.0 if step is plan.steps[-1] else output

    values = plan.run([tf.constant(x)], doubling)
    assert seen == plan.steps
    np.testing.assert_array_equal(values[plan.output_keys[0]].numpy(), 2.0 * model(x).numpy())


def test_run_skips_steps_not_needed_for_targets():
    model = helpers.dense_sequential(softmax=False)
    plan = helpers.plan_of(model)
    seen = []

    def recording(step, inputs):
        seen.append(step)
        return step.op.forward(*inputs)

    first = plan.steps[1].outputs[0]
    values = plan.run([tf.constant(helpers.data((6,)))], recording, targets=[first])
    assert seen == plan.steps[:2]
    assert plan.output_keys[0] not in values


def test_find_layer_errors_name_the_choices():
    plan = helpers.plan_of(helpers.nested())
    assert plan.find_layer("backbone", "at_layer").name == "backbone"
    with pytest.raises(ValueError, match=r"No layer named 'nope'.*layer='nope'.*Available"):
        plan.find_layer("nope", "at_layer")
    with pytest.raises(ValueError, match="is not part of model"):
        plan.find_layer(keras.layers.Dense(2), "at_layer")


def test_unbuilt_sequential_error():
    model = keras.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match=r"not built.*keras.Input.*model.build"):
        helpers.plan_of(model)
    with pytest.raises(ValueError, match=r"is not built.*Build it first"):
        kx.Gradient(model)
    with pytest.raises(ValueError, match=r"is not built"):
        kx.create_analyzer("guided_backprop", model)


def test_subclassed_model_with_rule_based_analyzer_error(subclassed_model):
    with pytest.raises(
        TypeError,
        match=r"'subclassed' of class Subclassed is a subclassed "
        r"model.*gradient",
    ):
        kx.GuidedBackprop(subclassed_model)
    with pytest.raises(TypeError, match="subclassed model with no layer graph"):
        kx.create_analyzer("deconvnet", subclassed_model)


def test_plan_does_not_modify_the_model():
    model = helpers.nested()
    config = model.get_config()
    weights = model.get_weights()
    helpers.plan_of(model)
    assert model.get_config() == config
    assert model.layers[-1].activation.__name__ == "softmax"
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_a_nested_model_called_by_keyword_is_inlined():
    """KerasHub's Gemma3CausalLM calls its backbone as ``backbone(inputs=x)``."""
    helpers.seeded(0)
    inner_input = keras.Input((3,), name="inner_x")
    inner = keras.Model(inner_input, keras.layers.Dense(2, name="inner_dense")(inner_input))
    outer_input = keras.Input((3,), name="x")
    model = keras.Model(outer_input, inner(inputs=outer_input))
    x = helpers.data((3,), batch=4)
    plan = helpers.plan_of(model)
    values = plan.run([tf.constant(x)])
    np.testing.assert_allclose(values[plan.output_keys[0]].numpy(), model(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        kx.Gradient(model).analyze(x, target=1), helpers.tape_gradient(model, x, 1), rtol=1e-6
    )

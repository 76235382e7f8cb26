"""The worked examples of the docs: a user-written rule, canonizer and layer.

The code blocks are read from the pages (docs/architecture.md, and
docs/guide/extending.md for the layer) and executed as they are, so the
documentation cannot drift from the library. The rule (LRP-ε without bias) is
checked against its formula on a Dense layer and an unrolled Conv2D, and through
a whole network against a layer-by-layer numpy LRP; the canonizer (Rescaling
folded into the layer that reads it) must re-execute the model, leave inexact
cases alone, and change the relevance exactly by the factor of the step it
removes. The layer (one registration in the layer table) must be seen everywhere:
its op kind, LRP's rules and values, receptive fields, CAM's default layer and the
supported list.
"""

import contextlib
import linecache
import pathlib
import re

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "architecture.md"
GUIDE = DOCS / "guide" / "extending.md"
BLOCK = re.compile(r"```\{code-block\} python\n:name: ([\w-]+)\n\n(.*?)\n```", re.DOTALL)


def page_blocks(page=PAGE):
    return dict(BLOCK.findall(page.read_text(encoding="utf-8")))


def run_block(name, page=PAGE, **namespace):
    """Execute the named code block of the page; returns its namespace."""
    blocks = page_blocks(page)
    assert name in blocks, f"no code block named {name!r} in {page.name}: {sorted(blocks)}"
    source = blocks[name] + "\n"
    filename = f"<{page.relative_to(DOCS.parent)}#{name}>"
    # registered like a file, so that AutoGraph (inspect.getsource) can read the rule
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace.setdefault("__name__", f"{page.stem}_{name.replace('-', '_')}")
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def test_the_pages_have_their_executed_blocks():
    assert sorted(page_blocks()) == [
        "worked-example-canonizer",
        "worked-example-canonizer-use",
        "worked-example-rule",
        "worked-example-rule-use",
    ]
    assert sorted(page_blocks(GUIDE)) == ["add-a-layer", "worked-example-analyzer"]


# -- the rule: LRP-ε without bias ---------------------------------------------------------
def ib_reference(x, matrix, relevance, eps):
    """R_i = sum_j x_i w_ij / stab(sum_i' x_i' w_i'j) R_j, on x (B, I), matrix (I, J)."""
    x, w, r = (np.asarray(a, np.float64) for a in (x, matrix, relevance))
    return x * (helpers.safe_div(r, x @ w, eps) @ w.T)  # eps = 0: zeros of z pass nothing


def rule_gradient(rule, step, x, relevance):
    """The rule's output and backward pass at one step, as tests/lrp/test_rules.py runs rules."""
    tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        output = rule(step, [tensor])
    result = tape.gradient(output, tensor, output_gradients=tf.constant(relevance))
    return output.numpy(), result.numpy()


def dense_layer():
    helpers.seeded(1)
    model = keras.Sequential([keras.Input((7,)), layers.Dense(5)])
    return helpers.randomize(model, seed=2), model.layers[0].kernel.numpy()


def conv_layer():
    helpers.seeded(3)
    model = helpers.randomize(
        keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(3, 3, padding="same")]), seed=4
    )
    kernel, bias = (v.numpy() for v in model.layers[0].weights)
    matrix, _, _ = helpers.conv_matrix(kernel, bias, (5, 5, 2), "same")
    return model, matrix


@pytest.mark.parametrize("factory", [dense_layer, conv_layer], ids=["dense", "conv2d"])
@pytest.mark.parametrize("eps", [0.0, 1e-7, 0.5])
def test_rule_matches_its_formula(factory, eps):
    rule = run_block("worked-example-rule")["EpsilonIgnoreBias"](eps)
    assert repr(rule) == f"EpsilonIgnoreBias(epsilon={eps!r})"
    model, matrix = factory()
    step = kx.graph.Plan(model).steps[0]
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, *model.input_shape[1:])).astype("float32")
    relevance = rng.normal(size=(3, *model.output_shape[1:])).astype("float32")
    output, result = rule_gradient(rule, step, x, relevance)
    # the forward value is the layer's own, bias included
    np.testing.assert_allclose(output, model(x).numpy(), rtol=1e-5, atol=1e-6)
    expected = ib_reference(x.reshape(3, -1), matrix, relevance.reshape(3, -1), eps)
    np.testing.assert_allclose(result.reshape(3, -1), expected, rtol=2e-4, atol=2e-5)
    # the bias matters to LRP-ε, so leaving it out is a real change on this fixture
    with_bias = kx.rules.Epsilon(eps) if eps else kx.rules.Z()
    _, epsilon_result = rule_gradient(with_bias, step, x, relevance)
    assert np.abs(epsilon_result.reshape(3, -1) - expected).max() > 1e-2


def dense_relu_net(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(8, activation="relu"),
            layers.Dense(5, activation="relu"),
            layers.Dense(3),
        ]
    )
    return helpers.randomize(model, seed)


def test_rule_through_a_network_against_layer_by_layer_numpy():
    model = dense_relu_net()
    x = helpers.data((6,), seed=3)
    namespace = run_block("worked-example-rule")
    namespace = run_block("worked-example-rule-use", model=model, x=x, **namespace)
    assert repr(namespace["analyzer"].rule_of(model.layers[0])) == (
        "[EpsilonIgnoreBias(epsilon=1e-07), Pass()]"
    )
    relevance = namespace["relevance"]
    # layer-by-layer numpy LRP from the argmax logit, bias-free denominators
    values = [x.astype(np.float64)]
    for layer in model.layers:
        kernel, bias = (v.numpy().astype(np.float64) for v in layer.weights)
        z = values[-1] @ kernel + bias
        values.append(np.maximum(z, 0) if layer is not model.layers[-1] else z)
    logits = values[-1]
    target = logits.argmax(axis=1)
    rows = np.arange(len(x))
    expected = np.zeros_like(logits)
    expected[rows, target] = logits[rows, target]
    for layer, a in zip(reversed(model.layers), reversed(values[:-1])):
        expected = ib_reference(a, layer.kernel.numpy(), expected, 1e-7)
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)
    # no bias absorbs relevance: the input relevance sums to the logit, biases and all,
    # except where a neuron's contributions sum to exactly 0: a logit whose hidden
    # inputs are all 0 (dead ReLUs) is pure bias and passes nothing on
    sums, explained = relevance.sum(axis=1), logits[rows, target]
    alive = values[-2].any(axis=1)
    assert 2 <= alive.sum() < len(x)  # both regimes occur on this fixture
    np.testing.assert_allclose(sums[alive], explained[alive], rtol=1e-4)
    np.testing.assert_array_equal(sums[~alive], 0.0)
    assert np.all(explained[~alive] != 0)
    # while LRP-ε with bias does not conserve on this fixture (non-zero biases)
    epsilon_sums = kx.LRPEpsilon(model).analyze(x).sum(axis=1)
    assert np.abs(epsilon_sums[alive] - explained[alive]).max() > 1e-2


# -- the canonizer: Rescaling folded into the layer that reads it ----------------------------
def rescaled_model(scale, offset, head="conv", padding="same", seed=0):
    """Rescaling -> Conv2D (or Dense) -> ReLU -> Conv2D -> ReLU -> pooling -> Dense, with biases."""
    helpers.seeded(seed)
    if head == "dense":
        inputs = keras.Input((12,))
        h = layers.Rescaling(scale, offset, name="rescaling")(inputs)
        h = layers.Dense(8, activation="relu", name="first")(h)
        outputs = layers.Dense(3, name="logits")(h)
    else:
        inputs = keras.Input((8, 8, 3))
        h = layers.Rescaling(scale, offset, name="rescaling")(inputs)
        h = layers.Conv2D(4, 3, padding=padding, activation="relu", name="first")(h)
        h = layers.Conv2D(5, 3, activation="relu", name="second")(h)
        h = layers.GlobalAveragePooling2D()(h)
        outputs = layers.Dense(3, name="logits")(h)
    return helpers.randomize(keras.Model(inputs, outputs), seed)


def pixels(shape, seed=0):
    # raw pixel values, none 0: the ε-rule on the Rescaling step then only rescales
    return np.random.default_rng(seed).uniform(1.0, 255.0, (3, *shape)).astype("float32")


CASES = {
    "conv_same_no_offset": (1 / 255, 0.0, "conv", "same"),
    "conv_valid_offset": (1 / 127.5, -1.0, "conv", "valid"),
    "dense_offset": (1 / 127.5, -1.0, "dense", "same"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_folded_plan_reexecutes_the_model(case):
    scale, offset, head, padding = CASES[case]
    model = rescaled_model(scale, offset, head, padding)
    plan = kx.graph.Plan(model)
    fold = run_block("worked-example-canonizer")["RescalingFold"]()
    rewritten = fold(plan, set(plan.input_keys) | set(plan.output_keys))
    names = [step.op.name for step in rewritten.steps]
    assert names[0] == "rescaling+first" and "rescaling" not in names
    assert len(rewritten.steps) == len(plan.steps) - 1
    assert rewritten.steps[0].first_linear
    assert [step.op.name for step in plan.steps][0] == "rescaling"  # the plan is unchanged
    x = pixels(model.input_shape[1:])
    (output,) = (rewritten.run([tf.constant(x)])[key].numpy() for key in rewritten.output_keys)
    # the fold reorders float32 arithmetic ((x s) W vs x (s W), the offset in the
    # bias): equal to rounding, a few ulps of the logits
    np.testing.assert_allclose(output, model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_inexact_or_kept_rescaling_is_not_folded():
    fold = run_block("worked-example-canonizer")["RescalingFold"]()
    # an offset with "same" padding: the zero padding would be shifted, not exact
    model = rescaled_model(1 / 127.5, -1.0, "conv", "same")
    plan = kx.graph.Plan(model)
    keep = set(plan.input_keys) | set(plan.output_keys)
    assert [s.op.name for s in fold(plan, keep).steps] == [s.op.name for s in plan.steps]
    # what folding it anyway would compute differs from the model at the border
    kernel, bias = (v.numpy() for v in model.get_layer("first").weights)
    x = pixels((8, 8, 3))
    naive = keras.ops.conv(x, kernel * np.float32(1 / 127.5), padding="same").numpy()
    naive = naive + bias - kernel.sum(axis=(0, 1, 2))
    exact = model.get_layer("first").convolution_op(x / np.float32(127.5) - 1, kernel).numpy()
    assert np.abs(naive - (exact + bias)).max() > 1e-2
    # a value the analysis needs (at_layer) stays computed
    kept = fold(plan, keep | {plan.output_key_of(model.get_layer("rescaling"))})
    assert [s.op.name for s in kept.steps] == [s.op.name for s in plan.steps]


@pytest.mark.parametrize("case", ["conv_same_no_offset", "conv_valid_offset"])
def test_folded_relevance_differs_by_the_removed_step_only(case):
    scale, offset, head, padding = CASES[case]
    model = rescaled_model(scale, offset, head, padding)
    x = pixels((8, 8, 3))
    namespace = run_block("worked-example-canonizer")
    folded = run_block("worked-example-canonizer-use", model=model, x=x, **namespace)
    analyzer = folded["analyzer"]
    assert [s.op.name for s in analyzer.plan.steps if s.first_linear] == ["rescaling+first"]
    assert repr(analyzer.rule_of("first")[0]) == "ZBox(low=0.0, high=255.0, epsilon=1e-07)"
    assert analyzer.rule_of("rescaling") == []
    # the same bounds in the units the first convolution reads without the fold
    low, high = 0.0 * scale + offset, 255.0 * scale + offset
    plain = kx.LRPEpsilonGammaBox(model, low=low, high=high)
    assert repr(plain.rule_of("rescaling")) == "[Pass()]"
    # relevance passes through the Rescaling step, and the fold is exact: the same result
    scale_of = np.abs(folded["relevance"]).max()
    np.testing.assert_allclose(
        plain.analyze(x), folded["relevance"], rtol=2e-4, atol=1e-6 * scale_of
    )
    # with the ε-rule on the step (a composite entry for "rescale"), it multiplies the
    # relevance of its output by x s / stab(x s + o); everything upstream is the same.
    # The denominator is the layer's float32 output (it can be tiny), so it is taken in
    # float32 as the layer computes it
    preset = kx.composites.get("epsilon_gamma_box", low=low, high=high)
    on_rescale = kx.composites.Composite(
        [("rescale", kx.rules.Epsilon()), *preset.rules], first=preset.first
    )
    unfolded = kx.LRP(model, on_rescale).analyze(x)
    xs = x * np.float32(scale)
    output = (xs + np.float32(offset)).astype(np.float64)
    factor = xs.astype(np.float64) / helpers.stab(output, 1e-7)
    expected = folded["relevance"] * factor
    np.testing.assert_allclose(unfolded, expected, rtol=2e-4, atol=1e-6 * np.abs(expected).max())
    if offset:
        # the factor is what the fold removes: near mid-gray it is far from 1
        assert np.abs(factor).max() > 10


# -- the layer: one entry of the layer table -------------------------------------------------
@contextlib.contextmanager
def guide_layer():
    """The guide's WeightedPooling2D, registered by its block, unregistered on exit."""
    namespace = run_block("add-a-layer", page=GUIDE)
    try:
        yield namespace
    finally:
        kx.graph.unregister(namespace["entry"])


def pooled_cnn(layer_class, seed=0):
    """Conv2D(3x3, same) -> the guide's layer -> global average pooling -> Dense."""
    helpers.seeded(seed)
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    h = layer_class(name="pool")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, layers.Dense(3, name="head")(h))


class Twice(layers.Layer):
    """A layer the table does not know, whose call cannot be opened (a TensorFlow op)."""

    def call(self, x):
        return tf.math.scalar_mul(2.0, x)


def pooled_dense(layer_class, unknown=False, seed=0):
    """The guide's layer on (4, 4, 2) with weights (0.8, -0.6), Flatten, Dense(3)."""
    helpers.seeded(seed)
    inputs = keras.Input((4, 4, 2))
    h = layer_class(name="pool")(inputs)
    h = Twice(name="twice")(h) if unknown else h
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Flatten()(h)))
    model.get_layer("pool").kernel.assign(np.array([0.8, -0.6], "float32"))
    return helpers.randomize(model, seed)


def pooled_dense_reference(model, x, pool_rule, head_rule):
    """Layer-by-layer numpy LRP: the pooling as the matrix diag(w) A, A the 2x2 mean."""
    weights = model.get_layer("pool").kernel.numpy().astype(np.float64)
    matrix = np.diag(np.tile(weights, 16)) @ helpers.average_pool_matrix(4, 4, 2, 2)
    kernel, bias = (v.numpy().astype(np.float64) for v in model.get_layer("head").weights)
    flat = x.reshape(len(x), -1).astype(np.float64)
    pooled = flat @ matrix
    logits = pooled @ kernel + bias
    rows, target = np.arange(len(x)), logits.argmax(axis=1)
    relevance = np.zeros_like(logits)
    relevance[rows, target] = logits[rows, target]
    relevance = helpers.rule_reference(
        head_rule, pooled, kernel, bias, relevance, np.ones_like(kernel, bool)
    )
    relevance = helpers.rule_reference(
        pool_rule, flat, matrix, np.zeros(matrix.shape[1]), relevance, matrix != 0
    )
    return relevance.reshape(x.shape)


def test_a_new_layer_is_one_entry_seen_everywhere():
    x = helpers.data((4, 4, 2), seed=2)
    with guide_layer() as namespace:
        layer_class = namespace["WeightedPooling2D"]
        assert kx.graph.entry_of(layer_class()) is namespace["entry"]
        # the plan: a mixing linear step with the view
        cnn, model = pooled_cnn(layer_class), pooled_dense(layer_class)
        steps = kx.graph.Plan(cnn).steps
        assert [step.op.kind for step in steps] == [
            "linear",
            "activation",
            "linear",
            "sum_pool",
            "linear",
        ]
        pool = steps[2]
        assert not pool.op.linear.elementwise and not pool.first_linear
        assert kx.graph.Plan(model).steps[0].first_linear
        # LRP: the "conv" family gets EpsilonPlus' AlphaBeta(1, 0), against numpy
        analyzer = kx.LRPEpsilonPlus(model)
        expected_repr = "AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)"
        assert repr(analyzer.rule_of("pool")) == f"[{expected_repr}]"
        head_rule = helpers.ref_from_repr("Epsilon(epsilon=1e-07)")
        expected = pooled_dense_reference(model, x, helpers.ref_from_repr(expected_repr), head_rule)
        relevance = analyzer.analyze(x)
        # float32 against float64: a few ulps of the largest relevance
        np.testing.assert_allclose(
            relevance, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max()
        )
        # the family decides: ε on the pooling would give another result
        epsilon = pooled_dense_reference(model, x, head_rule, head_rule)
        assert np.abs(epsilon - expected).max() > 0.1 * np.abs(expected).max()
        # receptive field: 3x3 'same' (r 3, offset -1), then the 2x2 window at stride 2
        field = kx.features.receptive_field(cnn, "pool")
        assert (field.size, field.stride, field.offset) == ((4, 4), (2, 2), (-1, -1))
        # CAM: the pooling only resamples, so the default layer is the convolution
        assert kx.GradCAM(cnn).layer.name == "conv"
        # the supported list, in LRP's error for another layer and in the docs' table
        assert "WeightedPooling2D" in kx.graph.supported_layers()
        assert "WeightedPooling2D" in kx.graph.supported_layers(markdown=True)
        with pytest.raises(ValueError, match=r"'twice' of class Twice.*Supported: .*WeightedPool"):
            kx.LRPEpsilonPlus(pooled_dense(layer_class, unknown=True))
    # without the entry the layer is unknown again: opened into its keras.ops operations
    # (x * w, a fixed scaling, then the raw average pooling no entry describes)
    assert kx.graph.entry_of(layer_class()) is None
    opened = [(s.op.kind, type(s.op.layer).__name__) for s in kx.graph.Plan(model).steps[:2]]
    assert opened == [("sum_pool", "Multiply"), ("other", "AveragePool")]
    with pytest.raises(
        ValueError,
        match=r"of class AveragePool \(an operation of layer 'pool' of class WeightedPooling2D, "
        r"opened into its keras\.ops operations\) has no LRP rule \(op kind 'other'\).*"
        r'kx\.graph\.register_op\("AveragePool", kind=\.\.\.\) or '
        r"kx\.graph\.register_layer\(WeightedPooling2D, kind=\.\.\.\)",
    ):
        kx.LRPEpsilonPlus(model)
    with pytest.raises(ValueError, match=r"cannot follow layer 'average_pool\w*' \(AveragePool"):
        kx.features.receptive_field(cnn, "pool")
    assert "WeightedPooling2D" not in kx.graph.supported_layers()


# -- an analyzer on explain_batch, fixed_target and run_copies ----------------------------
def test_the_worked_example_of_an_analyzer_equals_its_closed_form(monkeypatch):
    helpers.register_temporarily(monkeypatch, "scaled_gradient_mean", None)  # removed after
    run_block("worked-example-analyzer", GUIDE)  # registers "scaled_gradient_mean"
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, use_bias=False)(keras.ops.square(inputs))
    model = keras.Model(inputs, outputs)
    weights = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]], "float32")
    model.set_weights([weights])
    x = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]], "float32")
    samples = 5
    analyzer = kx.create_analyzer("scaled_gradient_mean", model, samples=samples)
    result = analyzer.analyze(x, target=1)
    # f_1 = sum_i w_i1 x_i^2: the gradient at s x is 2 w s x, and sum_k k/n = (n + 1)/2
    expected = weights[:, 1] * x**2 * (samples + 1) / samples
    np.testing.assert_allclose(result, expected, rtol=1e-6)

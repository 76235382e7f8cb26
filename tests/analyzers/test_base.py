"""The analyzer contract (analyzers/base.py): inputs, batching, parts, errors, execution.

Input types and batching invariance, parts of a larger input (``analyze_part``), where
an analyzer runs and what it predicts, and clear errors for bad input or parameters.
Expected values come from plain ``analyze`` calls on the whole input (the parts must
equal them exactly) or from literal arithmetic, never from the code under test.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers


DETERMINISTIC = {
    "gradient": {},
    "input_t_gradient": {},
    "guided_backprop": {},
    "deconvnet": {},
    "integrated_gradients": {"steps": 4},
}


# -- input types ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_input_type_invariance(name, conv_model):
    x = helpers.data((8, 8, 2), batch=5)
    target = np.array([0, 1, 2, 3, 0])
    analyzer = kx.create_analyzer(name, conv_model, **DETERMINISTIC[name])
    expected = analyzer.analyze(x, target)
    assert expected.dtype == np.float32 and expected.shape == x.shape
    variants = {
        "tensor": tf.constant(x),
        "float64": x.astype("float64"),
        "dataset of x": tf.data.Dataset.from_tensor_slices(x).batch(2),
        "dataset of (x, y)": tf.data.Dataset.from_tensor_slices((x, target)).batch(3),
    }
    for label, variant in variants.items():
        result = analyzer.analyze(variant, target)
        assert result.dtype == np.float32, label
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7, err_msg=label)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
@pytest.mark.parametrize("target", [None, [2, 0, 1, 2, 1, 0, 2], "all"])
def test_batch_size_invariance(name, target, dense_model):
    x = helpers.data((6,), batch=7)
    analyzer = kx.create_analyzer(name, dense_model, **DETERMINISTIC[name])
    expected = analyzer.analyze(x, target)
    for batch_size in (1, 3, 7, 100):
        np.testing.assert_allclose(
            analyzer.analyze(x, target, batch_size=batch_size),
            expected,
            rtol=1e-5,
            atol=1e-7,
            err_msg=f"batch_size={batch_size}",
        )


def test_multi_input_types_and_batching(multi_input_model, multi_input_data):
    analyzer = kx.Gradient(multi_input_model, output_index=0)
    target = [2, 1, 0, 1]
    expected = analyzer.analyze(multi_input_data, target)
    assert [item.shape for item in expected] == [(4, 6), (4, 4)]
    first, second = multi_input_data
    variants = {
        "tuple": (first, second),
        "tensors": [tf.constant(first), tf.constant(second)],
        "batch_size=1": multi_input_data,
        "dataset of ((x1, x2), y)": tf.data.Dataset.from_tensor_slices(
            ((first, second), np.zeros(4))
        ).batch(3),
        "dataset of ((x1, x2),)": tf.data.Dataset.from_tensor_slices(((first, second),)).batch(2),
    }
    for label, variant in variants.items():
        result = analyzer.analyze(variant, target, batch_size=1 if "=" in label else None)
        assert isinstance(result, list) and len(result) == 2, label
        for got, want in zip(result, expected):
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=label)
    integrated = kx.IntegratedGradients(multi_input_model, steps=4)
    whole = integrated.analyze(multi_input_data, target)
    for got, want in zip(integrated.analyze(multi_input_data, target, batch_size=3), whole):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_integer_input_for_a_float_model_is_cast(dense_model):
    x = np.arange(24).reshape(4, 6) % 5 - 2
    np.testing.assert_array_equal(
        kx.Gradient(dense_model).analyze(x), kx.Gradient(dense_model).analyze(x.astype("float32"))
    )


def test_subclassed_model_inputs(subclassed_model, x6):
    analyzer = kx.Gradient(subclassed_model)
    expected = analyzer.analyze(x6, 1)
    np.testing.assert_allclose(
        analyzer.analyze(tf.constant(x6), 1, batch_size=3), expected, rtol=1e-6
    )
    dataset = tf.data.Dataset.from_tensor_slices((x6, np.zeros(4))).batch(3)
    np.testing.assert_allclose(analyzer.analyze(dataset, 1), expected, rtol=1e-6)


# -- bad input -------------------------------------------------------------------
@pytest.mark.parametrize(
    "x,error,message",
    [
        (
            np.zeros(6, "float32"),
            ValueError,
            r"Input 0 of model 'dense_sequential' must have rank 2, shape \(batch, 6\)\. Received: "
            r"shape \(6,\)\. Add the batch axis, e\.g\. x\[None\]\.",
        ),
        (
            np.zeros((2, 3, 6), "float32"),
            ValueError,
            r"must have rank 2.*Received: shape \(2, 3, 6\)",
        ),
        (
            np.zeros((2, 5), "float32"),
            ValueError,
            r"must have shape \(batch, 6\)\. Received: shape \(2, 5\)",
        ),
        (
            np.array([["a"] * 6] * 2),
            TypeError,
            r"Input 0 must be numeric\. Received: dtype string.*x\.astype\('float32'\)",
        ),
        (np.ones((2, 6), bool), TypeError, r"must be numeric\. Received: dtype bool"),
        (
            np.array([[0, 1, 2, 3, 4, np.nan]], "float32"),
            ValueError,
            r"Input 0 contains NaN or Inf values.*np\.nan_to_num",
        ),
        (np.array([[0, 1, 2, 3, 4, np.inf]]), ValueError, r"contains NaN or Inf"),
        (np.zeros((0, 6), "float32"), ValueError, r"x is empty \(0 samples\)"),
    ],
)
def test_bad_input_errors(dense_model, x, error, message):
    with pytest.raises(error, match=message):
        kx.Gradient(dense_model).analyze(x)


def test_nan_in_a_tensor_and_in_a_dataset(dense_model):
    x = helpers.data((6,))
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        kx.GuidedBackprop(dense_model).analyze(tf.constant(x))
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        kx.Gradient(dense_model).analyze(tf.data.Dataset.from_tensor_slices(x).batch(2))


def test_multi_input_errors(multi_input_model, multi_input_data):
    analyzer = kx.Gradient(multi_input_model)
    with pytest.raises(
        ValueError,
        match=r"Model 'multi_input' takes 2 input\(s\) but 1 were "
        r"given\. Pass a list with one array per input",
    ):
        analyzer.analyze(multi_input_data[0])
    with pytest.raises(
        ValueError,
        match=r"Input 1 of model 'multi_input' must have shape "
        r"\(batch, 4\)\. Received: shape \(4, 6\)",
    ):
        analyzer.analyze([multi_input_data[0], multi_input_data[0]])
    with pytest.raises(ValueError, match=r"same number of samples\. Received sizes \[3, 4\]"):
        analyzer.analyze([multi_input_data[0][:3], multi_input_data[1]])


def test_batch_size_and_dataset_errors(dense_model, x6):
    with pytest.raises(
        ValueError,
        match=r"batch_size must be a positive int\. Received: "
        r"batch_size=-2",
    ):
        kx.Gradient(dense_model).analyze(x6, batch_size=-2)
    empty = tf.data.Dataset.from_tensor_slices(x6).take(0).batch(2)
    with pytest.raises(ValueError, match=r"The dataset passed as x yielded no batches"):
        kx.Gradient(dense_model).analyze(empty)


def test_model_errors(subclassed_model):
    with pytest.raises(ValueError, match=r"not built.*keras\.Input\(shape\)"):
        kx.Gradient(keras.Sequential([layers.Dense(3)]))
    with pytest.raises(
        TypeError,
        match=r"subclassed model with no layer graph.*Rebuild it with "
        r"the Functional or Sequential API.*gradient",
    ):
        kx.GuidedBackprop(subclassed_model)
    with pytest.raises(
        TypeError,
        match=r"Gradient needs a keras\.Model\. Received: model of "
        r"type function",
    ):
        kx.Gradient(lambda x: x)


def test_bad_parameters(dense_model, x6):
    with pytest.raises(
        ValueError,
        match=r"Unknown postprocess\. Received: postprocess='sqrt'\. "
        r"Expected one of \(None, 'abs', 'square'\)",
    ):
        kx.Gradient(dense_model, postprocess="sqrt")
    with pytest.raises(ValueError, match=r"No layer named 'nope'.*Received: layer='nope'"):
        kx.Gradient(dense_model, layer="nope")
    with pytest.raises(ValueError, match=r"Received: output_layer='nope'"):
        kx.Gradient(dense_model, output_layer="nope")
    analyzer = kx.IntegratedGradients(dense_model, steps=4, baseline=np.zeros((4, 6), "float32"))
    assert analyzer.analyze(x6).shape == x6.shape
    with pytest.raises(
        ValueError,
        match=r"Received: shape \(4, 6\)\. A batch-shaped baseline "
        r"needs the whole batch in one call",
    ):
        analyzer.analyze(x6, batch_size=2)


def test_results_are_writable_float32_arrays(dense_model, x6):
    result = kx.Gradient(dense_model).analyze(x6.astype("float64"))
    assert isinstance(result, np.ndarray) and result.dtype == np.float32
    assert result.flags.writeable
    result /= 2.0  # users normalise heatmaps in place


def _per_sample_noise(model):
    """An analyzer whose randomness is drawn per sample (from the seeds of its position)."""
    return kx.MeaningfulPerturbation(model, steps=3, mask_size=4, deletion="noise", seed=3)


def test_parts_with_their_first_rows_equal_one_call_on_the_whole():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=5)
    analyzer = _per_sample_noise(model)
    whole = analyzer.analyze(x)
    parts = [analyzer.analyze_part(x[i : i + 2], first_row=i) for i in (0, 2, 4)]
    # equal up to the float arithmetic of other batch sizes (oneDNN kernels)
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)
    # a part seeded as if it started the input is another draw
    other = analyzer.analyze_part(x[2:4], first_row=0)
    assert np.abs(other - whole[2:4]).max() > 1e-2


def test_a_dataset_is_seeded_by_position_like_the_array_it_holds():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=5)
    analyzer = _per_sample_noise(model)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(2)
    np.testing.assert_allclose(analyzer.analyze(dataset), analyzer.analyze(x), rtol=1e-5, atol=1e-6)


def test_analyze_part_refuses_a_batch_shaped_baseline():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), batch=3)
    analyzer = kx.IntegratedGradients(model, steps=4, baseline=np.zeros((3, 6), "float32"))
    analyzer.analyze(x)  # the whole batch in one call: accepted
    with pytest.raises(ValueError, match="A batch-shaped baseline needs the whole batch"):
        analyzer.analyze_part(x, first_row=3)


@pytest.mark.parametrize(
    "build, compiled",
    [
        (lambda m, f: kx.Gradient(m), True),
        (lambda m, f: kx.Occlusion(m, window=2), True),
        (lambda m, f: kx.Occlusion(f, window=2), False),
        (lambda m, f: kx.MeaningfulPerturbation(f, steps=2), True),
        (lambda m, f: kx.KernelShap(m, samples=8), False),
    ],
)
def test_where_an_analyzer_runs(build, compiled):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    analyzer = build(model, lambda x: x[:, :2])
    assert analyzer.compiled is compiled
    assert analyzer.host_model() is (not compiled and not isinstance(analyzer.model, keras.Model))


def test_predict_is_the_explained_output_for_models_and_callables():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, activation="softmax", use_bias=False)]
    )
    model.set_weights([np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]], "float32")])
    x = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0], [2.0, 0.0, 0.0]], "float32")
    logits = np.array([[4.0, 1.0], [-1.0, 3.0], [2.0, 0.0]], "float32")  # x @ W by hand
    kx.config.set_memory_budget(1)  # one row per pass
    try:
        np.testing.assert_allclose(kx.Gradient(model).predict(x), logits, rtol=1e-6)
        np.testing.assert_allclose(
            kx.Occlusion(lambda rows: rows @ [[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]).predict(x),
            logits,
            rtol=1e-6,
        )
    finally:
        kx.config.set_memory_budget(None)
    assert kx.Gradient(model).resolve_target(x).tolist() == [0, 1, 0]
    assert kx.Gradient(model).resolve_target(x, 1) == 1


def test_callable_with_wrong_output_shape():
    x = helpers.data((6,), batch=4)
    with pytest.raises(
        ValueError,
        match=r"must return one row of scores per input row.*"
        r"Received: shape \(1, 3\) for an input of shape",
    ):
        kx.Occlusion(lambda z: np.zeros((1, 3)), window=1).analyze(x)

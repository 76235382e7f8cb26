"""What every metric shares: bad input names the function, the value and the fix."""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx


# =====================================================================================
# Bad input
# =====================================================================================
def test_bad_input_names_the_function_the_value_and_the_fix(conv_model):
    x = helpers.data((8, 8, 2), seed=26)
    good = helpers.data((8, 8, 2), seed=27)
    with pytest.raises(
        ValueError,
        match=r"deletion: attributions must be shaped like x .*"
        r"Received: attributions of shape \(4, 8, 2\)",
    ):
        kx.metrics.deletion(conv_model, x, good[:, 0], 0)
    with pytest.raises(
        ValueError,
        match=r"insertion: steps must be at most the number of "
        r"features \(64\).*Received: steps=65. Pass steps <= 64",
    ):
        kx.metrics.insertion(conv_model, x, good, 0, steps=65)
    with pytest.raises(
        ValueError,
        match=r"pixel_flipping: steps must be at most the number of "
        r"regions of \(3, 3\) pixels \(9\).*Received: steps=100",
    ):
        kx.metrics.pixel_flipping(conv_model, x, good, 0, region=3)
    with pytest.raises(
        ValueError,
        match=r"pixel_flipping: region must be a positive int.*"
        r"Received: region=\(0, 2\)",
    ):
        kx.metrics.pixel_flipping(conv_model, x, good, 0, region=(0, 2))
    with pytest.raises(
        ValueError,
        match=r"deletion: unknown baseline name. Received: "
        r"baseline='blurr'. Use a number, one of \('blur', 'mean'\)",
    ):
        kx.metrics.deletion(conv_model, x, good, 0, baseline="blurr", steps=5)
    with pytest.raises(
        ValueError,
        match=r"pointing_game: masks must have shape \(4, 8, 8\).*"
        r"Received: masks of shape \(4, 8, 7\)",
    ):
        kx.metrics.pointing_game(good, np.ones((4, 8, 7), bool))
    with pytest.raises(
        ValueError,
        match=r"randomization: unknown measure. Received: "
        r"measure='ssmi'. Expected one of",
    ):
        kx.metrics.randomization("gradient", conv_model, x, 0, measure="ssmi")
    with pytest.raises(
        ValueError,
        match=r"infidelity: the perturbation callable must return "
        r"I shaped like its input \(8, 8, 8, 2\).*Received: shape \(4, 8, 8, 2\)",
    ):
        kx.metrics.infidelity(conv_model, x, good, 0, perturbation=lambda r: x, samples=2)
    with pytest.raises(ValueError, match=r"pixel_flipping: Unknown order. Received: order='most'"):
        kx.metrics.pixel_flipping(conv_model, x, good, 0, region=2, steps=4, order="most")
    with pytest.raises(
        ValueError,
        match=r"faithfulness_correlation: subset is the fraction.*"
        r"Received: subset=1.5",
    ):
        kx.metrics.faithfulness_correlation(conv_model, x, good, 0, subset=1.5)
    with pytest.raises(
        ValueError,
        match=r"sensitivity_max: samples must be a positive int. "
        r"Received: samples=0",
    ):
        kx.metrics.sensitivity_max(kx.Gradient(conv_model), x, samples=0)


def test_run_job_gives_no_index_for_a_sum_or_a_function_of_the_outputs():
    from keras_explain.metrics.engine import Job, run_job
    from keras_explain.metrics.faithfulness import _baseline_copy

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.set_weights([np.array([[1.0, -1.0]] * 3, "float32"), np.zeros(2, "float32")])
    x = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]], "float32")
    job = Job(1, _baseline_copy, {"baseline": np.zeros_like(x)})
    assert run_job(model, x, None, job)[0].tolist() == [0, 1]  # the clean argmax
    assert run_job(model, x, 1, job)[0].tolist() == [1, 1]
    for target in ("all", lambda outputs: outputs[:, 0]):
        indices, clean, _ = run_job(model, x, target, job)
        assert indices.tolist() == [-1, -1]
    np.testing.assert_allclose(clean, [3.0, -3.0])  # the callable's score: output 0

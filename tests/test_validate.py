"""Renamed keywords: the former spellings still work for one release, with a FutureWarning.

Each case builds the analyzer with the former spelling and with the current one and
checks the warning, the message and that both explain the same thing.
"""

import helpers
import numpy as np
import pytest

import keras_explain as kx


def _same(build, old, new, x, **analyze):
    with pytest.warns(FutureWarning, match=rf"the parameter {old[0]}= is now called {new[0]}="):
        former = build(**{old[0]: old[1]})
    current = build(**{new[0]: new[1]})
    np.testing.assert_allclose(former.analyze(x, **analyze), current.analyze(x, **analyze))
    return former


def test_at_layer_is_layer_on_every_backward_analyzer():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=2)
    name = model.layers[0].name
    for build in (
        lambda **kw: kx.Gradient(model, **kw),
        lambda **kw: kx.LRP(model, "epsilon", **kw),
        lambda **kw: kx.LRPEpsilon(model, **kw),
        lambda **kw: kx.SmoothGrad(model, samples=2, seed=0, **kw),
        lambda **kw: kx.create_analyzer("input_t_gradient", model, **kw),
    ):
        former = _same(build, ("at_layer", name), ("layer", name), x)
        assert former.analyze(x).shape[1:] == tuple(model.layers[0].output.shape[1:])


def test_epsilon_noise_scale_steps_and_probabilities():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), batch=3)
    _same(lambda **kw: kx.DeepLift(model, **kw), ("eps", 1e-3), ("epsilon", 1e-3), x)
    background = np.zeros((2, 6), "float32")
    _same(
        lambda **kw: kx.GradientShap(model, background=background, seed=0, **kw),
        ("stddev", 0.2),
        ("noise_scale", 0.2),
        x,
    )
    images = helpers.data((8, 8, 2), batch=2)
    conv = helpers.conv_sequential()
    build = lambda **kw: kx.MeaningfulPerturbation(conv, mask_size=4, seed=0, **kw)  # noqa: E731
    _same(build, ("iterations", 3), ("steps", 3), images)
    _same(lambda **kw: build(steps=3, **kw), ("softmax", False), ("probabilities", False), images)


def test_both_spellings_at_once_is_an_error():
    with pytest.raises(
        TypeError, match=r"DeepLift got both 'eps' and 'epsilon'.*Pass epsilon= only"
    ):
        kx.DeepLift(helpers.dense_sequential(), eps=1e-3, epsilon=1e-3)


def test_each_class_lists_its_former_spellings():
    assert kx.Gradient.renamed_keywords() == {"at_layer": "layer"}
    assert kx.DeepLift.renamed_keywords() == {"at_layer": "layer", "eps": "epsilon"}
    assert kx.MeaningfulPerturbation.renamed_keywords() == {
        "iterations": "steps",
        "softmax": "probabilities",
    }
    assert kx.Occlusion.renamed_keywords() == {}


def test_measure_and_noise_scale_of_the_metrics():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), batch=3)
    with pytest.warns(FutureWarning, match=r"randomization: the parameter similarity= is now"):
        former = kx.metrics.randomization("gradient", model, x, 0, similarity="pearson")
    current = kx.metrics.randomization("gradient", model, x, 0, measure="pearson")
    for key in current:
        np.testing.assert_allclose(former[key], current[key])
    with pytest.warns(FutureWarning, match=r"sensitivity_max: the parameter radius= is now"):
        former = kx.metrics.sensitivity_max(kx.Gradient(model), x, radius=0.3)
    current = kx.metrics.sensitivity_max(kx.Gradient(model), x, noise_scale=0.3)
    np.testing.assert_allclose(former, current)


def test_the_method_comes_first_and_the_former_order_still_works(tmp_path):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=2)
    options = {"metrics": ["sparseness"], "verbose": 0}
    with pytest.warns(FutureWarning, match=r"evaluate: the method now comes first"):
        former = kx.metrics.evaluate(model, x, ["gradient"], **options)
    current = kx.metrics.evaluate(["gradient"], model, x, **options)
    assert former[0]["sparseness"] == current[0]["sparseness"]
    with pytest.warns(FutureWarning, match=r"report: the method now comes first"):
        kx.report(model, x, ["gradient"], metrics=[], out=str(tmp_path / "former.html"))
    assert (tmp_path / "former.html").exists()


def test_the_ray_explainer_takes_the_method_first(tmp_path):
    model = helpers.dense_sequential(softmax=False)
    path = str(tmp_path / "model.keras")
    model.save(path)
    batch = {"id": np.arange(2), "x": helpers.data((6,), batch=2)}
    with pytest.warns(FutureWarning, match=r"Explainer: the method now comes first"):
        former = kx.ray.Explainer(path, "gradient")
    current = kx.ray.Explainer("gradient", path)
    assert former.method == current.method == "gradient"
    np.testing.assert_allclose(former(batch)["explanation"], current(batch)["explanation"])

"""Feature-removal faithfulness against slow numpy loops, closed forms and Quantus' conventions.

The references below perturb one copy at a time and call the model directly. What
they take from Quantus 0.6.0 (checked against it on the same arrays by a scratch
script, see docs/guide/metrics.md): faithfulness estimate groups features in the
order of decreasing attribution, monotonicity correlation in the order of
increasing |a|, with one uniform value per group, copy and sample.
"""

import helpers
import keras
import numpy as np
import pytest
from scipy import stats

import keras_explain as kx
from keras_explain.metrics import registry

layers = keras.layers


def scores_of(model, x, target, probabilities=False):
    """f_t of a batch straight from the model (softmax of the outputs if asked)."""
    outputs = model(np.asarray(x, np.float32)).numpy().astype(np.float64)
    if probabilities:
        outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        outputs /= outputs.sum(axis=1, keepdims=True)
    index = np.broadcast_to(np.asarray(target), (len(outputs),))
    return outputs[np.arange(len(outputs)), index]


def feature_values(x, attributions):
    """One attribution per feature: summed over the channels of images and sequences."""
    return attributions.sum(axis=-1) if x.ndim > 2 else attributions


def groups_of(values, step, descending):
    """Groups of ``step`` features in the (stable) order of ``values``, as index lists."""
    order = np.argsort(-values.ravel() if descending else values.ravel(), kind="stable")
    return [order[k : k + step] for k in range(0, values.size, step)]


def with_features(sample, features, values):
    """A copy of one sample with the given flat features set to ``values`` (all channels)."""
    copy = sample.copy()
    spatial = sample.shape if sample.ndim == 1 else sample.shape[:-1]
    for i, feature in enumerate(features):
        index = np.unravel_index(feature, spatial)
        copy[index] = values[i] if np.ndim(values) else values
    return copy


# =====================================================================================
# Slow references, one copy at a time, straight from the papers' definitions
# =====================================================================================
def faithfulness_estimate_reference(model, x, attributions, target, step, baseline, soft):
    """Alvarez-Melis & Jaakkola: corr_k(sum_{G_k} a, f(x) - f(x with G_k at the baseline))."""
    values = []
    for b in range(len(x)):
        a = feature_values(x, attributions)[b].astype(np.float64)
        clean = scores_of(model, x[b : b + 1], target[b], soft)[0]
        sums, drops = [], []
        for group in groups_of(a, step, descending=True):
            removed = with_features(x[b], group, baseline[b][np.unravel_index(group, a.shape)])
            drops.append(clean - scores_of(model, removed[None], target[b], soft)[0])
            sums.append(a.ravel()[group].sum())
        values.append(np.corrcoef(sums, drops)[0, 1])
    return np.array(values)


def monotonicity_reference(model, x, attributions, target, step, baseline, soft):
    """AIX360's monotonicity_metric: insert groups by increasing a into the baseline."""
    values = []
    for b in range(len(x)):
        a = feature_values(x, attributions)[b].astype(np.float64)
        copy, scores = baseline[b].copy(), []
        for group in groups_of(a, step, descending=False):
            copy = with_features(copy, group, x[b][np.unravel_index(group, a.shape)])
            scores.append(scores_of(model, copy[None], target[b], soft)[0])
        values.append(float(np.all(np.diff(scores) >= 0)))
    return np.array(values)


def monotonicity_correlation_reference(model, x, attributions, target, step, samples, seed):
    """Nguyen & Martínez: spearman_k(sum_{G_k} |a|, mean_s (f(x_{G_k <- u}) - f(x))^2)."""
    a_all = np.abs(feature_values(x, attributions)).astype(np.float64)
    groups = -(-a_all[0].size // step)
    uniform = np.random.default_rng(seed).uniform(0.0, 1.0, (groups * samples, len(x)))
    values = []
    for b in range(len(x)):
        clean = scores_of(model, x[b : b + 1], target[b], True)[0]
        sums, variations = [], []
        for k, group in enumerate(groups_of(a_all[b], step, descending=False)):
            changes = []
            for s in range(samples):
                value = np.float32(uniform[k * samples + s, b])  # one value per group and copy
                copy = with_features(x[b], group, value)
                changes.append(scores_of(model, copy[None], target[b], True)[0] - clean)
            variations.append(np.mean(np.square(changes)))
            sums.append(a_all[b].ravel()[group].sum())
        values.append(stats.spearmanr(sums, variations).statistic)
    return np.array(values)


def sensitivity_n_reference(model, x, attributions, target, ns, samples, seed, baseline):
    """Ancona et al.: per n, corr_S(sum_S a, f(x) - f(x_S <- baseline)) over random subsets."""
    a_all = feature_values(x, attributions).astype(np.float64)
    features = a_all[0].size
    draws = np.random.default_rng(seed).random((len(ns), samples, features))
    curves = np.empty((len(x), len(ns)))
    for b in range(len(x)):
        clean = scores_of(model, x[b : b + 1], target[b])[0]
        for j, n in enumerate(ns):
            sums, drops = [], []
            for s in range(samples):
                subset = np.argsort(draws[j, s], kind="stable")[:n]  # n uniformly drawn features
                copy = with_features(
                    x[b], subset, baseline[b][np.unravel_index(subset, a_all[b].shape)]
                )
                drops.append(clean - scores_of(model, copy[None], target[b])[0])
                sums.append(a_all[b].ravel()[subset].sum())
            curves[b, j] = np.corrcoef(sums, drops)[0, 1]
    return curves


def small_cnn():
    """(5, 5, 2) -> Conv2D(3, 3, same, tanh) -> GlobalAveragePooling2D -> Dense(3), no ReLU ties."""
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((5, 5, 2)),
            layers.Conv2D(3, 3, padding="same", activation="tanh"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3),
        ]
    )
    return helpers.randomize_biases(model)


INPUTS = {  # name: (model builder, sample shape)
    "image": (small_cnn, (5, 5, 2)),
    "sequence": (lambda: helpers.one_axis_model((5, 3)), (5, 3)),
    "tabular": (lambda: helpers.one_axis_model((7,)), (7,)),
}


@pytest.fixture(scope="module", params=sorted(INPUTS))
def case(request):
    build, shape = INPUTS[request.param]
    model = build()
    x = helpers.data(shape, seed=30, batch=3)
    attributions = helpers.data(shape, seed=31, batch=3)
    return model, x, attributions, np.array([0, 1, 2])


@pytest.mark.parametrize(("step", "soft"), [(1, False), (3, True)])
def test_faithfulness_estimate_against_a_numpy_loop(case, step, soft):
    """Step 3 does not divide 25, 5 or 7 features: the last group is smaller."""
    model, x, attributions, target = case
    result = kx.metrics.faithfulness_estimate(
        model, x, attributions, target, features_in_step=step, baseline=0.25, probabilities=soft
    )
    expected = faithfulness_estimate_reference(
        model, x, attributions, target, step, np.full_like(x, 0.25), soft
    )
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("step", "soft"), [(1, True), (2, False)])
def test_monotonicity_against_a_numpy_loop(case, step, soft):
    model, x, attributions, target = case
    axes = tuple(range(1, x.ndim - 1)) or (1,)  # each sample's per-channel mean over its features
    mean = np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape)
    result = kx.metrics.monotonicity(
        model, x, attributions, target, features_in_step=step, baseline="mean", probabilities=soft
    )
    expected = monotonicity_reference(model, x, attributions, target, step, mean, soft)
    np.testing.assert_array_equal(result, expected)


def test_monotonicity_correlation_against_a_numpy_loop(case):
    model, x, attributions, target = case
    for step in (1, 4):
        result = kx.metrics.monotonicity_correlation(
            model, x, attributions, target, features_in_step=step, samples=2, seed=5
        )
        expected = monotonicity_correlation_reference(model, x, attributions, target, step, 2, 5)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def test_sensitivity_n_against_a_numpy_loop(case):
    model, x, attributions, target = case
    features = feature_values(x, attributions)[0].size
    ns = [1, 2, features - 1]
    curve = kx.metrics.sensitivity_n(
        model, x, attributions, target, ns=ns, samples=6, baseline=0.5, seed=7
    )
    np.testing.assert_array_equal(curve.sizes, ns)
    expected = sensitivity_n_reference(
        model, x, attributions, target, ns, 6, 7, np.full_like(x, 0.5)
    )
    np.testing.assert_allclose(curve.correlations, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(curve.mean, expected.mean(axis=1), rtol=1e-4, atol=1e-4)


def test_sensitivity_n_default_sizes_are_log_spaced_up_to_80_percent(conv_model):
    x = helpers.data((8, 8, 2), seed=32, batch=2)
    curve = kx.metrics.sensitivity_n(conv_model, x, helpers.data((8, 8, 2), seed=33, batch=2), 0)
    # 80% of 64 pixels is 51; 51 ** (k / 9) for k = 0..9 is 1, 1.55, 2.40, 3.71, 5.75,
    # 8.90, 13.8, 21.3, 33.0, 51: rounded, the two 2s merge
    np.testing.assert_array_equal(curve.sizes, [1, 2, 4, 6, 9, 14, 21, 33, 51])
    assert curve.correlations.shape == (2, 9)


# =====================================================================================
# Closed forms on linear models: a = w (x - x') is exact, so every metric is at its best
# =====================================================================================
def linear_case(features=12, batch=4, seed=40):
    model = helpers.linear_dense_model(inputs=features, outputs=2, seed=seed)
    x = helpers.data((features,), seed=seed, batch=batch)
    weights = model.get_weights()[0][:, 1].astype(np.float64)
    return model, x, weights


def test_exact_attributions_of_a_linear_model_are_perfectly_faithful():
    """f = w.x + b: removing a group G changes f by sum_G w (x - x'), its attribution sum."""
    model, x, weights = linear_case()
    exact = (weights * (x - 0.3)).astype(np.float32)
    for step in (1, 5):
        estimate = kx.metrics.faithfulness_estimate(
            model, x, exact, 1, features_in_step=step, baseline=0.3, probabilities=False
        )
        np.testing.assert_allclose(estimate, 1.0, atol=1e-5)
        negated = kx.metrics.faithfulness_estimate(
            model, x, -exact, 1, features_in_step=step, baseline=0.3, probabilities=False
        )
        np.testing.assert_allclose(negated, -1.0, atol=1e-5)
    curve = kx.metrics.sensitivity_n(model, x, exact, 1, ns=[1, 3, 9], samples=20, baseline=0.3)
    np.testing.assert_allclose(curve.correlations, 1.0, atol=1e-5)
    np.testing.assert_allclose(curve.mean, 1.0, atol=1e-5)


def test_monotonicity_of_a_linear_model_in_closed_form():
    """Inserting feature i into the baseline adds a_i = w_i (x_i - x'_i) to f.

    In increasing order of a, the scores after each insertion rise iff every
    increment but the first is >= 0: the attributions' second smallest is >= 0.
    """
    model, x, weights = linear_case(features=6, batch=16)
    exact = (weights * (x - 0.3)).astype(np.float32)
    result = kx.metrics.monotonicity(model, x, exact, 1, baseline=0.3, probabilities=False)
    expected = np.sort(exact, axis=1)[:, 1] >= 0
    assert 0 < expected.sum() < len(x)  # both outcomes occur
    np.testing.assert_array_equal(result, expected.astype(np.float32))
    # with |a|-only positive increments (x' chosen so that every a_i >= 0) it is monotonic
    signs = np.where(weights >= 0, 1.0, -1.0)
    above = (0.3 + signs * np.abs(x - 0.3)).astype(np.float32)  # x_i - x'_i has w_i's sign
    positive = (weights * (above - 0.3)).astype(np.float32)
    np.testing.assert_array_equal(
        kx.metrics.monotonicity(model, above, positive, 1, baseline=0.3, probabilities=False),
        np.ones(len(x), np.float32),
    )


def test_monotonicity_correlation_of_a_linear_model_with_one_replacement_value():
    """value_range (c, c): replacing x_i by c changes f by w_i (c - x_i) = -a_i, exactly |a_i|^2."""
    model, x, weights = linear_case()
    exact = (weights * (x - 0.7)).astype(np.float32)
    result = kx.metrics.monotonicity_correlation(
        model, x, exact, 1, samples=2, value_range=(0.7, 0.7), probabilities=False
    )
    np.testing.assert_allclose(result, 1.0, atol=1e-6)


def test_random_attributions_score_badly():
    """Attributions unrelated to the model correlate with nothing."""
    model, x, weights = linear_case(features=40, batch=8)
    noise = helpers.data((40,), seed=41, batch=8)
    kwargs = {"baseline": 0.3}
    estimate = kx.metrics.faithfulness_estimate(model, x, noise, 1, probabilities=False, **kwargs)
    curve = kx.metrics.sensitivity_n(model, x, noise, 1, ns=[4, 20], samples=50, **kwargs)
    mono = kx.metrics.monotonicity_correlation(
        model, x, noise, 1, value_range=(0.3, 0.3), samples=2, probabilities=False
    )
    for values in (estimate, curve.mean, mono):
        assert np.all(values < 0.8) and abs(np.mean(values)) < 0.3
    assert kx.metrics.monotonicity(model, x, noise, 1, **kwargs).sum() == 0


def test_cam_maps_broadcast_over_channels(conv_model):
    x = helpers.data((8, 8, 2), seed=42, batch=2)
    maps = helpers.data((8, 8), seed=43, batch=2)
    full = np.repeat(maps[..., None], 2, axis=-1) / 2  # the same per-pixel sums
    for function in (kx.metrics.faithfulness_estimate, kx.metrics.monotonicity):
        np.testing.assert_array_equal(
            function(conv_model, x, maps, 0, features_in_step=4),
            function(conv_model, x, full, 0, features_in_step=4),
        )


# =====================================================================================
# Validation and the registered columns
# =====================================================================================
def test_invalid_arguments_are_refused(logit_model):
    x, a = helpers.data((6,), seed=44), helpers.data((6,), seed=45)
    with pytest.raises(
        ValueError, match=r"features_in_step must be at most the number of features \(6\)"
    ):
        kx.metrics.faithfulness_estimate(logit_model, x, a, features_in_step=7)
    with pytest.raises(ValueError, match="monotonicity: .*features_in_step"):
        kx.metrics.monotonicity(logit_model, x, a, features_in_step=0)
    with pytest.raises(ValueError, match=r"attributions must be shaped like x \(4, 6\)"):
        kx.metrics.monotonicity_correlation(logit_model, x, a[:, :3])
    with pytest.raises(
        ValueError, match=r"value_range is the \(low, high\).*Received: value_range=\(1, 0\)"
    ):
        kx.metrics.monotonicity_correlation(logit_model, x, a, value_range=(1, 0))
    with pytest.raises(ValueError, match="samples >= 2 subsets per size. Received: samples=1"):
        kx.metrics.sensitivity_n(logit_model, x, a, samples=1)
    with pytest.raises(ValueError, match=r"ns must be .* ints in \[1, 6\].*Received: ns=\[0, 3\]"):
        kx.metrics.sensitivity_n(logit_model, x, a, ns=[0, 3])
    with pytest.raises(ValueError, match="unknown baseline name"):
        kx.metrics.faithfulness_estimate(logit_model, x, a, baseline="white")
    with pytest.raises(
        ValueError,
        match=r"MetricEvaluator: a dict x needs one array per input of model 'dense_sequential'"
        r", keyed by the input names \['keras_tensor\w*'\]. Received keys \['tokens'\]",
    ):
        kx.metrics.sensitivity_n(logit_model, {"tokens": x}, a)


def test_registered_columns_are_the_functions(dense_model):
    x = helpers.data((6,), seed=46)
    analyzer = kx.Gradient(dense_model)
    attributions = analyzer.analyze(x, 1)
    options = dict(analyzer=analyzer, name="gradient", params={}, masks=None, seed=3)
    expected = {  # 6 features, steps=3: groups of 2
        "faithfulness_estimate": kx.metrics.faithfulness_estimate(
            dense_model, x, attributions, 1, features_in_step=2
        ),
        "monotonicity": kx.metrics.monotonicity(
            dense_model, x, attributions, 1, features_in_step=2
        ),
        "monotonicity_correlation": kx.metrics.monotonicity_correlation(
            dense_model, x, attributions, 1, features_in_step=2, samples=10, seed=3
        ),
        "sensitivity_n": kx.metrics.sensitivity_n(dense_model, x, attributions, 1, seed=3).mean,
    }
    for name, values in expected.items():
        column = registry.get_metric(name)
        assert column.better == "higher" and not column.default and not column.report_default
        result = registry.metric_values(name, dense_model, x, attributions, 1, steps=3, **options)
        np.testing.assert_array_equal(result, values)
    rows = kx.metrics.evaluate(
        ["gradient"], dense_model, x, 1, metrics=["sensitivity_n"], steps=3, seed=3
    )
    np.testing.assert_allclose(rows[0]["sensitivity_n"], np.nanmean(expected["sensitivity_n"]))

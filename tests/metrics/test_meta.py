"""MetaQuantus meta-evaluation (Hedström et al., TMLR 2023), criteria by hand.

The four criteria are checked against slow references written from the paper's
definitions (one method, one draw, one sample at a time; scipy's Wilcoxon test),
against closed forms (an exact Wilcoxon p-value, a reversed ranking), and end to
end on a tiny model with a metric that ignores the explanation.
"""

import contextlib
import itertools
import math

import helpers
import numpy as np
import pytest
from scipy import stats

import keras_explain as kx
from keras_explain.metrics import meta, registry


# =====================================================================================
# Slow references, from the paper's definitions
# =====================================================================================
def iac_reference(clean, perturbed, selected, reactive):
    """Mean over draws k and methods l of p (NR) or 1 - p (AR), p the two-sided Wilcoxon
    signed-rank p-value of q*_l against q̂_kl on the selected samples (zeros split)."""
    values = []
    for k in range(len(perturbed)):
        rows = [n for n in range(clean.shape[1]) if selected[k][n]]
        if not rows:
            continue
        for method in range(len(clean)):
            first = [clean[method][n] for n in rows]
            second = [perturbed[k][method][n] for n in rows]
            if len(rows) == 1:
                p = 1.0
            else:
                p = stats.wilcoxon(first, second, zero_method="zsplit").pvalue
            values.append(1.0 - p if reactive else p)
    return float(np.mean(values)) if values else math.nan


def iec_nr_reference(clean, perturbed, selected):
    """Per draw, the share of (rank position, selected sample) where the method sitting at
    that position of the ascending order of q* is the one at that position for q̂."""
    per_draw = []
    methods = range(len(clean))
    for k in range(len(perturbed)):
        agree = []
        for n in range(clean.shape[1]):
            if not selected[k][n]:
                continue
            order = sorted(methods, key=lambda m: clean[m][n])  # sorted() is stable
            order_hat = sorted(methods, key=lambda m: perturbed[k][m][n])
            agree += [a == b for a, b in zip(order, order_hat)]
        if agree:
            per_draw.append(np.mean(agree))
    return float(np.mean(per_draw)) if per_draw else math.nan


def iec_ar_reference(clean, perturbed, selected, better):
    """Per draw, the share of (method, selected sample) whose score got worse."""
    per_draw = []
    for k in range(len(perturbed)):
        worse = []
        for method, n in itertools.product(range(len(clean)), range(clean.shape[1])):
            if selected[k][n]:
                q, q_hat = clean[method][n], perturbed[k][method][n]
                worse.append(q_hat < q if better == "higher" else q_hat > q)
        if worse:
            per_draw.append(np.mean(worse))
    return float(np.mean(per_draw)) if per_draw else math.nan


def synthetic(seed, k=3, methods=3, samples=12):
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(methods, samples))
    minor = clean + rng.normal(scale=0.05, size=(k, methods, samples))
    disruptive = rng.normal(size=(k, methods, samples))
    kept = rng.random((k, samples)) < 0.8
    changed = rng.random((k, samples)) < 0.5
    return clean, minor, disruptive, kept, changed


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("better", ["higher", "lower"])
def test_criteria_match_the_references(seed, better):
    clean, minor, disruptive, kept, changed = synthetic(seed)
    got = meta.criteria(clean, minor, disruptive, kept, changed, better=better)
    expected = {
        "IAC_NR": iac_reference(clean, minor, kept, reactive=False),
        "IAC_AR": iac_reference(clean, disruptive, changed, reactive=True),
        "IEC_NR": iec_nr_reference(clean, minor, kept),
        "IEC_AR": iec_ar_reference(clean, disruptive, changed, better),
    }
    assert list(got) == list(meta.CRITERIA)
    for name in meta.CRITERIA:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
        assert 0.0 <= got[name] <= 1.0


def test_scores_that_never_move_are_resilient_and_not_reactive():
    clean, _, _, _, _ = synthetic(3, samples=8)
    same = np.stack([clean] * 4)
    everything = np.ones((4, 8), bool)
    got = meta.criteria(clean, same, same, everything, everything)
    assert got == {"IAC_NR": 1.0, "IAC_AR": 0.0, "IEC_NR": 1.0, "IEC_AR": 0.0}


def test_closed_forms_of_a_shift_and_a_reversed_ranking():
    n = 10
    clean = np.stack([np.arange(n, dtype=float), np.arange(n, dtype=float) + 0.5])
    everything = np.ones((1, n), bool)
    shifted = (clean - 10.0)[None]  # every score worse by 10: all differences of one sign
    exact_p = 2.0 / 2**n  # two-sided exact Wilcoxon p-value with every rank on one side
    got = meta.criteria(clean, shifted, shifted, everything, everything, better="higher")
    assert got["IAC_AR"] == pytest.approx(1.0 - exact_p, abs=1e-15)
    assert got["IAC_NR"] == pytest.approx(exact_p, abs=1e-15)
    assert got["IEC_AR"] == 1.0  # every score got worse
    assert got["IEC_NR"] == 1.0  # the shift keeps the order
    lower = meta.criteria(clean, shifted, shifted, everything, everything, better="lower")
    assert lower["IEC_AR"] == 0.0  # lower is better: a lower score is not worse
    swapped = clean[::-1][None]  # the two methods swap places on every sample
    assert meta.criteria(clean, swapped, swapped, everything, everything)["IEC_NR"] == 0.0


def test_draws_without_selected_samples_are_left_out():
    clean, minor, disruptive, kept, changed = synthetic(4)
    none = np.zeros_like(changed)
    got = meta.criteria(clean, minor, disruptive, kept, none)
    assert math.isnan(got["IAC_AR"]) and math.isnan(got["IEC_AR"])
    partly = changed.copy()
    partly[0] = False  # the first draw changed no prediction: the others decide
    got = meta.criteria(clean, minor, disruptive, kept, partly)
    alone = meta.criteria(clean, minor[1:], disruptive[1:], kept[1:], partly[1:])
    assert got["IAC_AR"] == pytest.approx(alone["IAC_AR"], abs=1e-15)
    assert got["IEC_AR"] == pytest.approx(alone["IEC_AR"], abs=1e-15)
    one = np.zeros_like(changed)
    one[:, 0] = True  # a single sample can never reject: p = 1
    assert meta.criteria(clean, minor, disruptive, kept, one)["IAC_AR"] == 0.0


def test_criteria_errors():
    clean, minor, disruptive, kept, changed = synthetic(0)
    with pytest.raises(ValueError, match=r"criteria: expected clean \(L, N\).*Received: clean"):
        meta.criteria(clean, minor[:, :2], disruptive, kept, changed)
    with pytest.raises(ValueError, match=r"Unknown better. Received: better='up'"):
        meta.criteria(clean, minor, disruptive, kept, changed, better="up")


# =====================================================================================
# End to end on a tiny model
# =====================================================================================
@contextlib.contextmanager
def registered(name, values, better="higher"):
    kx.metrics.register_metric(name, better=better, default=False)(values)
    try:
        yield name
    finally:
        registry.unregister_metric(name)


def constant_per_sample(context):
    """Ignores the explanation, the model and the input's values: 1, 2, ..., B."""
    return np.arange(1.0, len(context.x) + 1.0)


@pytest.fixture(scope="module")
def tiny():
    return helpers.conv_sequential(), helpers.data((8, 8, 2), seed=5, batch=4)


METHODS = ["gradient", "input_t_gradient"]


def test_shapes_the_model_untouched_and_the_clean_scores_are_evaluates(tiny):
    model, x = tiny
    before = [w.copy() for w in model.get_weights()]
    result = kx.metrics.meta_evaluate(
        "sparseness", model, x, methods=METHODS, iterations=2, verbose=0
    )
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert result.methods == tuple(METHODS) and result.better == "higher"
    assert result.clean.shape == (2, 4)
    assert list(result.tests) == ["model", "input"]
    for test in result.tests.values():
        assert test.minor.shape == test.disruptive.shape == (2, 2, 4)
        assert test.minor_kept.shape == test.disruptive_changed.shape == (2, 4)
        assert all(0.0 <= value <= 1.0 for value in test.criteria.values())
        assert test.mc == pytest.approx(np.mean(list(test.criteria.values())))
        c = test.criteria
        area = (c["IAC_AR"] + c["IEC_AR"]) * (c["IAC_NR"] + c["IEC_NR"]) / 2
        assert test.area == pytest.approx(area)
    assert result.mc == pytest.approx(np.mean([t.mc for t in result.tests.values()]))
    for row, method in enumerate(METHODS):  # the clean row is what evaluate scores
        attributions = kx.create_analyzer(method, model).analyze(x)
        assert result.clean[row] == pytest.approx(kx.metrics.sparseness(attributions), rel=1e-6)
    rows = result.as_rows()
    assert [row["test"] for row in rows] == ["model", "input"]
    assert list(rows[0]) == ["metric", "test", *meta.CRITERIA, "MC", "area"]
    table = result.table()
    assert table.splitlines()[0].split() == ["metric", "test", *meta.CRITERIA, "MC", "area"]
    assert "mean MC over 2 test(s)" in table


def test_a_metric_that_ignores_the_explanation_sits_at_the_ar_floor(tiny):
    model, x = tiny
    with registered("_constant_per_sample", constant_per_sample) as name:
        result = kx.metrics.meta_evaluate(name, model, x, methods=METHODS, iterations=2, verbose=0)
    for test in result.tests.values():
        assert test.disruptive_changed.any()  # the disruptive noise flipped predictions
        assert test.criteria == {"IAC_NR": 1.0, "IAC_AR": 0.0, "IEC_NR": 1.0, "IEC_AR": 0.0}
        assert test.mc == 0.5


def test_a_negligible_minor_level_keeps_every_prediction_and_ranking(tiny):
    model, x = tiny
    result = kx.metrics.meta_evaluate(
        "deletion_auc",
        model,
        x,
        methods=METHODS,
        iterations=2,
        minor={"model": 1e-9, "input": 1e-9},
        seed=3,
        verbose=0,
    )
    for test in result.tests.values():
        assert test.minor_kept.all()
        assert test.criteria["IEC_NR"] == 1.0
        np.testing.assert_allclose(test.minor, np.stack([result.clean] * 2), atol=1e-5)
    again = kx.metrics.meta_evaluate(
        "deletion_auc",
        model,
        x,
        methods=METHODS,
        tests=("input",),
        iterations=2,
        minor={"model": 1e-9, "input": 1e-9},
        seed=3,
        verbose=0,
    )
    np.testing.assert_array_equal(again.tests["input"].disruptive, result.tests["input"].disruptive)


def test_without_reexplaining_an_attribution_only_metric_never_moves_with_the_input(tiny):
    # MetaQuantus' code scores the clean inputs' explanations on the noisy inputs
    # (ipt.py): sparseness reads only the explanation, so its scores stay put.
    model, x = tiny
    result = kx.metrics.meta_evaluate(
        "sparseness",
        model,
        x,
        methods=METHODS,
        tests="input",
        iterations=2,
        reexplain=False,
        verbose=0,
    )
    test = result.tests["input"]
    np.testing.assert_array_equal(test.minor, np.stack([result.clean] * 2))
    np.testing.assert_array_equal(test.disruptive, np.stack([result.clean] * 2))
    assert test.criteria == {"IAC_NR": 1.0, "IAC_AR": 0.0, "IEC_NR": 1.0, "IEC_AR": 0.0}


def test_errors(tiny):
    model, x = tiny

    def run(*args, **kwargs):
        kwargs = {"methods": METHODS, "iterations": 1, "verbose": 0, **kwargs}
        return kx.metrics.meta_evaluate(*args, **kwargs)

    with pytest.raises(ValueError, match=r"meta_evaluate: unknown metric. Received: 'nope'"):
        run("nope", model, x)
    with pytest.raises(ValueError, match=r"metric 'pointing_game' compares with ground-truth"):
        run("pointing_game", model, x)
    with pytest.raises(ValueError, match=r"ranking of several methods.*Pass at least two"):
        run("sparseness", model, x, methods=["gradient"])
    with pytest.raises(ValueError, match=r"tests must be some of \('model', 'input'\)"):
        run("sparseness", model, x, tests=("weights",))
    with pytest.raises(ValueError, match=r"iterations must be a positive int. Received: it"):
        run("sparseness", model, x, iterations=0)
    with pytest.raises(ValueError, match=r"minor must be a dict \{test: level\}"):
        run("sparseness", model, x, minor={"inputs": 0.1})
    with pytest.raises(ValueError, match=r"disruptive\['model'\]"):
        run("sparseness", model, x, disruptive={"model": -1.0})
    with pytest.raises(TypeError, match=r"reexplain must be True or False. Received: reexp"):
        run("sparseness", model, x, reexplain="yes")
    with pytest.raises(TypeError, match=r"'model' test perturbs the weights.*tests=\('input',\)"):
        run("sparseness", lambda inputs: inputs, x)

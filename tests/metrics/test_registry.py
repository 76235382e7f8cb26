"""The metric registry: one registration, seen by every table, default and check."""

import json
import re

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

layers = keras.layers


# =====================================================================================
# The metric registry: one registration, seen by every table, default and check
# =====================================================================================
def dense_logits(seed=31):
    """Flatten + Dense(3) on (4, 4, 1) images, with a non-zero bias."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(3, name="logits")]
    )
    return helpers.randomize_biases(model)


def dot_with_input(context):
    """Σ a·x per sample: for the gradient of a linear model, f_t(x) − b_t."""
    contexts.append(context)
    axes = tuple(range(1, context.x.ndim))
    return np.sum(np.asarray(context.attributions) * context.x, axis=axes)


def mass_in_mask(context):
    """Σ of the channel-summed attributions inside the mask, per sample."""
    maps = np.asarray(context.attributions).sum(axis=-1)
    return np.sum(maps * context.masks, axis=(1, 2))


contexts = []


@pytest.fixture
def toy_metrics():
    """Two metrics registered once each, removed again whatever the test does."""
    contexts.clear()
    kx.metrics.register_metric("toy_dot", better="higher", report_default=True)(dot_with_input)
    kx.metrics.register_metric("toy_mass", better="lower", needs_masks=True, report_default=True)(
        mass_in_mask
    )
    try:
        yield
    finally:
        for name in ("toy_dot", "toy_mass"):
            if name in kx.metrics.registry.names():
                kx.metrics.registry.unregister_metric(name)


def linear_closed_forms(model, x, target, masks):
    """f_t(x) − b_t and Σ_{mask} W_t (the gradient is W_t), by numpy from the weights."""
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_weights())
    flat = x.reshape(len(x), -1).astype(np.float64)
    columns = kernel[:, target].T  # (B, 16): the gradient of each sample's target logit
    dot = np.sum(flat * columns, axis=1)
    assert not np.allclose(dot, (flat @ kernel + bias)[np.arange(len(x)), target])  # b_t != 0
    mass = np.sum(columns * masks.reshape(len(x), -1), axis=1)
    return dot, mass


def test_one_registration_is_seen_by_every_table_default_and_check(toy_metrics, tmp_path):
    from keras_explain import benchmark

    model = dense_logits()
    x = helpers.data((4, 4, 1), seed=32, batch=3)
    target = np.array([2, 0, 1])
    masks = np.zeros((3, 4, 4), bool)
    masks[:, 1:3, :2] = True
    dot, mass = linear_closed_forms(model, x, target, masks)
    registry = kx.metrics.registry

    # the catalogue, the directions and the defaults
    assert kx.metrics.METRICS[-2:] == ("toy_dot", "toy_mass")
    assert benchmark.BETTER["toy_dot"] == "higher" and benchmark.BETTER["toy_mass"] == "lower"
    assert benchmark.COLUMNS[-2:] == ("toy_dot", "toy_mass")  # evaluate's defaults with masks
    assert "| toy_dot ↑ | toy_mass ↓ |" in benchmark.markdown_table([])
    assert registry.default_metrics(masks=False)[-1] == "toy_dot"
    assert registry.default_metrics(masks=True, report=True)[-2:] == ["toy_dot", "toy_mass"]

    # evaluate: the rows hold the closed forms, and the context is the documented one
    rows = kx.metrics.evaluate(
        ["gradient"],
        model,
        x,
        target,
        masks=masks,
        metrics=["toy_dot", "toy_mass"],
        steps=40,
        seed=7,
        verbose=0,
    )
    assert list(rows[0]) == ["method", "seconds_per_sample", "toy_dot", "toy_mass"]
    # float32 gradients summed over 16 features against float64: a few float32 ulps
    np.testing.assert_allclose(rows[0]["toy_dot"], dot.mean(), rtol=1e-6)
    np.testing.assert_allclose(rows[0]["toy_mass"], mass.mean(), rtol=1e-6)
    (context,) = contexts
    assert (context.name, context.params, context.steps, context.seed) == ("gradient", {}, 16, 7)
    assert context.masks is masks and context.model is model
    np.testing.assert_array_equal(context.target, target)
    assert isinstance(context.analyzer, kx.Gradient)

    # the report: its default columns and its "better" arrows, values for the top class
    path = kx.report(["gradient"], model, x, masks=masks, metrics=None, out=str(tmp_path / "r"))
    text = open(path, encoding="utf-8").read()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    assert data["metrics"]["columns"][-2:] == ["toy_dot", "toy_mass"]
    assert data["metrics"]["better"]["toy_dot"] == "higher"
    top = np.argmax(model.predict(x, verbose=0), axis=1)
    top_dot, top_mass = linear_closed_forms(model, x, top, masks)
    np.testing.assert_allclose(data["metrics"]["rows"][0]["toy_dot"], top_dot.mean(), rtol=1e-6)
    np.testing.assert_allclose(data["metrics"]["rows"][0]["toy_mass"], top_mass.mean(), rtol=1e-6)

    # ExplanationLogger: accepted by name, logged as evaluate computes it
    logger = kx.callbacks.ExplanationLogger(
        ["gradient"], x, target, log_dir=tmp_path, metrics=["toy_dot"]
    )
    logger.set_model(model)
    logger.on_train_begin()
    np.testing.assert_allclose(logger.scores("gradient")["toy_dot"], dot.mean(), rtol=1e-6)

    # the one check, with each caller's prefix: masks needed, then the name unknown
    calls = {
        "evaluate": lambda m: kx.metrics.evaluate(["gradient"], model, x, metrics=m, verbose=0),
        "report": lambda m: kx.report(["gradient"], model, x, metrics=m, out=str(tmp_path / "r")),
        "ExplanationLogger": lambda m: kx.callbacks.ExplanationLogger(
            ["gradient"], x, metrics=m, log_dir=tmp_path
        ),
    }
    for caller, call in calls.items():
        with pytest.raises(
            ValueError,
            match=rf"^{caller}: metric 'toy_mass' compares with ground-truth masks\. "
            r"Received: masks=None\. Pass masks=\(B, H, W\) booleans",
        ):
            call(["toy_mass"])
        with pytest.raises(
            ValueError,
            match=rf"^{caller}: unknown metric\. Received: 'toy_dott'\. Expected some of "
            r"\('deletion_auc', .*'toy_dot', 'toy_mass'\)",
        ):
            call(["toy_dott"])

    # unregistered: gone from every table, refused by every check
    assert registry.unregister_metric("toy_mass").needs_masks
    assert "toy_mass" not in kx.metrics.METRICS and "toy_mass" not in benchmark.BETTER
    assert benchmark.COLUMNS[-1] == "toy_dot"
    for caller, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{caller}: unknown metric\. Received: 'toy_mass'"):
            call(["toy_mass"])


def test_registering_a_metric_checks_its_name_direction_and_flags(toy_metrics):
    register = kx.metrics.register_metric
    with pytest.raises(ValueError, match=r"the metric 'toy_dot' is already registered\. Pick"):
        register("toy_dot", better="higher")(dot_with_input)
    with pytest.raises(ValueError, match=r"other keys of a row\). Received: name='method'"):
        register("method", better="higher")
    with pytest.raises(ValueError, match=r"better must be one of \('higher', 'lower'\)\. "):
        register("toy_up", better="up")
    with pytest.raises(TypeError, match=r"needs_masks must be True or False\. Received: "):
        register("toy_flag", better="lower", needs_masks="yes")
    with pytest.raises(TypeError, match=r"'toy_value' needs a function values\(context\)"):
        register("toy_value", better="lower")(3.0)
    with pytest.raises(ValueError, match=r"unregister_metric: unknown metric\. Received: 'nope'"):
        kx.metrics.registry.unregister_metric("nope")
    assert "toy_value" not in kx.metrics.METRICS and "toy_up" not in kx.metrics.METRICS


def test_the_guides_table_of_metrics_is_the_registry():
    page = (helpers.REPO_ROOT / "docs" / "guide" / "metrics.md").read_text(encoding="utf-8")
    section = page.split("### The registered metrics", 1)[1].split("\n#", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    word = {True: "yes", False: "no"}
    assert rows == [
        [
            f"`{metric.name}`",
            metric.better,
            word[metric.needs_masks],
            word[metric.default],
            word[metric.report_default],
        ]
        for metric in kx.metrics.registry.registered()
    ]
    # the built-in columns, as the paper of each metric defines its direction
    assert [row[:3] for row in rows] == [
        ["`deletion_auc`", "lower", "no"],
        ["`insertion_auc`", "higher", "no"],
        ["`infidelity`", "lower", "no"],
        ["`faithfulness_correlation`", "higher", "no"],
        ["`pointing_game`", "higher", "yes"],
        ["`relevance_mass`", "higher", "yes"],
        ["`sparseness`", "higher", "no"],
        ["`top_k_intersection`", "higher", "yes"],
        ["`attribution_localisation`", "higher", "yes"],
        ["`localisation_auc`", "higher", "yes"],
        ["`sensitivity_max`", "lower", "no"],
        ["`randomization`", "lower", "no"],
        ["`faithfulness_estimate`", "higher", "no"],
        ["`monotonicity`", "higher", "no"],
        ["`monotonicity_correlation`", "higher", "no"],
        ["`sensitivity_n`", "higher", "no"],
        ["`irof`", "higher", "no"],
        ["`road`", "lower", "no"],
        ["`avg_sensitivity`", "lower", "no"],
        ["`local_lipschitz_estimate`", "lower", "no"],
        ["`continuity`", "lower", "no"],
        ["`relative_input_stability`", "lower", "no"],
        ["`relative_output_stability`", "lower", "no"],
        ["`consistency`", "higher", "no"],
        ["`sufficiency`", "higher", "no"],
        ["`complexity`", "lower", "no"],
        ["`effective_complexity`", "lower", "no"],
        ["`smooth_mprt`", "lower", "no"],
        ["`efficient_mprt`", "higher", "no"],
        ["`random_logit`", "lower", "no"],
        ["`non_sensitivity`", "lower", "no"],
        ["`input_invariance`", "higher", "no"],
    ]

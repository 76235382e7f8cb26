"""``kx.concepts``: CAV, TCAV with its t-test, RCAV, concept maps.

References: a model whose layer feeds a known linear read-out (the logit's gradient
at the layer is that read-out's weights, for every input), tape gradients of
hand-cut models, scipy's t-test, a planted linear concept, numpy einsum and the
half-pixel resize of ``helpers``.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import keras_explain as kx
from keras_explain import concepts

layers = keras.layers


def readout_model(seed=0):
    """x -> h = x (Dense "h", identity) -> h W + b -> softmax; d logit_t / d h = W[:, t]."""
    helpers.seeded(seed)
    inputs = keras.Input((4,))
    h = layers.Dense(4, kernel_initializer="identity", bias_initializer="zeros", name="h")(inputs)
    outputs = layers.Dense(3, activation="softmax", name="logits")(h)
    model = keras.Model(inputs, outputs)
    readout = model.get_layer("logits").kernel.numpy()[:, 0].astype(np.float64)
    return helpers.randomize_biases(model), readout


def mlp(seed=0):
    """Gradients at "h" vary from input to input."""
    helpers.seeded(seed)
    return helpers.randomize_biases(
        keras.Sequential(
            [
                keras.Input((4,)),
                layers.Dense(6, activation="relu", name="h"),
                layers.Dense(5, activation="tanh", name="t"),
                layers.Dense(3, name="out"),
            ]
        )
    )


def sets(readout, seed=0, size=30):
    rng = np.random.default_rng(seed)
    unit = readout / np.linalg.norm(readout)
    along = rng.normal(size=(size, 4)) + 6 * unit
    against = rng.normal(size=(size, 4)) - 6 * unit
    return along.astype("float32"), against.astype("float32"), rng


# -- CAV and tcav --------------------------------------------------------------------------
def test_tcav_is_exactly_one_along_and_zero_against_the_readout():
    model, readout = readout_model()
    along, against, rng = sets(readout)
    random_x = rng.normal(size=(30, 4)).astype("float32")
    x = rng.normal(size=(16, 4)).astype("float32")
    cav_along = concepts.CAV.fit(model, "h", along, random_x)
    cav_against = concepts.CAV.fit(model, "h", against, random_x)
    assert concepts.tcav(model, "h", cav_along, x, target=0) == 1.0
    assert concepts.tcav(model, "h", cav_against, x, target=0) == 0.0
    # the CAV is a unit vector pointing towards the concept's shift
    assert np.linalg.norm(cav_along.vector) == pytest.approx(1.0, abs=1e-6)
    assert cav_along.vector @ readout / np.linalg.norm(readout) > 0.8
    assert cav_along.accuracy == 1.0 and cav_along.vector.dtype == np.float32


def test_tcav_equals_the_fraction_of_positive_tape_directional_derivatives():
    model = mlp()
    x = helpers.data((4,), batch=40)
    vector = np.random.default_rng(3).normal(size=6)
    cav = concepts.CAV((vector / np.linalg.norm(vector)).astype("float32"), 1.0, (6,))
    front = keras.Sequential(model.layers[:1])
    back = keras.Sequential(model.layers[1:])
    for target in (0, 2):
        _, gradient = helpers.tape_values(front, back, x, target)
        expected = np.mean(gradient @ cav.vector.astype(np.float64) > 0)
        assert 0 < expected < 1  # the check sees a fraction, not a constant
        assert concepts.tcav(model, "h", cav, x, target) == expected


def test_scores_use_the_logit_gradient_not_the_original_codes_loss_gradient():
    """The sign convention of the module docstring, on the read-out model.

    The original TCAV code counts grad_h L . v < 0 with L = -log softmax(z)_t. For a
    read-out z = h W + b, grad_h L = -(W_t - sum_k p_k W_k) (tape-checked below), so a
    direction that raises logit t but raises another logit more scores 1 here and less
    than 1 there, on the inputs where that other class is likely.
    """
    model, readout = readout_model()
    weights = model.get_layer("logits").kernel.numpy().astype(np.float64)
    # v raises logit 0 a little (W_0 . v = 0.1 |W_0|^2 > 0) and logit 1 a lot
    shift = 0.1 - weights[:, 0] @ weights[:, 1] / (readout @ readout)
    vector = weights[:, 1] + shift * weights[:, 0]
    assert vector @ readout > 0 and vector @ weights[:, 1] > 10 * (vector @ readout)
    cav = concepts.CAV((vector / np.linalg.norm(vector)).astype("float32"), 1.0, (4,))
    x = 3 * helpers.data((4,), batch=64)
    assert concepts.tcav(model, "h", cav, x, target=0) == 1.0
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)  # h = inputs (identity layer "h")
        probabilities = model(inputs)
        loss = keras.losses.sparse_categorical_crossentropy(np.zeros(64), probabilities)
    loss_gradient = tape.gradient(loss, inputs).numpy().astype(np.float64)
    p = probabilities.numpy().astype(np.float64)
    np.testing.assert_allclose(loss_gradient, -(readout - p @ weights.T), rtol=1e-4, atol=1e-5)
    original = np.mean(loss_gradient @ vector < 0)
    assert 0 < original < 1  # the loss convention disagrees on some inputs


# -- TCAV with statistical testing -----------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, constant scores
def test_tcav_runs_match_the_readout_and_the_t_test_is_scipys():
    model, readout = readout_model()
    along, against, rng = sets(readout, size=40)
    random_concept = rng.normal(size=(2000, 4)).astype("float32")
    pool = rng.normal(size=(80, 4)).astype("float32")
    x = rng.normal(size=(8, 4)).astype("float32")
    experiment = concepts.TCAV(
        model,
        "h",
        {"along": along, "against": against},
        pool,
        runs=64,
    )
    rows = {row["concept"]: row for row in experiment.run(x, target=0)}
    for name, row in rows.items():
        # every gradient at h is the read-out: each run's score is 1[w . v > 0]
        expected = [float(readout @ cav.vector > 0) for cav in experiment.cavs[name]]
        np.testing.assert_array_equal(row["scores"], expected)
        random_expected = [float(readout @ cav.vector > 0) for cav in experiment.random_cavs]
        np.testing.assert_array_equal(row["random_scores"], random_expected)
        assert row["p_value"] == stats.ttest_ind(row["scores"], row["random_scores"]).pvalue
        assert row["mean"] == np.mean(expected) and row["std"] == np.std(expected)
    assert rows["along"]["mean"] == 1.0 and rows["along"]["significant"]
    assert rows["against"]["mean"] == 0.0 and rows["against"]["significant"]
    # random-vs-random: the two halves of a random split are exchangeable, so each run
    # scores 1 with probability 1/2; over 64 runs 4 standard errors are 4 * 0.5 / 8
    assert abs(np.mean(rows["along"]["random_scores"]) - 0.5) < 0.25
    # a random concept of 2000 samples against halves of one 80-sample pool is no control:
    # its CAV points from the pool's mean, which every run shares (the converged
    # logistic regression shows it; only the noise of a stochastic fit hid it). With a
    # new random set each run it scores near 1/2 and is not told apart from random.
    experiment = concepts.TCAV(
        model, "h", {"random": random_concept}, [pool[:40] for pool in pools(rng, 64)], runs=64
    )
    row = experiment.run(x, target=0)[0]
    assert abs(row["mean"] - 0.5) < 0.25
    assert not row["significant"] and row["p_value"] > 0.05


def test_tcav_with_a_list_of_random_sets_pairs_them_by_run():
    model, readout = readout_model()
    along, _, rng = sets(readout)
    randoms = [rng.normal(size=(20, 4)).astype("float32") for _ in range(3)]
    experiment = concepts.TCAV(
        model, "h", {"along": along}, randoms, runs=3, seed=5, classifier="linear"
    )
    h = [kx.activations(model, "h", r) for r in randoms]
    for run in range(3):
        # run k: the concept against random[k]; random[k + 1] against random[k]
        expected = concepts.CAV.from_activations(
            kx.activations(model, "h", along), h[run], seed=5 + run
        )
        np.testing.assert_array_equal(experiment.cavs["along"][run].vector, expected.vector)
        expected = concepts.CAV.from_activations(h[(run + 1) % 3], h[run], seed=5 + run)
        np.testing.assert_array_equal(experiment.random_cavs[run].vector, expected.vector)
    with pytest.raises(ValueError, match=r"at least max\(2, runs\) = 4 sets\. Received: 3"):
        concepts.TCAV(model, "h", {"along": along}, randoms, runs=4)


def pools(rng, count):
    return [rng.normal(size=(80, 4)).astype("float32") for _ in range(count)]


def logistic_optimum(concept, random, seed, alpha=0.01):
    """scikit-learn's LogisticRegression on the same split and objective, converged hard."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    features = np.concatenate([concept, random]).reshape(len(concept) + len(random), -1)
    labels = np.r_[np.ones(len(concept)), np.zeros(len(random))]
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.33, stratify=labels, random_state=seed
    )
    model = LogisticRegression(C=1 / (alpha * len(train)), tol=1e-12, max_iter=100_000)
    model.fit(features[train].astype(np.float64), labels[train])
    return model, float(np.mean(model.predict(features[test]) == labels[test]))


def test_batched_cav_is_scikit_learns_l2_logistic_regression_optimum():
    rng = np.random.default_rng(3)
    direction = rng.normal(size=(2, 3, 5))  # an activation shape with several axes
    concept = (rng.normal(size=(70, 2, 3, 5)) + 0.4 * direction).astype("float32")
    random = (rng.normal(size=(50, 2, 3, 5)) * 2 + 1).astype("float32")  # uncentred, wider
    cav = concepts.CAV.from_activations(concept, random, classifier="batched", seed=4)
    reference, accuracy = logistic_optimum(concept, random, seed=4)
    expected = reference.coef_[0] / np.linalg.norm(reference.coef_[0])
    assert cav.shape == (2, 3, 5) and cav.vector.dtype == np.float32
    assert float(cav.vector.astype(np.float64) @ expected) > 1 - 1e-5
    np.testing.assert_allclose(cav.classifier.coef_, reference.coef_, rtol=0, atol=2e-3)
    np.testing.assert_allclose(cav.classifier.intercept_, reference.intercept_, rtol=2e-3)
    assert cav.accuracy == accuracy and 0.7 < accuracy < 1  # a hard, not separable, problem
    features = np.concatenate([concept, random]).reshape(120, -1)
    np.testing.assert_array_equal(cav.classifier.predict(features), reference.predict(features))


def test_tcav_fits_every_cav_at_once_and_each_equals_its_fit_alone():
    model, readout = readout_model()
    along, against, rng = sets(readout)
    randoms = [rng.normal(size=(25, 4)).astype("float32") for _ in range(4)]
    experiment = concepts.TCAV(model, "h", {"along": along, "against": against}, randoms, runs=4)
    h = [kx.activations(model, "h", r) for r in randoms]
    for run in range(4):
        for name, values in (("along", along), ("against", against)):
            alone = concepts.CAV.from_activations(
                kx.activations(model, "h", values), h[run], classifier="batched", seed=run
            )
            cav = experiment.cavs[name][run]
            assert float(cav.vector @ alone.vector) > 1 - 1e-6 and cav.accuracy == alone.accuracy
        reference, _ = logistic_optimum(h[(run + 1) % 4], h[run], seed=run)
        expected = reference.coef_[0] / np.linalg.norm(reference.coef_[0])
        assert float(experiment.random_cavs[run].vector @ expected) > 1 - 1e-5


def test_batched_tcav_scores_agree_with_the_original_codes_sgd_within_its_spread():
    # the original code's classifier, SGDClassifier(alpha=0.01) fitted by stochastic steps,
    # against the converged L2 logistic regression, on an MLP whose gradients at "h" vary
    # from input to input: a concept that matters (significant either way) and one that
    # does not, with scores spread over the runs
    model = mlp(seed=2)
    for target, scale, significant in ((0, 0.5, True), (2, 0.2, False)):
        rng = np.random.default_rng(2)
        shift = scale * np.float32([0.5, 1, -1, 0.5])
        concept = rng.normal(size=(60, 4)).astype("float32") + shift
        randoms = [rng.normal(size=(60, 4)).astype("float32") for _ in range(10)]
        x = rng.normal(size=(200, 4)).astype("float32")
        rows = {}
        for classifier in ("batched", "linear"):
            experiment = concepts.TCAV(
                model, "h", {"c": concept}, randoms, runs=10, classifier=classifier
            )
            rows[classifier] = experiment.run(x, target=target)[0]
        assert rows["linear"]["std"] > 0.1
        assert abs(rows["batched"]["mean"] - rows["linear"]["mean"]) < rows["linear"]["std"]
        assert rows["batched"]["significant"] == rows["linear"]["significant"] == significant


def test_one_array_as_both_sets_is_fitted_like_two_copies():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(30, 4)).astype("float32")
    same = concepts.CAV.from_activations(values, values, classifier="batched", seed=2)
    copies = concepts.CAV.from_activations(values, values.copy(), classifier="batched", seed=2)
    np.testing.assert_array_equal(same.vector, copies.vector)
    assert same.accuracy == copies.accuracy


def test_batched_fit_warns_when_it_does_not_converge():
    from keras_explain import _logistic

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, 6)).astype("float32")
    part = _logistic.Part
    problem = [part(0, np.arange(0, 15), np.arange(15, 20), 1.0)]
    problem.append(part(1, np.arange(0, 15), np.arange(15, 20), 0.0))
    with pytest.warns(RuntimeWarning, match=r"did not converge in 2 passes \(relative gradient"):
        fitted = _logistic.fit([rows[:20] + 1, rows[20:]], [problem], alpha=0.01, max_iter=2)
    assert not fitted.converged and fitted.iterations == 2


# -- RCAV ----------------------------------------------------------------------------------
def test_rcav_recovers_a_planted_direction():
    model = mlp()
    x = helpers.data((4,), batch=200)
    h = kx.activations(model, "h", x).astype(np.float64)
    direction = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    noise = 0.01 * np.random.default_rng(2).normal(size=200)
    rcav = concepts.RCAV.fit(model, "h", x, h @ direction + noise)
    cosine = rcav.vector @ direction / np.linalg.norm(direction)
    assert cosine > 0.99 and rcav.r2 > 0.99
    # bidirectional relevance from tape gradients at h
    front, back = keras.Sequential(model.layers[:1]), keras.Sequential(model.layers[1:])
    _, gradient = helpers.tape_values(front, back, x, 1)
    sensitivities = gradient @ rcav.vector.astype(np.float64)
    expected = rcav.r2 * sensitivities.mean() / sensitivities.std()
    np.testing.assert_allclose(rcav.bidirectional_score(x, 1), expected, rtol=1e-5)
    # an RCAV is a concept vector for tcav too
    assert concepts.tcav(model, "h", rcav, x, 1) == np.mean(sensitivities > 0)


def test_rcav_bad_values_and_constant_sensitivities():
    model, _ = readout_model()
    x = helpers.data((4,), batch=30)
    with pytest.raises(ValueError, match=r"one concept value per sample, shape \(30,\)"):
        concepts.RCAV.fit(model, "h", x, np.zeros(29))
    with pytest.raises(ValueError, match=r"more training samples than features"):
        concepts.RCAV.fit(model, "h", x[:6], np.arange(6.0))
    rcav = concepts.RCAV.fit(model, "h", x, x @ np.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match=r"every sensitivity is equal"):
        rcav.bidirectional_score(x, 0)  # the read-out model's gradient is constant


# -- concept maps --------------------------------------------------------------------------
def conv_model():
    helpers.seeded(0)
    return helpers.randomize_biases(
        keras.Sequential(
            [
                keras.Input((8, 8, 2)),
                layers.Conv2D(3, 3, padding="same", activation="relu", name="c1"),
                layers.MaxPooling2D(name="pool"),
                layers.Conv2D(4, 3, padding="same", name="c2"),
                layers.Flatten(),
                layers.Dense(2),
            ]
        )
    )


def test_concept_map_splits_the_projection_over_positions():
    model = conv_model()
    x = helpers.data((8, 8, 2), batch=3)
    activations = keras.Model(model.inputs[0], model.get_layer("c2").output)(x).numpy()
    vector = np.random.default_rng(0).normal(size=4 * 4 * 4).astype("float32")
    cav = concepts.CAV(vector, 1.0, (4, 4, 4))
    maps = concepts.concept_map(model, "c2", cav, x, upsample=False)
    expected = np.einsum("bhwc,hwc->bhw", activations, vector.reshape(4, 4, 4))
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        maps.sum(axis=(1, 2)), activations.reshape(3, -1) @ vector, rtol=1e-5, atol=1e-5
    )
    upsampled = concepts.concept_map(model, "c2", cav, x)
    assert upsampled.shape == (3, 8, 8) and upsampled.dtype == np.float32
    np.testing.assert_allclose(upsampled, helpers.resize_reference(expected, (8, 8)), atol=1e-5)
    # a vector of one weight per channel applies at every position
    channel = concepts.CAV(vector[:4], 1.0, (4,))
    np.testing.assert_allclose(
        concepts.concept_map(model, "c2", channel, x, upsample=False),
        activations @ vector[:4],
        rtol=1e-5,
        atol=1e-5,
    )


def test_concept_map_needs_a_spatial_layer_and_a_matching_vector():
    model = conv_model()
    x = helpers.data((8, 8, 2), batch=2)
    with pytest.raises(ValueError, match=r"layer 'flatten.*' has output shape \(batch, 64\) "):
        concepts.concept_map(model, model.layers[3], concepts.CAV(np.ones(64), 1.0, (64,)), x)
    with pytest.raises(
        ValueError, match=r"fitted on activations of shape \(5,\) but layer 'c2' outputs"
    ):
        concepts.concept_map(model, "c2", concepts.CAV(np.ones(5), 1.0, (5,)), x)


# -- bad input -----------------------------------------------------------------------------
def test_concept_and_random_sets_of_different_activation_shapes_are_rejected():
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((None, None, 1)),
            layers.Conv2D(2, 3, name="c"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2),
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"CAV: the concept and random sets must give activations of the same shape\. "
        r"Received: concept activations \(6, 6, 2\), random activations \(4, 4, 2\)",
    ):
        concepts.CAV.fit(model, "c", np.zeros((4, 8, 8, 1)), np.zeros((4, 6, 6, 1)))


def test_fewer_than_two_samples_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match=r"at least 2 samples in each set\. Received: 1 concept"):
        concepts.CAV.from_activations(np.zeros((1, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"classifier must be one of .*classifier='svm'"):
        concepts.CAV.from_activations(np.zeros((4, 3)), np.ones((4, 3)), classifier="svm")
    model, _ = readout_model()
    x = helpers.data((4,), batch=8)
    with pytest.raises(ValueError, match=r"runs >= 2 for a t-test\. Received: runs=1"):
        concepts.TCAV(model, "h", {"c": x}, x, runs=1)
    with pytest.raises(ValueError, match=r"two halves of at least 2 samples\. Received: 3"):
        concepts.TCAV(model, "h", {"c": x}, x[:3], runs=2)
    cav = concepts.CAV(np.ones(5, "float32"), 1.0, (5,))
    with pytest.raises(ValueError, match=r"tcav: .*shape \(5,\) but layer 'h' outputs \(4,\)"):
        concepts.tcav(model, "h", cav, x)

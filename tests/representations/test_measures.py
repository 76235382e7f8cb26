"""CKA, CCA, SVCCA and PWCCA: the paper's demo numbers, references, invariances, errors.

Expected values are the CKA paper demo's printed numbers (Kornblith et al. 2019,
google-research/google-research ``representation_similarity/Demo.ipynb``), numpy
references from the papers' formulas in ``helpers`` (N x N U-centering, classical
Σ^-1/2 CCA), and exact invariances.
"""

import helpers
import numpy as np
import pytest
from helpers import two_models

from keras_explain import representations as rep


@pytest.fixture
def demo():
    """The CKA demo's data: np.random.seed(1337); X = randn(100, 10); Y = X + randn(100, 10)."""
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = x + np.random.randn(100, 10)
    return x, y


def random_orthogonal(size, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return q * np.sign(np.diag(r))


# -- the paper's demo numbers -----------------------------------------------------------
def test_cka_demo_numbers(demo):
    x, y = demo
    assert round(rep.cka(x, y), 5) == 0.55761
    assert round(rep.cka(x, y, kernel="rbf", threshold=0.5), 5) == 0.65483
    assert round(rep.cka(x, y, debiased=True), 5) == 0.51346
    # threshold is used: the demo's other bandwidths give other values
    assert abs(rep.cka(x, y, kernel="rbf", threshold=2.0) - 0.65483) > 1e-3


def test_mean_squared_cca_demo_number_with_centered_columns(demo):
    x, y = demo
    assert round(float(np.mean(rep.cca(x, y) ** 2)), 5) == 0.54540
    # the demo's own cca takes QR bases of the raw (uncentered) columns and prints
    # 0.54312: the difference is the centering, nothing else
    raw_x, raw_y = np.linalg.qr(x)[0], np.linalg.qr(y)[0]
    uncentered = np.linalg.svd(raw_x.T @ raw_y, compute_uv=False)
    assert round(float(np.mean(uncentered**2)), 5) == 0.54312


def test_linear_cka_feature_and_gram_paths_equal_the_n_by_n_reference():
    rng = np.random.default_rng(0)
    # N > features: feature-space path; N <= features: kernel path
    for features in (5, 40):
        x = rng.normal(size=(24, features))
        y = np.tanh(x @ rng.normal(size=(features, 7))) + 0.3 * rng.normal(size=(24, 7))
        for debiased in (False, True):
            # float64 on both sides, different summation orders: 1e-12
            np.testing.assert_allclose(
                rep.cka(x, y, debiased=debiased),
                helpers.cka_reference(x, y, debiased),
                rtol=1e-12,
            )


# -- invariances --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{}, {"debiased": True}, {"kernel": "rbf", "threshold": 0.7}],
    ids=["linear", "debiased", "rbf"],
)
def test_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(demo, options):
    x, y = demo
    value = rep.cka(x, y, **options)
    q = random_orthogonal(10, seed=1)
    np.testing.assert_allclose(rep.cka(x @ q, 2.5 * y, **options), value, rtol=1e-10)
    np.testing.assert_allclose(rep.cka(y, x, **options), value, rtol=1e-12)  # symmetric
    # not invariant to a general (anisotropic) linear map: the check can fail
    stretch = np.diag(np.linspace(0.1, 10, 10))
    assert abs(rep.cka(x @ stretch, y, **options) - value) > 1e-3


def test_cca_invariant_to_invertible_linear_maps(demo):
    x, y = demo
    correlations = rep.cca(x, y)
    rng = np.random.default_rng(2)
    map_x, map_y = rng.normal(size=(10, 10)), rng.normal(size=(10, 10))
    np.testing.assert_allclose(rep.cca(x @ map_x + 3.0, y @ map_y), correlations, atol=1e-10)
    reference, _, _ = helpers.cca_reference(x, y)
    np.testing.assert_allclose(correlations, reference, atol=1e-10)
    assert np.all(np.diff(correlations) <= 0)


def test_cca_drops_linearly_dependent_features():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    dependent = np.concatenate([x, x[:, :1] + x[:, 1:2], np.ones((50, 1))], axis=1)
    np.testing.assert_allclose(rep.cca(dependent, y), rep.cca(x, y), atol=1e-10)


# -- SVCCA and PWCCA ----------------------------------------------------------------------
def test_svcca_keeps_the_directions_that_explain_keep_of_the_variance():
    rng = np.random.default_rng(4)
    scales = np.array([10.0, 5.0, 1.0, 0.1, 0.01])
    x = rng.normal(size=(200, 5)) * scales
    y = x @ rng.normal(size=(5, 5)) + rng.normal(size=(200, 5))
    # k from the variance shares of each side's centered SVD; reference: numpy SVD and
    # classical CCA. `directions` is what x keeps, checked so that keep cannot be ignored
    for keep, directions in ((1.0, 5), (0.99, 2), (3, 3)):
        reduced = []
        for side in (x, y):
            u, s, _ = np.linalg.svd(side - side.mean(axis=0), full_matrices=False)
            k = keep
            if isinstance(keep, float):
                k = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= keep - 1e-12)) + 1
            reduced.append(u[:, :k] * s[:k])
        assert reduced[0].shape[1] == directions
        correlations, _, _ = helpers.cca_reference(*reduced)
        np.testing.assert_allclose(rep.svcca(x, y, keep=keep), np.mean(correlations), atol=1e-10)


@pytest.mark.parametrize("widths", [(4, 7), (7, 4), (5, 5)])
def test_pwcca_weights_by_the_smaller_side_with_its_own_activations(widths):
    rng = np.random.default_rng(5)
    latent = rng.normal(size=(300, 3))
    a = latent @ rng.normal(size=(3, widths[0])) + 0.5 * rng.normal(size=(300, widths[0]))
    b = latent @ rng.normal(size=(3, widths[1])) + 0.8 * rng.normal(size=(300, widths[1]))
    side = "a" if widths[0] <= widths[1] else "b"
    expected = helpers.pwcca_reference(a, b, side)
    np.testing.assert_allclose(rep.pwcca(a, b), expected, atol=1e-10)
    # weighting by the other side gives another value here, so the side matters
    other = helpers.pwcca_reference(a, b, "b" if side == "a" else "a")
    assert abs(other - expected) > 1e-3


def test_pwcca_and_svcca_of_a_linear_copy_are_one(demo):
    x, _ = demo
    copy = x @ np.random.default_rng(6).normal(size=(10, 10)) - 4.0
    assert rep.pwcca(x, copy) == pytest.approx(1.0, abs=1e-10)
    assert rep.svcca(x, copy, keep=1.0) == pytest.approx(1.0, abs=1e-10)


# -- bad input ---------------------------------------------------------------------------
def test_different_sample_counts_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"cka: .*Received: a with 10 samples, b with 9"):
        rep.cka(rng.normal(size=(10, 3)), rng.normal(size=(9, 3)))
    with pytest.raises(ValueError, match=r"pwcca: .*Received: a with 10 samples, b with 8"):
        rep.pwcca(rng.normal(size=(10, 3)), rng.normal(size=(8, 3)))


def test_cca_with_no_more_samples_than_features_says_so_and_suggests_svd():
    rng = np.random.default_rng(0)
    with pytest.raises(
        ValueError,
        match=r"CCA needs more samples than features.*Received: b with 20 samples and 20 "
        r"features\. Reduce the features first, e\.g\. svcca\(a, b, keep=0\.99\) or an SVD",
    ):
        rep.cca(rng.normal(size=(20, 3)), rng.normal(size=(20, 20)))


def test_too_few_samples_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match=r"cka needs at least 4 samples\. Received: 3"):
        rep.cka(np.eye(3), np.eye(3), debiased=True)
    with pytest.raises(ValueError, match=r"cka needs at least 2 samples\. Received: 1"):
        rep.cka(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"kernel"):
        rep.cka(np.eye(4), np.eye(4), kernel="cosine")
    with pytest.raises(ValueError, match=r"keep=1\.5"):
        rep.svcca(np.eye(4), np.eye(4), keep=1.5)
    model_a, _ = two_models()
    with pytest.raises(ValueError, match=r"minibatches of at least 4 samples.*batch_size=3"):
        rep.similarity_matrix(model_a, model_a, helpers.data((6,), batch=8), batch_size=3)

"""``kx.representations``: CKA, CCA, SVCCA, PWCCA, minibatch CKA, embeddings, projector files.

Expected values are the CKA paper demo's printed numbers (Kornblith et al. 2019,
google-research/google-research ``representation_similarity/Demo.ipynb``), numpy
references from the papers' formulas in ``helpers`` (N x N U-centering, classical
Σ^-1/2 CCA), and exact invariances.
"""

import os

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins import projector

import keras_explain as kx
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


# -- minibatch CKA between the layers of two models ------------------------------------
def two_models():
    helpers.seeded(0)
    a = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(12, activation="relu", name="a1"),
            keras.layers.Dense(5, name="a2"),
        ]
    )
    helpers.seeded(1)
    b = helpers.nested(seed=1)
    return helpers.randomize_biases(a), b


def test_minibatch_cka_of_one_minibatch_equals_full_debiased_cka():
    model_a, model_b = two_models()
    x = helpers.data((6,), batch=30)
    matrix, names_a, names_b = rep.similarity_matrix(model_a, model_b, x, batch_size=30)
    inner = [layer.name for layer in model_b.get_layer("backbone").layers]
    assert names_a == ["a1", "a2"]
    assert names_b == [*inner, model_b.layers[2].name, model_b.layers[3].name]
    for i, name_a in enumerate(names_a):
        acts_a = kx.activations(model_a, name_a, x)
        for j, name_b in enumerate(names_b):
            acts_b = kx.activations(model_b, name_b, x)
            # the Nguyen et al. formula and U-centering, both float64: 1e-10
            np.testing.assert_allclose(
                matrix[i, j], helpers.cka_reference(acts_a, acts_b, True), rtol=1e-10
            )


def test_minibatch_cka_averages_hsic_over_minibatches():
    model_a, model_b = two_models()
    x = helpers.data((6,), batch=23)
    inner = model_b.get_layer("backbone").layers[0]  # a layer inside the nested model
    matrix, _, _ = rep.similarity_matrix(
        model_a, model_b, x, layers_a=["a1"], layers_b=[inner], batch_size=8
    )
    acts_a = kx.activations(model_a, "a1", x).astype(np.float64)
    acts_b = kx.activations(model_b, inner, x).astype(np.float64)
    # 23 // 8 = 2 minibatches of 12 and 11 samples: HSIC per minibatch (its own
    # n (n - 3) normalization), averaged, then the ratio
    terms = []
    for part in np.array_split(np.arange(23), 2):
        n = len(part)
        k = helpers.u_centered(acts_a[part] @ acts_a[part].T)
        m = helpers.u_centered(acts_b[part] @ acts_b[part].T)
        terms.append([np.sum(t) / (n * (n - 3)) for t in (k * m, k * k, m * m)])
    cross, self_a, self_b = np.mean(terms, axis=0)
    np.testing.assert_allclose(matrix[0, 0], cross / np.sqrt(self_a * self_b), rtol=1e-10)
    one_batch = rep.cka(acts_a, acts_b, debiased=True)
    assert abs(matrix[0, 0] - one_batch) > 1e-4  # minibatching changes the estimate


def test_similarity_matrix_svcca_and_pwcca_measures():
    model_a, _ = two_models()
    x = helpers.data((6,), batch=40)
    matrix, _, _ = rep.similarity_matrix(model_a, model_a, x, measure="pwcca")
    acts = [kx.activations(model_a, name, x) for name in ("a1", "a2")]
    expected = [[rep.pwcca(p, q) for q in acts] for p in acts]
    np.testing.assert_allclose(matrix, expected, rtol=1e-12)
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-8)


def test_dead_layer_gives_nan_with_a_warning_never_a_negative_root():
    helpers.seeded(0)
    inputs = keras.Input((6,))
    dead = keras.layers.Dense(4, kernel_initializer="zeros", name="dead")(inputs)
    live = keras.layers.Dense(3, name="live")(inputs)
    model = keras.Model(inputs, [dead, live])
    x = helpers.data((6,), batch=20)
    with pytest.warns(RuntimeWarning, match="layer 'dead' has the same activations"):
        matrix, names, _ = rep.similarity_matrix(
            model, model, x, layers_a=["dead", "live"], layers_b=["dead", "live"], batch_size=10
        )
    assert names == ["dead", "live"]
    assert np.isnan(matrix[0]).all() and np.isnan(matrix[:, 0]).all()
    assert matrix[1, 1] == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(ValueError, match=r"cka: a has no variance across samples"):
        rep.cka(np.ones((10, 3)), x[:10], debiased=True)


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


# -- embeddings and pictures ---------------------------------------------------------------
def test_pca_embedding_is_the_top_principal_components():
    x = np.random.default_rng(0).normal(size=(30, 6)) * [5, 3, 1, 1, 1, 1]
    points = rep.embed(x, dims=2)
    u, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    expected = u[:, :2] * s[:2]
    assert points.dtype == np.float32
    # each component is defined up to its sign
    np.testing.assert_allclose(np.abs(points), np.abs(expected), rtol=1e-4, atol=1e-4)


def test_tsne_embedding_is_reproducible_and_separates_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) + 8.0])
    points = rep.embed(x, method="tsne", seed=3)
    np.testing.assert_array_equal(points, rep.embed(x, method="tsne", seed=3))
    centres = points[:20].mean(axis=0), points[20:].mean(axis=0)
    spread = max(points[:20].std(), points[20:].std())
    assert np.linalg.norm(centres[0] - centres[1]) > 3 * spread


def test_plots_return_figures():
    from matplotlib.figure import Figure

    figure = rep.plot_similarity(np.eye(2), ["a", "b"], ["c", "d"], title="t")
    assert isinstance(figure, Figure)
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["a", "b"]
    figure = rep.plot_embedding(np.zeros((6, 2)), np.array(["x", "y", "z"] * 2))
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["x", "y", "z"]


# -- TensorBoard projector -----------------------------------------------------------------
def read_config(log_dir):
    config = projector.ProjectorConfig()
    with open(os.path.join(log_dir, "projector_config.pbtxt")) as handle:
        text_format.Parse(handle.read(), config)
    return config


def test_projector_files_parse(tmp_path):
    values = np.random.default_rng(0).normal(size=(10, 2, 3))
    images = np.random.default_rng(1).random((10, 5, 4, 3))
    rep.write_projector(tmp_path, values, ["cat\tdog", *map(str, range(9))], images, name="h")
    (embedding,) = read_config(tmp_path).embeddings
    assert embedding.tensor_name == "h" and list(embedding.tensor_shape) == [10, 6]
    table = np.loadtxt(tmp_path / embedding.tensor_path, delimiter="\t")
    np.testing.assert_allclose(table, values.reshape(10, 6).astype(np.float32), rtol=1e-6)
    labels = (tmp_path / embedding.metadata_path).read_text().splitlines()
    assert labels == ["cat dog", *map(str, range(9))]  # one column: no header
    sprite = tf.io.decode_png(tf.io.read_file(str(tmp_path / embedding.sprite.image_path)))
    assert tuple(sprite.shape) == (4 * 5, 4 * 4, 3)  # ceil(sqrt(10)) = 4 cells a side
    assert list(embedding.sprite.single_image_dim) == [4, 5]  # width, height
    # the first thumbnail is the first image, min-max scaled
    first = images[0]
    expected = np.round((first - first.min()) / (first.max() - first.min()) * 255)
    np.testing.assert_allclose(sprite.numpy()[:5, :4], expected, atol=1)
    assert sprite.numpy()[-5:, -4:].max() == 0  # cells past the last image stay black


def test_projector_keeps_other_embeddings_and_writes_metadata_columns(tmp_path):
    rep.write_projector(tmp_path, np.ones((3, 2)), name="first")
    columns = {"label": [0, 1, 2], "kind": ["a", "b", "c"]}
    rep.write_projector(tmp_path, np.ones((3, 2)), columns, name="b")
    rep.write_projector(tmp_path, np.zeros((3, 2)), name="first")  # replaced, not doubled
    config = read_config(tmp_path)
    assert [item.tensor_name for item in config.embeddings] == ["b", "first"]
    lines = (tmp_path / "b_metadata.tsv").read_text().splitlines()
    assert lines == ["label\tkind", "0\ta", "1\tb", "2\tc"]
    with pytest.raises(ValueError, match=r"metadata 'label' must have one value per point \(3\)"):
        rep.write_projector(tmp_path, np.ones((3, 2)), [1, 2])
    with pytest.raises(ValueError, match=r"images must be \(3, height, width"):
        rep.write_projector(tmp_path, np.ones((3, 2)), images=np.ones((2, 4, 4)))

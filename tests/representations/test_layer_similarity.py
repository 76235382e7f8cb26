"""Every layer of one model against every layer of another: minibatch CKA, SVCCA, PWCCA."""

import helpers
import keras
import numpy as np
import pytest
from helpers import two_models

import keras_explain as kx
from keras_explain import representations as rep


# -- minibatch CKA between the layers of two models ------------------------------------
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
            # the kernel matrices are float32 products (on the device), the HSIC sums
            # float64: the float64 reference within 1e-6
            np.testing.assert_allclose(
                matrix[i, j], helpers.cka_reference(acts_a, acts_b, True), rtol=1e-6
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
    # 23 // 8 = 2 minibatches of 12 and 11 samples
    np.testing.assert_allclose(matrix[0, 0], minibatch_cka(acts_a, acts_b, 2), rtol=1e-6)


def minibatch_cka(acts_a, acts_b, parts):
    """HSIC per minibatch (U-centred float64 kernels, its own n (n - 3)), averaged, the ratio."""
    terms = []
    for part in np.array_split(np.arange(len(acts_a)), parts):
        n = len(part)
        k = helpers.u_centered(acts_a[part] @ acts_a[part].T)
        m = helpers.u_centered(acts_b[part] @ acts_b[part].T)
        terms.append([np.sum(t) / (n * (n - 3)) for t in (k * m, k * k, m * m)])
    cross, self_a, self_b = np.mean(terms, axis=0)
    return cross / np.sqrt(self_a * self_b)


def test_minibatch_cka_stays_accurate_when_activations_share_a_large_mean():
    # a ReLU layer whose units all sit near 1000: uncentred float32 products would lose
    # the samples' differences (the kernel entries ~1e6 * features, differences ~1);
    # centring each minibatch's features first is exact for the unbiased HSIC
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    wide = keras.layers.Dense(300, activation="relu", bias_initializer="ones", name="wide")
    shifted = keras.layers.Rescaling(1.0, offset=1000.0, name="shifted")(wide(inputs))
    narrow = keras.layers.Dense(5, name="narrow")(inputs)
    model = keras.Model(inputs, [shifted, narrow])
    x = helpers.data((6,), batch=64)
    matrix, _, _ = rep.similarity_matrix(
        model, model, x, layers_a=["shifted"], layers_b=["narrow"], batch_size=32
    )
    acts_a = kx.activations(model, "shifted", x).astype(np.float64)
    acts_b = kx.activations(model, "narrow", x).astype(np.float64)
    expected = minibatch_cka(acts_a, acts_b, 2)
    assert 0.05 < expected < 0.95
    np.testing.assert_allclose(matrix[0, 0], expected, rtol=1e-5)
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

"""Feature ablation and permutation (Captum's definitions): closed forms, hand loops, refusals.

Ablation of group g gives each of its features ``f_t(x) - f_t(x with g at the
baseline)``; on a linear logit that is ``sum_{i in g} w_i (x_i - b_i)``. Permutation
replaces group g by its values in sample ``π_g(i)``; with 2 samples the only
permutation that is not the identity is the swap, so the expected values do not
depend on the random draws. The references below are loops written from those
definitions; they never call keras_explain.
"""

import random

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

BLOCKS = np.kron(np.arange(9).reshape(3, 3), np.ones((2, 2), int))  # 2x2 blocks of 6x6


def linear_model(shape, seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(3)], name="linear"
    )
    return helpers.randomize(model, seed)


def ablation_reference(f, x, mask, baseline):
    """``f(x) - f(x with group g at the baseline)`` for each feature of group g, by loops."""
    mask = np.broadcast_to(mask, x.shape)
    baseline = np.broadcast_to(baseline, x.shape)
    clean = f(x)
    result = np.zeros(x.shape)
    for group in np.unique(mask):
        chosen = mask == group
        ablated = np.where(chosen, baseline, x)
        drop = clean - f(ablated)
        for row in range(len(x)):
            result[row][chosen[row]] = drop[row]
    return result


def permutation_reference(f, x, mask, orders):
    """Group g of sample i takes the values of sample ``orders[g][i]``; loops over groups."""
    mask = np.broadcast_to(mask, x.shape)
    clean = f(x)
    result = np.zeros(x.shape)
    for group, order in zip(np.unique(mask), orders):
        chosen = mask == group
        permuted = np.where(chosen, x[list(order)], x)
        drop = clean - f(permuted)
        for row in range(len(x)):
            result[row][chosen[row]] = drop[row]
    return result


def scorer(model, target):
    def f(batch):
        return model(batch.astype("float32")).numpy()[np.arange(len(batch)), target]

    return f


# -- feature ablation ----------------------------------------------------------------------
IRREGULAR = np.random.default_rng(3).integers(0, 5, size=(6, 6, 2))  # groups across channels


@pytest.mark.parametrize(
    "mask",
    [None, BLOCKS, BLOCKS[..., None], BLOCKS[None, ..., None], IRREGULAR],
    ids=["every_scalar", "blocks_spatial", "blocks_hw1", "blocks_captum_1hw1", "irregular"],
)
def test_ablation_of_a_linear_logit_is_the_group_sum_of_weight_times_difference(mask):
    model = linear_model((6, 6, 2))
    x = helpers.data((6, 6, 2), seed=1, batch=3)
    baseline = np.random.default_rng(2).normal(size=(6, 6, 2)).astype("float32")
    weights = model.layers[-1].kernel.numpy()[:, 2].reshape(6, 6, 2).astype(np.float64)
    terms = weights * (x - baseline)  # (B, 6, 6, 2)
    labels = np.arange(72).reshape(6, 6, 2) if mask is None else np.asarray(mask)
    labels = np.broadcast_to(labels[..., None] if labels.shape == (6, 6) else labels, (3, 6, 6, 2))
    expected = np.zeros_like(terms)
    for group in np.unique(labels):
        chosen = labels == group
        sums = (terms * chosen).sum(axis=(1, 2, 3))
        expected += chosen * sums[:, None, None, None]
    result = kx.FeatureAblation(model, feature_mask=mask, baseline=baseline).analyze(x, 2)
    assert result.shape == x.shape and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_ablation_of_a_conv_net_matches_the_hand_loop_and_the_callable_path():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=2, batch=3)
    target = np.array([0, 3, 1])
    mask = np.random.default_rng(4).integers(10, 17, size=(8, 8, 1))  # irregular, span channels
    expected = ablation_reference(scorer(model, target), x, mask, 0.25)
    analyzer = kx.create_analyzer("feature_ablation", model, feature_mask=mask, baseline=0.25)
    result = analyzer.analyze(x, target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    eager = kx.FeatureAblation(
        lambda z: model(z).numpy(), feature_mask=mask, baseline=0.25, internal_batch_size=5
    ).analyze(x, target)
    np.testing.assert_allclose(eager, result, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(analyzer.analyze(x, target, batch_size=2), result, atol=1e-6)


@pytest.mark.parametrize("shape", [(7,), (5, 3)], ids=["tabular", "sequence"])
def test_ablation_on_tabular_rows_and_sequences_matches_the_hand_loop(shape):
    model = helpers.one_axis_model(shape)
    x = helpers.data(shape, seed=5, batch=4)
    target = np.array([2, 0, 1, 1])
    groups = np.array([0, 0, 3, 1, 1, 1, 2])[: shape[0]]  # columns 0-1, 2, 3-5, 6
    baseline = np.linspace(-1, 1, np.prod(shape)).reshape(shape).astype("float32")
    f = scorer(model, target)
    for mask in (None, groups):
        reference_mask = np.arange(np.prod(shape)).reshape(shape) if mask is None else mask
        if len(shape) == 2 and mask is not None:
            reference_mask = mask[:, None]  # (L,): the spatial part, groups span channels
        expected = ablation_reference(f, x, reference_mask, baseline)
        result = kx.FeatureAblation(model, feature_mask=mask, baseline=baseline).analyze(x, target)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    per_sample = np.random.default_rng(6).normal(size=x.shape).astype("float32")
    expected = ablation_reference(f, x, reference_mask, per_sample)
    result = kx.FeatureAblation(model, feature_mask=mask, baseline=per_sample).analyze(x, target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_ablation_with_a_mask_per_sample_matches_the_hand_loop():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=6, batch=3)
    masks = np.random.default_rng(7).integers(0, 6, size=(3, 8, 8, 1))
    expected = ablation_reference(scorer(model, 1), x, masks, 0.0)
    result = kx.FeatureAblation(model, feature_mask=masks).analyze(x, 1)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"one mask per sample .* needs the whole batch in one"):
        kx.FeatureAblation(model, feature_mask=masks).analyze(x, 1, batch_size=2)
    with pytest.raises(ValueError, match=r"shaped like the batch \(2, 8, 8, 2\)"):
        kx.FeatureAblation(model, feature_mask=masks).analyze(x[:2], 1)


@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_ablation_of_window_blocks_equals_occlusion_with_stride_equal_to_window(baseline):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=8, batch=2)
    blocks = np.kron(np.arange(16).reshape(4, 4), np.ones((2, 2), int))
    ablation = kx.FeatureAblation(model, feature_mask=blocks, baseline=baseline).analyze(x, 3)
    occlusion = kx.Occlusion(model, window=2, stride=2, baseline=baseline).analyze(x, 3)
    np.testing.assert_allclose(ablation, occlusion, rtol=1e-6, atol=1e-6)


def test_ablation_of_token_ids_beside_a_padding_mask_holds_the_mask():
    tokens_in = keras.Input((5,), dtype="int32", name="token_ids")
    mask_in = keras.Input((5,), dtype="int32", name="padding_mask")
    embedded = keras.layers.Embedding(9, 3)(tokens_in)
    kept = embedded * keras.ops.cast(mask_in, "float32")[..., None]
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(kept))
    helpers.seeded(0)
    model = keras.Model([tokens_in, mask_in], outputs)
    tokens = np.array([[1, 4, 2, 8, 3], [5, 5, 6, 7, 1]], "int32")
    padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")

    def f(batch):
        rows = np.asarray(batch, "int32")
        repeated = np.tile(padding, (len(rows) // len(padding), 1))
        return model([rows, repeated]).numpy()[:, 1]

    expected = ablation_reference(f, tokens, np.arange(5), 0)
    result = kx.FeatureAblation(model).analyze({"token_ids": tokens, "padding_mask": padding}, 1)
    np.testing.assert_allclose(result["token_ids"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(result["padding_mask"], 0.0)
    np.testing.assert_array_equal(result["token_ids"][1, 3:], 0.0)  # padding changes nothing


# -- feature permutation -------------------------------------------------------------------
@pytest.mark.parametrize("mask", [None, np.array([0, 1, 1, 2, 2, 2])], ids=["scalars", "groups"])
def test_permutation_of_two_samples_is_the_swap_whatever_the_seed(mask):
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=9, batch=2)
    groups = np.arange(6) if mask is None else mask
    swaps = [[1, 0]] * len(np.unique(groups))
    expected = permutation_reference(scorer(model, 0), x, groups, swaps)
    for seed in (0, 1, None):
        result = kx.FeaturePermutation(model, feature_mask=mask, seed=seed).analyze(x, 0)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    eager = kx.FeaturePermutation(lambda z: model(z).numpy(), feature_mask=mask, seed=2)
    np.testing.assert_allclose(eager.analyze(x, 0), expected, rtol=1e-4, atol=1e-5)


def test_permutation_reproduces_its_drawn_permutations_and_the_seed_fixes_them():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=10, batch=5)
    mask = np.random.default_rng(11).integers(0, 7, size=(8, 8))
    analyzer = kx.FeaturePermutation(model, feature_mask=mask, seed=3)
    orders = analyzer.permutations(7, 5, [3, 0]).numpy()
    identity = list(range(5))
    assert all(sorted(order) == identity and list(order) != identity for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # one permutation per group
    expected = permutation_reference(scorer(model, 2), x, mask[..., None], orders)
    result = analyzer.analyze(x, 2)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(
        result, kx.FeaturePermutation(model, feature_mask=mask, seed=3).analyze(x, 2)
    )
    other = kx.FeaturePermutation(model, feature_mask=mask, seed=4).analyze(x, 2)
    assert not np.allclose(other, result)
    # the second batch of a split call draws from its first row: permutations of its own
    halves = analyzer.analyze(x, 2, batch_size=3)
    second = analyzer.permutations(7, 2, [3, 3]).numpy()
    tail = permutation_reference(scorer(model, 2), x[3:], mask[..., None], second)
    np.testing.assert_allclose(halves[3:], tail, rtol=1e-4, atol=1e-5)


def test_permutations_are_uniform_over_those_that_move_a_sample():
    analyzer = kx.FeaturePermutation(helpers.dense_sequential())
    orders = analyzer.permutations(600, 3, [5, 0]).numpy()
    counts = {}
    for order in map(tuple, orders):
        counts[order] = counts.get(order, 0) + 1
    assert (0, 1, 2) not in counts and len(counts) == 5
    # each of the 5 has probability 1/5: 120 expected, standard deviation sqrt(600 * 0.16) ≈ 9.8
    assert all(abs(count - 120) < 4 * 9.8 for count in counts.values()), counts


def test_permutation_with_a_mask_per_sample_and_no_global_random_state():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=12, batch=4)
    masks = np.random.default_rng(13).integers(0, 3, size=(4, 6))
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()
    analyzer = kx.FeaturePermutation(model, feature_mask=masks, seed=1)
    result = analyzer.analyze(x, 1)
    kx.FeaturePermutation(model).analyze(x, 1)  # a fresh seed, from the library's generator
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state
    orders = analyzer.permutations(3, 4, [1, 0]).numpy()
    expected = permutation_reference(scorer(model, 1), x, masks, orders)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


# -- refusals --------------------------------------------------------------------------------
def test_permutation_refuses_a_batch_of_one_sample():
    model = helpers.dense_sequential()
    message = r"FeaturePermutation permutes .* a batch of 1 sample has nothing to permute with"
    with pytest.raises(ValueError, match=message + r".* Received: a batch of shape \(1, 6\)"):
        kx.FeaturePermutation(model).analyze(helpers.data((6,), batch=1))
    with pytest.raises(ValueError, match=message):  # the last batch of a split call
        kx.FeaturePermutation(model).analyze(helpers.data((6,), batch=3), batch_size=2)


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.ones((8, 8), "float32"), r"FeatureAblation: feature_mask must hold int group labels"),
        (np.zeros((7, 8), int), r"broadcastable to one sample \(8, 8, 2\) .* \(8, 8, 1\) .* "),
        (np.zeros((8, 8, 3), int), r"Received: feature_mask of shape \(8, 8, 3\)"),
    ],
)
def test_bad_feature_masks_are_refused_when_the_analyzer_is_built(mask, message):
    with pytest.raises(ValueError, match=message):
        kx.FeatureAblation(helpers.conv_sequential(), feature_mask=mask)


def test_the_registry_names_and_their_parameters():
    from keras_explain.analyzers import registry

    assert registry.analyzer_class("feature_ablation")[0] is kx.FeatureAblation
    assert registry.analyzer_class("feature_permutation")[0] is kx.FeaturePermutation
    assert "baseline" in registry.parameters("feature_ablation")
    assert "baseline" not in registry.parameters("feature_permutation")
    with pytest.raises(TypeError, match="baseline"):
        kx.FeaturePermutation(helpers.dense_sequential(), baseline=1.0)

"""Top-k intersection, attribution localisation, localisation AUC and Focus, by hand.

References are written from the papers' definitions, one sample and one pixel at a
time; the conventions were checked against Quantus 0.6.0 on the same arrays
(agreement to float32 rounding where the options match, see the comments).
"""

import helpers
import numpy as np
import pytest

import keras_explain as kx


def random_maps_and_masks(batch=6, size=12, seed=0):
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(batch, size, size))
    masks = rng.random((batch, size, size)) < rng.uniform(0.1, 0.5, (batch, 1, 1))
    return maps, masks


# =====================================================================================
# Top-k intersection (Theiner et al. 2021)
# =====================================================================================
def top_k_reference(maps, masks, k, concept_influence=False):
    """|top_k(R) & M| / k, the k highest values first, ties in row-major order."""
    values = []
    for value, mask in zip(maps, masks):
        flat, inside = value.ravel(), mask.ravel()
        k_clipped = min(k, flat.size)
        order = sorted(range(flat.size), key=lambda i: (-flat[i], i))[:k_clipped]
        share = sum(bool(inside[i]) for i in order) / k_clipped
        if concept_influence:
            share = share * flat.size / inside.sum() if inside.sum() else 0.0
        values.append(share)
    return np.array(values)


@pytest.mark.parametrize("k", [1, 7, 50, 144, 1000])
@pytest.mark.parametrize("concept_influence", [False, True])
def test_top_k_intersection_matches_the_definition(k, concept_influence):
    maps, masks = random_maps_and_masks()
    maps[0, :3] = 1.0  # ties: the row-major order decides
    got = kx.metrics.top_k_intersection(maps, masks, k=k, concept_influence=concept_influence)
    np.testing.assert_allclose(got, top_k_reference(maps, masks, k, concept_influence), rtol=1e-6)


def test_top_k_intersection_closed_forms():
    maps, masks = random_maps_and_masks()
    # with k = |M| it is relevance rank accuracy (one k per sample: one sample at a time)
    for value, mask in zip(maps, masks):
        top = kx.metrics.top_k_intersection(value[None], mask[None], k=int(mask.sum()))
        np.testing.assert_array_equal(top, kx.metrics.relevance_rank(value[None], mask[None]))
    # the mask's indicator: all k <= |M| highest pixels are inside
    smallest = int(masks.sum(axis=(1, 2)).min())
    hits = kx.metrics.top_k_intersection(masks * 1.0, masks, k=smallest)
    np.testing.assert_array_equal(hits, np.ones(len(masks)))
    # the default k = 1000 is clipped to the 144 pixels: the mask's share of the image
    np.testing.assert_allclose(
        kx.metrics.top_k_intersection(maps, masks), masks.mean(axis=(1, 2)), rtol=1e-6
    )
    # channels are summed; an empty mask scores 0
    images = np.stack([maps / 2, maps / 2], axis=-1)
    np.testing.assert_allclose(
        kx.metrics.top_k_intersection(images, masks, k=10),
        kx.metrics.top_k_intersection(maps, masks, k=10),
        rtol=1e-6,
    )
    empty = np.zeros_like(masks)
    np.testing.assert_array_equal(
        kx.metrics.top_k_intersection(maps, empty, k=10, concept_influence=True), 0.0
    )


def test_top_k_intersection_of_random_maps_is_the_masks_share():
    """A random map's top k fall in the mask in proportion to its size: concept influence ~ 1."""
    maps, masks = random_maps_and_masks(batch=400, size=16, seed=1)
    influence = kx.metrics.top_k_intersection(maps, masks, k=64, concept_influence=True)
    assert abs(influence.mean() - 1.0) < 0.05


# =====================================================================================
# Attribution localisation (Kohlbrenner et al. 2020)
# =====================================================================================
def attribution_localisation_reference(maps, masks, weighted):
    """mu = R_in / R_tot of the positive relevance; mu_w = mu * S_tot / S_in."""
    values = []
    for value, mask in zip(maps, masks):
        inside = total = 0.0
        for relevance, in_mask in zip(value.ravel(), mask.ravel()):
            if relevance > 0:
                total += relevance
                inside += relevance if in_mask else 0.0
        mu = inside / total if total > 0 else 0.0
        if weighted:
            mu = mu * mask.size / mask.sum() if mask.sum() else np.nan
        values.append(mu)
    return np.array(values)


@pytest.mark.parametrize("weighted", [False, True])
def test_attribution_localisation_matches_the_definition(weighted):
    maps, masks = random_maps_and_masks()
    masks[1] = False  # empty: 0.0, or NaN when weighted
    got = kx.metrics.attribution_localisation(maps, masks, weighted=weighted)
    want = attribution_localisation_reference(maps, masks, weighted)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_attribution_localisation_is_relevance_mass_and_uniform_maps_weigh_one():
    maps, masks = random_maps_and_masks()
    np.testing.assert_array_equal(
        kx.metrics.attribution_localisation(maps, masks), kx.metrics.relevance_mass(maps, masks)
    )
    # a uniform map puts the mask's share of the image inside: weighted, 1.0 whatever the size
    uniform = np.ones_like(maps)
    np.testing.assert_allclose(
        kx.metrics.attribution_localisation(uniform, masks, weighted=True), 1.0, rtol=1e-6
    )
    # all the positive relevance in the mask: 1, or the inverse of the mask's share
    inside = np.where(masks, 1.0, -1.0)
    np.testing.assert_allclose(
        kx.metrics.attribution_localisation(inside, masks, weighted=True),
        1 / masks.mean(axis=(1, 2)),
        rtol=1e-6,
    )
    # the sign matters, unlike Quantus' default abs=True: negative relevance is ignored
    flipped = np.where(masks, maps, -np.abs(maps) * 100)
    np.testing.assert_array_equal(
        kx.metrics.attribution_localisation(flipped, masks),
        kx.metrics.attribution_localisation(np.where(masks, maps, 0.0), masks),
    )


# =====================================================================================
# Localisation AUC (Fawcett 2006)
# =====================================================================================
def auc_reference(maps, masks):
    """P(a_in > a_out) + P(a_in = a_out) / 2 over all pairs (Mann-Whitney); NaN for one class."""
    values = []
    for value, mask in zip(maps, masks):
        inside, outside = value[mask], value[~mask]
        if not len(inside) or not len(outside):
            values.append(np.nan)
            continue
        wins = sum((a > b) + 0.5 * (a == b) for a in inside for b in outside)
        values.append(wins / (len(inside) * len(outside)))
    return np.array(values)


def test_localisation_auc_matches_the_pairwise_definition():
    maps, masks = random_maps_and_masks(size=8)
    maps[2] = np.round(maps[2])  # ties count one half
    masks[3], masks[4] = False, True  # no ROC curve: NaN
    got = kx.metrics.localisation_auc(maps, masks)
    np.testing.assert_allclose(got, auc_reference(maps, masks), rtol=1e-6)
    assert np.isnan(got[3]) and np.isnan(got[4])


def test_localisation_auc_closed_forms_and_random_maps():
    maps, masks = random_maps_and_masks()
    np.testing.assert_array_equal(kx.metrics.localisation_auc(masks * 2.0, masks), 1.0)
    np.testing.assert_array_equal(kx.metrics.localisation_auc(-(masks * 2.0), masks), 0.0)
    np.testing.assert_array_equal(kx.metrics.localisation_auc(np.ones_like(maps), masks), 0.5)
    images = np.stack([maps, 2 * maps], axis=-1)  # channels summed: 3 * maps, same ranking
    np.testing.assert_allclose(
        kx.metrics.localisation_auc(images, masks),
        kx.metrics.localisation_auc(maps, masks),
        rtol=1e-6,
    )
    random, masks = random_maps_and_masks(batch=300, size=16, seed=2)
    assert abs(kx.metrics.localisation_auc(random, masks).mean() - 0.5) < 0.02


# =====================================================================================
# Focus (Arias-Duart et al. 2022)
# =====================================================================================
def focus_reference(maps, layouts):
    """Positive relevance on the target tiles over all positive relevance, tile by tile."""
    values = []
    for value, layout in zip(maps, layouts):
        height, width = value.shape
        rows = [slice(0, height // 2), slice(height // 2, height)]
        columns = [slice(0, width // 2), slice(width // 2, width)]
        on_target = total = 0.0
        for i in range(2):
            for j in range(2):
                tile = np.maximum(value[rows[i], columns[j]], 0).sum()
                total += tile
                on_target += tile if layout[i, j] else 0.0
        values.append(on_target / total if total > 0 else 0.0)
    return np.array(values)


def test_focus_matches_the_definition_and_closed_forms():
    rng = np.random.default_rng(3)
    layouts = np.array([[[1, 1], [0, 0]], [[0, 1], [1, 0]], [[1, 0], [0, 1]]], bool)
    for shape in [(3, 8, 8), (3, 9, 7)]:  # odd sizes: the lower and right tiles are larger
        maps = rng.normal(size=shape)
        got = kx.metrics.focus(maps, layouts)
        np.testing.assert_allclose(got, focus_reference(maps, layouts), rtol=1e-6)
    layout_maps = np.kron(layouts, np.ones((4, 4)))  # relevance exactly on the target tiles
    np.testing.assert_array_equal(kx.metrics.focus(layout_maps, layouts), 1.0)
    np.testing.assert_array_equal(kx.metrics.focus(1 - layout_maps, layouts), 0.0)
    np.testing.assert_allclose(kx.metrics.focus(np.ones((3, 8, 8)), layouts), 0.5, rtol=1e-6)
    # it is relevance mass against the target tiles' pixels
    maps = rng.normal(size=(3, 8, 8, 2))
    np.testing.assert_array_equal(
        kx.metrics.focus(maps, layouts),
        kx.metrics.relevance_mass(maps, np.kron(layouts, np.ones((4, 4), bool))),
    )


def test_focus_of_a_class_blind_map_is_one_half_on_shapes_mosaics():
    mosaics, labels, layouts = kx.datasets.shapes_mosaics(200, size=16, seed=4)
    rng = np.random.default_rng(5)
    blind = rng.random(mosaics.shape)  # random relevance, blind to the tiles
    assert abs(kx.metrics.focus(blind, layouts).mean() - 0.5) < 0.02


# =====================================================================================
# Input validation
# =====================================================================================
def test_new_localisation_metrics_reject_bad_arguments():
    maps, masks = random_maps_and_masks(batch=2, size=4)
    with pytest.raises(ValueError, match=r"top_k_intersection: k must be a positive int"):
        kx.metrics.top_k_intersection(maps, masks, k=0)
    with pytest.raises(TypeError, match=r"top_k_intersection: concept_influence must be True"):
        kx.metrics.top_k_intersection(maps, masks, concept_influence=1)
    with pytest.raises(TypeError, match=r"attribution_localisation: weighted must be True"):
        kx.metrics.attribution_localisation(maps, masks, weighted="yes")
    with pytest.raises(ValueError, match=r"localisation_auc: masks must have shape \(2, 4, 4\)"):
        kx.metrics.localisation_auc(maps, masks[:, :2])
    with pytest.raises(ValueError, match=r"attribution_localisation: attributions must be image"):
        kx.metrics.attribution_localisation(maps[:, 0], masks)
    with pytest.raises(ValueError, match=r"focus: layouts must have shape \(2, 2, 2\).*\(2, 4\)"):
        kx.metrics.focus(maps, np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"focus: attributions must be images"):
        kx.metrics.focus(maps[:, 0], np.ones((2, 2, 2), bool))


# =====================================================================================
# The registered columns are the functions
# =====================================================================================
def test_registered_columns_are_the_functions():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=4)
    _, masks = random_maps_and_masks(batch=4, size=8, seed=6)
    names = ["top_k_intersection", "attribution_localisation", "localisation_auc"]
    for name in names:
        metric = kx.metrics.registry.get_metric(name)
        assert (metric.better, metric.needs_masks, metric.default) == ("higher", True, False)
        assert name not in kx.metrics.registry.default_metrics(masks=True)
    (row,) = kx.metrics.evaluate({"gradient": {}}, model, x, masks=masks, metrics=names, verbose=0)
    relevance = kx.Gradient(model).analyze(x)
    direct = {
        "top_k_intersection": kx.metrics.top_k_intersection(relevance, masks),
        "attribution_localisation": kx.metrics.attribution_localisation(
            relevance, masks, weighted=True
        ),
        "localisation_auc": kx.metrics.localisation_auc(relevance, masks),
    }
    for name, values in direct.items():
        assert row[name] == pytest.approx(float(np.nanmean(values)), rel=1e-6), name

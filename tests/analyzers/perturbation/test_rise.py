"""RISE: the reference with the same masks, localisation, and the masks tested as sampling.

The masks a model receives are recovered and each is shown to be a bilinearly
upsampled binary grid cropped at a shift of less than one cell; the share of kept
cells and the shifts match their distributions within bounds from the mask count,
and a constant model's saliency is within its standard error of the constant.
"""

import helpers
import keras
import numpy as np
import pytest
from helpers import K_SIGMA, one_axis_model, patch_model

import keras_explain as kx


def test_rise_does_not_depend_on_batch_size(conv_model):
    x = helpers.data((8, 8, 2), batch=5)
    analyzer = kx.RISE(conv_model, samples=32, cells=4, seed=3)
    np.testing.assert_allclose(
        analyzer.analyze(x, batch_size=2), analyzer.analyze(x), rtol=1e-5, atol=1e-6
    )


def test_rise_constant_model_and_linearity():
    x = helpers.data((8, 8, 1), seed=9, batch=2)
    constant = kx.RISE(lambda z: np.full((len(z), 2), 3.0), samples=800, cells=4, seed=0)
    np.testing.assert_allclose(constant.analyze(x, target=0), 3.0, atol=0.25)
    # For a fixed mask set the saliency is linear in the score: with the masks of
    # a constant score c, saliency(c) = c * mean(M) / p, so f = 2c doubles it.
    one = kx.RISE(lambda z: np.ones((len(z), 1)), samples=50, cells=3, seed=4).analyze(x)
    two = kx.RISE(lambda z: 2 * np.ones((len(z), 1)), samples=50, cells=3, seed=4).analyze(x)
    np.testing.assert_allclose(two, 2 * one, rtol=1e-6)


def test_rise_matches_reference_with_the_same_masks():
    # Record the masked copies that a plain callable receives (baseline 0, so a
    # copy is M_i * x), recover the masks, and apply the paper's formula.
    model = helpers.conv_sequential(seed=1)
    x2 = np.abs(helpers.data((8, 8, 2), seed=10, batch=2)) + 0.5
    analyzer = kx.RISE(model, samples=30, cells=3, probability=0.4, seed=5)
    result = analyzer.analyze(x2, target=2)
    recorded = []

    def recorder(z):
        recorded.append(np.asarray(z))
        return model(z).numpy()

    kx.RISE(recorder, samples=30, cells=3, probability=0.4, seed=5).analyze(x2, target=2)
    copies = np.concatenate(recorded)[-60:]  # before: output size and clean target
    masks = copies[0::2, :, :, 0] / x2[0, :, :, 0]  # copies alternate sample 0, 1

    def f(batch):
        return model(batch).numpy()[:, 2]

    expected = helpers.rise_reference(f, x2, masks, 0.4)
    np.testing.assert_allclose(result[..., 0], expected, rtol=1e-3, atol=1e-4)


def localisation(saliency, patch):
    """Fraction of the above-mean saliency mass that lies on the patch."""
    excess = np.maximum(saliency - saliency.mean(), 0)
    return float(excess[patch].sum() / excess.sum())


def test_rise_localises_the_patch():
    model, images, patch = patch_model()
    result = kx.RISE(model, samples=1000, cells=8, seed=0).analyze(images)[..., 0]
    fractions = [localisation(r, patch) for r in result]
    print(f"RISE above-mean mass on the patch: {fractions} (patch area {patch.mean():.3f})")
    assert min(fractions) > 0.6


def test_one_input_only_and_rise_parameter_errors():
    with pytest.raises(
        ValueError,
        match=r"Occlusion explains models with one feature input; model 'multi_input' has "
        r"inputs \['first', 'second'\], of which \['first', 'second'\] are features\. Name "
        r"the others in constant_inputs",
    ):
        kx.Occlusion(helpers.multi_input())
    model = helpers.conv_sequential()
    with pytest.raises(
        ValueError, match=r"probability must be in \(0, 1\]\. Received: probability=0\.0\."
    ):
        kx.RISE(model, probability=0.0)
    for name in ("samples", "cells"):
        with pytest.raises(
            ValueError, match=rf"{name} must be a positive int\. Received: {name}=0\."
        ):
            kx.RISE(model, **{name: 0})
    with pytest.raises(ValueError, match=r"RISE masks cover one or two spatial axes"):
        volume = keras.Sequential([keras.Input((4, 4, 4, 1)), keras.layers.Flatten()])
        kx.RISE(volume, samples=2).analyze(np.ones((1, 4, 4, 4, 1), "float32"))


@pytest.mark.parametrize("shape", [(12, 2), (12,)], ids=["sequence", "tabular"])
def test_rise_on_one_spatial_axis_matches_reference_with_the_same_masks(shape):
    model = one_axis_model(shape, seed=1)
    x = np.abs(helpers.data(shape, seed=13, batch=2)) + 0.5
    params = {"samples": 25, "cells": 4, "probability": 0.3, "seed": 2}
    result = kx.RISE(model, **params).analyze(x, target=1)
    recorded = []

    def recorder(z):
        recorded.append(np.asarray(z))
        return model(z).numpy()

    kx.RISE(recorder, **params).analyze(x, target=1)
    copies = np.concatenate(recorded)[-50:]  # 25 masks x 2 samples, sample-minor
    masks = copies[0::2] / x[0]  # baseline 0: a copy is M_i * x
    masks = masks[..., 0] if len(shape) == 2 else masks
    assert masks.shape == (25, 12) and masks.std(axis=1).max() > 0.1  # they vary along L

    def f(batch):
        return model(batch).numpy()[:, 1]

    expected = helpers.rise_reference(f, x, masks, 0.3)
    got = result[..., 0] if len(shape) == 2 else result
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    if len(shape) == 2:  # one mask spans all channels
        np.testing.assert_array_equal(result[..., 0], result[..., 1])


# -- RISE -----------------------------------------------------------------------------------
def bilinear_basis(cells, size, shift, length):
    """(length**2, cells**2): mask = basis @ grid for one crop shift (numpy, half-pixel)."""
    columns = []
    for index in range(cells * cells):
        grid = np.zeros((1, cells, cells))
        grid.flat[index] = 1.0
        up = helpers.resize_reference(grid, (size, size))[0]
        columns.append(up[shift[0] : shift[0] + length, shift[1] : shift[1] + length].ravel())
    return np.stack(columns, 1)


def recorded_rise_masks(samples, cells, probability, seed, length=8):
    """The masks RISE applies, recovered from what a callable model receives (x = 1)."""
    recorded = []

    def constant(z):
        recorded.append(np.asarray(z).copy())
        return np.full((len(z), 2), 3.0)

    x = np.ones((1, length, length, 1), "float32")
    saliency = kx.RISE(
        constant, samples=samples, cells=cells, probability=probability, seed=seed
    ).analyze(x, 0)
    masks = np.concatenate(recorded)[-samples:, :, :, 0]  # baseline 0, x = 1: copy = mask
    return masks, saliency[0, :, :, 0]


def test_rise_masks_are_shifted_upsampled_binary_grids_with_the_right_statistics():
    samples, cells, probability, length = 300, 3, 0.3, 8
    cell = -(-length // cells)  # 3: grids are upsampled to (cells + 1) * cell = 12
    masks, saliency = recorded_rise_masks(samples, cells, probability, seed=4, length=length)
    bases = {
        (dy, dx): bilinear_basis(cells, (cells + 1) * cell, (dy, dx), length)
        for dy in range(cell)
        for dx in range(cell)
    }
    grids, shifts = [], []
    for mask in masks:
        fits = []
        for shift, basis in bases.items():
            grid, *_ = np.linalg.lstsq(basis, mask.ravel(), rcond=None)
            binary = np.round(grid)
            if np.abs(basis @ binary - mask.ravel()).max() < 1e-5 and set(binary) <= {0, 1}:
                fits.append((shift, binary))
        assert fits, "a mask that is no shifted upsampled binary grid"
        grids.append(fits[0][1])
        if 0 < fits[0][1].sum() < cells * cells and len(fits) == 1:
            shifts.append(fits[0][0])
    grids = np.array(grids)
    # each cell is kept with probability p: binomial over samples * cells**2 cells
    kept = grids.mean()
    assert abs(kept - probability) < K_SIGMA * np.sqrt(probability * (1 - probability) / grids.size)
    # the crop shift is uniform over 0 .. cell - 1 on each axis
    shifts = np.array(shifts)
    assert len(shifts) > samples // 2
    for axis in range(2):
        counts = np.bincount(shifts[:, axis], minlength=cell)
        n = len(shifts)
        assert np.all(
            np.abs(counts - n / cell) < K_SIGMA * np.sqrt(n * (1 / cell) * (1 - 1 / cell))
        )
    # a constant score c gives saliency c * mean(M) / p: E[M(u)] = p and Var[M(u)] <= p(1-p),
    # so each pixel is within 4 standard errors of c
    np.testing.assert_allclose(saliency, 3.0 * masks.mean(0) / probability, rtol=1e-5)
    bound = K_SIGMA * 3.0 * np.sqrt(probability * (1 - probability) / samples) / probability
    assert np.abs(saliency - 3.0).max() < bound


def test_occlusion_of_one_input_with_the_other_held_constant():
    model = helpers.multi_input()
    rng = np.random.default_rng(0)
    first = rng.normal(size=(3, 6)).astype("float32")
    second = rng.normal(size=(3, 4)).astype("float32")
    result = kx.Occlusion(model, window=1, constant_inputs=["second"]).analyze(
        {"first": first, "second": second}, target=2
    )
    clean = model([first, second])[0].numpy()[:, 2]
    expected = np.zeros_like(first)
    for j in range(6):
        occluded = first.copy()
        occluded[:, j] = 0.0
        expected[:, j] = clean - model([occluded, second])[0].numpy()[:, 2]
    np.testing.assert_allclose(result["first"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result["second"], 0.0)

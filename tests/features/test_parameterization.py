"""Image parameterizations and transforms: Fourier (numpy's FFT, Lucid's colours), pixels."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_explain import features

# Lucid's published colour matrix (lucid/optvis/param/color.py), copied from the source text
LUCID_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def test_transforms_move_the_image_as_documented():
    image = np.random.default_rng(6).uniform(0, 1, (1, 9, 9, 2)).astype("float32")
    seed = tf.constant([0, 1])
    still = features.Transforms(jitter=0, fine_jitter=0, scales=(1.0,), angles=(0,))
    np.testing.assert_allclose(still(image, seed, 0.5), image, atol=1e-6)
    # a quarter turn about the centre of a square image is a permutation of its pixels
    turn = features.Transforms(jitter=0, fine_jitter=0, scales=(1.0,), angles=(90,))
    turned = turn(image, seed, 0.5).numpy()
    assert any(np.allclose(turned, np.rot90(image, k, axes=(1, 2)), atol=1e-5) for k in (1, 3))
    # a shift by (dy, dx) moves the content and brings in the fill value
    moved = features.Transforms(jitter=2, fine_jitter=0, scales=(1.0,), angles=(0,))
    out = moved(image, seed, -1.0).numpy()[0]
    shifts = [
        (dy, dx)
        for dy in range(-2, 3)
        for dx in range(-2, 3)
        if np.allclose(
            out[max(dy, 0) : 9 + min(dy, 0), max(dx, 0) : 9 + min(dx, 0)],
            image[0, max(-dy, 0) : 9 + min(-dy, 0), max(-dx, 0) : 9 + min(-dx, 0)],
            atol=1e-5,
        )
    ]
    assert len(shifts) == 1
    dy, dx = shifts[0]
    assert (dy, dx) != (0, 0) and np.all(out[: max(dy, 0)] == -1.0)


# =====================================================================================
# The Fourier parameterization
# =====================================================================================
@pytest.mark.parametrize(("height", "width", "channels"), [(8, 8, 3), (7, 10, 3), (9, 5, 1)])
def test_fourier_image_matches_the_formula_and_round_trips(height, width, channels):
    rng = np.random.default_rng(0)
    param = features.Fourier((2, height, width, channels), value_range=(-2.0, 3.0))
    params = rng.normal(size=(2, 2, channels, height, width // 2 + 1)).astype("float32")
    # Olah et al. 2017 / Lucid: spectrum * 1 / max(f, 1 / max(H, W)) * sqrt(H W), irfft,
    # / 4, colour mixing by Lucid's matrix normalized to a largest column norm of 1
    f = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None] ** 2)
    scale = np.sqrt(height * width) / np.maximum(f, 1 / max(height, width))
    spectrum = (params[0] + 1j * params[1]) * scale
    t = np.fft.irfft2(spectrum, s=(height, width)).transpose(0, 2, 3, 1) / 4
    if channels == 3:
        t = t @ (LUCID_SVD_SQRT / np.linalg.norm(LUCID_SVD_SQRT, axis=0).max()).T
    expected = -2.0 + 5.0 / (1 + np.exp(-t))
    image = param.image(tf.constant(params)).numpy()
    np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-5)
    # image -> spectrum -> image, to float32 rounding
    images = rng.uniform(-1.5, 2.5, (2, height, width, channels)).astype("float32")
    np.testing.assert_allclose(param.image(param.params(images)), images, atol=2e-5)


def test_pixel_parameterization_round_trips():
    param = features.Pixel((1, 4, 5, 2), value_range=(0.0, 255.0))
    images = np.random.default_rng(1).uniform(1, 254, (1, 4, 5, 2)).astype("float32")
    np.testing.assert_allclose(param.image(param.params(images)), images, rtol=1e-5)

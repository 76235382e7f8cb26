"""How an optimized image is represented, transformed and penalized.

- :class:`Pixel`: ``image = low + (high - low) * sigmoid(t)`` with ``t`` the
  parameters, one per pixel and channel.
- :class:`Fourier`: Olah et al. 2017 (Lucid): ``t`` is the inverse real FFT of
  a spectrum scaled by ``1 / max(f, 1 / max(H, W))`` (``f`` the frequency in
  cycles per pixel) times ``sqrt(H W)``, divided by 4; for 3 channels ``t`` is
  then multiplied by Lucid's colour decorrelation matrix (the square root of
  ImageNet's colour covariance, columns normalized to a largest norm of 1);
  other channel counts are left as they are. Both use the same sigmoid.
- :class:`Transforms`: Lucid's ``standard_transforms`` (pad, jitter, scale,
  rotate, jitter), one random affine resample per image and step.
- :func:`total_variation`, :func:`lp` (:func:`l1`, :func:`l2`) and :func:`norm`
  (tf-keras-vis' ``Norm``): penalties subtracted from each image's objective.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

#: Lucid's colour decorrelation: the square root of ImageNet's RGB covariance (by SVD).
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(
    np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)
)
#: Standard deviation of the random initial parameters (Lucid's ``sd``).
INITIAL_SD = 0.01


class Pixel:
    """Plain parameterization: one parameter per pixel and channel, squashed into the range.

    Args:
        shape: ``(N, H, W, C)`` of the images (any ``(N, ...)`` works: a
            vector input is ``(N, D)``).
        value_range: ``(low, high)`` of the images.

    Example:
        >>> import numpy as np
        >>> from keras_explain import features
        >>> p = features.Pixel((1, 4, 4, 3), value_range=(0.0, 1.0))
        >>> image = np.full((1, 4, 4, 3), 0.25, np.float32)
        >>> bool(np.allclose(p.image(p.params(image)), image, atol=1e-6))
        True
    """

    def __init__(self, shape: Sequence[int], value_range: tuple[float, float] = (0.0, 1.0)):
        self.shape = tuple(int(n) for n in shape)
        self.low, self.high = (float(v) for v in value_range)

    def param_shape(self) -> tuple[int, ...]:
        """The shape of the parameter tensor."""
        return self.shape

    def initial(self, seed: int, stream: int = 0) -> tf.Tensor:
        """Random initial parameters (normal, standard deviation 0.01).

        ``stream`` tells apart the inputs of a multi-input model (the stateless
        seed is ``[seed, stream]``).
        """
        return INITIAL_SD * tf.random.stateless_normal(self.param_shape(), [seed, stream])

    def unsquashed(self, params: tf.Tensor) -> tf.Tensor:
        """The image before the sigmoid."""
        return params

    def image(self, params: tf.Tensor) -> tf.Tensor:
        """The images ``(N, H, W, C)`` (``shape``) in ``value_range``."""
        return self.low + (self.high - self.low) * tf.sigmoid(self.unsquashed(params))

    def unsquashed_params(self, t: tf.Tensor) -> tf.Tensor:
        """The parameters giving the pre-sigmoid image ``t``."""
        return t

    def params(self, images) -> tf.Tensor:
        """The parameters of ``images`` (strictly inside ``value_range``): the inverse."""
        scaled = (tf.convert_to_tensor(images, tf.float32) - self.low) / (self.high - self.low)
        return self.unsquashed_params(tf.math.log(scaled) - tf.math.log1p(-scaled))


class Fourier(Pixel):
    """Decorrelated, frequency-scaled parameterization (Olah et al. 2017; Lucid's ``fft_image``).

    Args:
        shape: ``(N, H, W, C)`` of the images.
        value_range: ``(low, high)`` of the images.
        decay_power: The spectrum is scaled by ``1 / f ** decay_power``.

    Example:
        >>> import numpy as np
        >>> from keras_explain import features
        >>> f = features.Fourier((1, 6, 5, 3))
        >>> image = np.random.default_rng(0).uniform(0.1, 0.9, (1, 6, 5, 3))
        >>> bool(np.allclose(f.image(f.params(image)), image, atol=1e-5))
        True
    """

    def __init__(
        self,
        shape: Sequence[int],
        value_range: tuple[float, float] = (0.0, 1.0),
        decay_power: float = 1.0,
    ):
        super().__init__(shape, value_range)
        _, height, width, channels = self.shape
        frequencies = np.sqrt(
            np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None] ** 2
        )
        scale = 1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay_power
        self.scale = tf.constant(scale * math.sqrt(height * width), tf.complex64)
        self.color = COLOR_CORRELATION if channels == 3 else np.eye(channels, dtype=np.float32)

    def param_shape(self) -> tuple[int, ...]:
        """``(2, N, C, H, W // 2 + 1)``: real and imaginary parts of the spectra."""
        n, height, width, channels = self.shape
        return (2, n, channels, height, width // 2 + 1)

    def unsquashed(self, params: tf.Tensor) -> tf.Tensor:
        """The image before the sigmoid: scaled spectrum, inverse FFT, colour mixing."""
        _, height, width, _ = self.shape
        spectrum = tf.complex(params[0], params[1]) * self.scale
        t = tf.signal.irfft2d(spectrum, fft_length=[height, width]) / 4.0
        return tf.tensordot(tf.transpose(t, [0, 2, 3, 1]), tf.constant(self.color.T), 1)

    def unsquashed_params(self, t: tf.Tensor) -> tf.Tensor:
        """The spectra giving the pre-sigmoid image ``t`` (the exact inverse)."""
        _, height, width, _ = self.shape
        decorrelated = tf.tensordot(t, tf.constant(np.linalg.inv(self.color.T)), 1)
        channels_first = tf.transpose(decorrelated, [0, 3, 1, 2]) * 4.0
        spectrum = tf.signal.rfft2d(channels_first, fft_length=[height, width]) / self.scale
        return tf.stack([tf.math.real(spectrum), tf.math.imag(spectrum)])


PARAMETERIZATIONS = {"pixel": Pixel, "fourier": Fourier}


@dataclasses.dataclass(frozen=True)
class Transforms:
    """Random transforms applied to the images before the model sees them, every step.

    Lucid's ``standard_transforms``: pad (with a constant), translate by up to
    ``jitter`` pixels, scale by one of ``scales``, rotate by one of ``angles``
    (degrees), translate by up to ``fine_jitter``. Here the four moves are one
    bilinear resample of each image about its centre (TensorFlow's
    ``ImageProjectiveTransformV3``) onto the same ``H x W`` grid, and whatever
    comes into view from outside the image is the middle of the value range,
    which is what Lucid's constant padding shows.

    Attributes:
        jitter: Largest translation (pixels) of the first jitter.
        scales: The scale factors drawn from (uniformly).
        angles: The rotation angles drawn from, in degrees.
        fine_jitter: Largest translation of the second jitter.
    """

    jitter: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(range(-10, 11)) + (0,) * 5
    fine_jitter: int = 4

    @classmethod
    def standard(cls, size: Sequence[int]) -> Transforms:
        """Lucid's standard transforms, pixel amounts scaled from 224 to ``size`` (at least 1)."""
        factor = min(size) / 224

        def scaled(pixels):
            return max(1, round(pixels * factor))

        return cls(jitter=scaled(8), fine_jitter=scaled(4))

    def __call__(self, images: tf.Tensor, seed: tf.Tensor, fill: float) -> tf.Tensor:
        """Transform ``images`` (same size out) with the stateless ``seed`` (2 ints)."""
        n = tf.shape(images)[0]
        seeds = tf.random.experimental.stateless_split(seed, 4)
        shift = tf.cast(
            tf.random.stateless_uniform([n, 2], seeds[0], -self.jitter, self.jitter + 1, tf.int32)
            + tf.random.stateless_uniform(
                [n, 2], seeds[1], -self.fine_jitter, self.fine_jitter + 1, tf.int32
            ),
            tf.float32,
        )
        scale = tf.gather(
            tf.constant(self.scales, tf.float32),
            tf.random.stateless_uniform([n], seeds[2], 0, len(self.scales), tf.int32),
        )
        angle = tf.gather(
            tf.constant(self.angles, tf.float32) * (math.pi / 180),
            tf.random.stateless_uniform([n], seeds[3], 0, len(self.angles), tf.int32),
        )
        return affine(images, angle, scale, shift, fill)


def affine(images: tf.Tensor, angle, scale, shift, fill: float) -> tf.Tensor:
    """Rotate by ``angle`` (radians), scale and shift ``(dy, dx)`` each image about its centre.

    Output pixel ``p`` (``(x, y)``) reads the input at
    ``R(-angle) (p - c) / scale + c - shift`` (``c`` the centre), bilinearly;
    points outside the image read ``fill``.
    """
    height, width = images.shape[1], images.shape[2]
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cy, cx = (height - 1) / 2, (width - 1) / 2
    a2 = cx - cos * cx - sin * cy - shift[:, 1]
    b2 = cy + sin * cx - cos * cy - shift[:, 0]
    zeros = tf.zeros_like(cos)
    transform = tf.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transform,
        output_shape=[height, width],
        fill_value=fill,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """A penalty on each image, subtracted from its objective.

    Attributes:
        kind: ``"total_variation"``, ``"lp"`` (:func:`lp`, :func:`l1`,
            :func:`l2`) or ``"norm"`` (:func:`norm`).
        weight: Its weight.
        center: The image value it pulls towards (``lp`` and ``norm``; None:
            the middle of the value range).
        p: The exponent of ``lp`` and ``norm``.
    """

    kind: str
    weight: float
    center: float | None = None
    p: float | None = None

    def __call__(self, images: tf.Tensor, middle: float) -> tf.Tensor:
        """The penalty of each image, ``(N,)`` (images ``(N, ...)``; total variation: 4-D)."""
        if self.kind == "total_variation":
            return self.weight * tf.image.total_variation(images)
        offset = images - (middle if self.center is None else self.center)
        if self.p == 1:
            power = tf.abs(offset)
        elif self.p == 2:
            power = tf.square(offset)
        else:
            power = tf.pow(tf.abs(offset), self.p)
        axes = list(range(1, len(images.shape)))
        if self.kind == "lp":
            return self.weight * tf.reduce_sum(power, axis=axes)
        mean = tf.reduce_mean(power, axis=axes)
        # (mean)^(1/p) with the subgradient 0 where every pixel sits at the center
        positive = mean > 0
        root = tf.pow(tf.where(positive, mean, tf.ones_like(mean)), 1.0 / self.p)
        return self.weight * tf.where(positive, root, tf.zeros_like(mean))

    def __repr__(self) -> str:
        if self.kind == "total_variation":
            return f"total_variation({self.weight!r})"
        center = "" if self.center is None else f", center={self.center!r}"
        if self.kind == "lp" and self.p in (1, 2):
            return f"l{self.p:g}({self.weight!r}{center})"
        return f"{self.kind}({self.p:g}, {self.weight!r}{center})"


def total_variation(weight: float) -> Regularizer:
    """``weight * Σ |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|`` (``tf.image.total_variation``).

    For image inputs ``(H, W, C)`` only. tf-keras-vis' ``TotalVariation2D(w)``
    divides by the number of values: it is ``total_variation(w / (H * W * C))``.

    Args:
        weight: Non-negative weight.

    Returns:
        The :class:`Regularizer`.

    Example:
        >>> from keras_explain import features
        >>> features.total_variation(1e-3).kind
        'total_variation'
    """
    return Regularizer("total_variation", _weight(weight, "total_variation"))


def lp(p: float, weight: float, center: float | None = None) -> Regularizer:
    """``weight * Σ |x - center|^p`` over each image (center: the middle of the value range).

    :func:`l1` and :func:`l2` are ``lp(1, ...)`` and ``lp(2, ...)``.

    Args:
        p: The exponent, ``p >= 1`` (a float: ``1.5`` works).
        weight: Non-negative weight.
        center: The value pulled towards.

    Returns:
        The :class:`Regularizer`.

    Raises:
        ValueError: For ``p < 1`` or a negative weight.

    Example:
        >>> from keras_explain import features
        >>> features.lp(3, 0.01), features.lp(2, 0.5) == features.l2(0.5)
        (lp(3, 0.01), True)
    """
    return Regularizer("lp", _weight(weight, "lp"), center, _p(p, "lp"))


def l1(weight: float, center: float | None = None) -> Regularizer:
    """``weight * Σ |x - center|`` (center: the middle of the value range by default).

    Args:
        weight: Non-negative weight.
        center: The value pulled towards.

    Returns:
        The :class:`Regularizer` (``lp(1, weight, center)``).

    Example:
        >>> from keras_explain import features
        >>> features.l1(0.01).weight
        0.01
    """
    return Regularizer("lp", _weight(weight, "l1"), center, 1.0)


def l2(weight: float, center: float | None = None) -> Regularizer:
    """``weight * Σ (x - center)²`` (center: the middle of the value range by default).

    For a linear unit ``w · x`` and no transforms, the optimum is
    ``x = center + w / (2 weight)`` wherever that lies inside the value range.

    Args:
        weight: Non-negative weight.
        center: The value pulled towards.

    Returns:
        The :class:`Regularizer` (``lp(2, weight, center)``).

    Example:
        >>> from keras_explain import features
        >>> features.l2(0.5)
        l2(0.5)
    """
    return Regularizer("lp", _weight(weight, "l2"), center, 2.0)


def norm(p: float, weight: float, center: float | None = None) -> Regularizer:
    """``weight * (mean |x - center|^p)^(1/p)`` per image: tf-keras-vis' ``Norm(weight, p)``.

    tf-keras-vis computes ``weight * ||x||_p / n^(1/p)`` over the ``n`` values
    of each input, around 0: ``norm(p, weight, center=0.0)`` is the same. Here
    the center defaults to the middle of the value range, like :func:`lp`.
    Unlike :func:`lp` the penalty grows linearly with the image's distance
    from the center, and does not grow with the image size.

    Args:
        p: The order of the norm, ``p >= 1``.
        weight: Non-negative weight.
        center: The value pulled towards.

    Returns:
        The :class:`Regularizer`.

    Raises:
        ValueError: For ``p < 1`` or a negative weight.

    Example:
        >>> from keras_explain import features
        >>> features.norm(1, 0.3, center=0.0)
        norm(1, 0.3, center=0.0)
    """
    return Regularizer("norm", _weight(weight, "norm"), center, _p(p, "norm"))


def _p(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value < math.inf:
        raise ValueError(
            f"kx.features.{name} needs an exponent p >= 1 (finite). Received: p={value!r}."
        )
    return float(value)


def _weight(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(
            f"kx.features.{name} needs a non-negative weight. Received: weight={value!r}."
        )
    return float(value)

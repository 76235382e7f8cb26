"""Datasets with ground truth for evaluating explanations, generated on the fly (no download).

:func:`shapes` draws one filled object per image, whose shape is the class,
on a textured, cluttered background, and returns the pixel mask of that object:
the localisation ground truth of :func:`keras_explain.metrics.pointing_game`,
:func:`~keras_explain.metrics.relevance_mass` and
:func:`~keras_explain.metrics.relevance_rank`. :func:`shapes_mosaics` tiles
them 2 x 2, two tiles of a target class: the ground truth of
:func:`keras_explain.metrics.focus`. ``shapes(..., shortcut=c)`` tags most images of
class ``c`` with a spurious mark, and returns the mark's mask: the ground truth of
a "Clever Hans" strategy.
"""

from __future__ import annotations

import numpy as np

from keras_explain import _validate

#: Class names, in label order.
CLASSES = ("circle", "square", "triangle", "star", "cross")
#: The colour of :func:`shapes`' shortcut tag (magenta).
TAG_COLOUR = (1.0, 0.0, 1.0)
#: Images generated at a time (bounds the memory of the vectorized drawing).
_CHUNK = 512
#: Object radius (circumradius) as a fraction of the image size.
_RADIUS = (0.18, 0.32)
#: Star: inner radius / outer radius; cross: half-width of an arm / half-length.
_STAR_INNER = 0.45
_CROSS_ARM = 0.3
#: Square: half-side / circumradius-scale, chosen so the square's area is close to the circle's.
_SQUARE_HALF = 0.8
_LINES = 4
_BLOBS = 3


def shapes(
    n: int,
    size: int = 64,
    seed: int = 0,
    *,
    shortcut: int | None = None,
    shortcut_fraction: float = 0.9,
) -> tuple[np.ndarray, ...]:
    """Images of one filled shape on a cluttered background, its class and its mask.

    Each image holds one object, a filled circle, square, triangle, star or
    cross (labels 0 to 4, :data:`CLASSES`) of random position, size
    (circumradius 18% to 32% of the image, always fully inside it), rotation and
    colour, drawn in front of:

    - a texture: a random base colour, a sinusoidal grating of random frequency,
      orientation and phase, and uniform pixel noise;
    - distractors that cannot be mistaken for a class: soft Gaussian blobs (no
      edges) and thin straight line segments (1 to 2 pixels wide), behind the
      object.

    The class is decided by the object's shape alone, and the mask marks its
    pixels. Same ``(n, size, seed)``, identical arrays.

    **A shortcut** (``shortcut=c``): a spurious mark that a model can learn instead
    of the shape, for finding "Clever Hans" strategies (Lapuschkin et al. 2019): a
    magenta square tag (side 15% of the image, at least 3 pixels) in the top-left
    corner, one pixel from the edges, on a ``shortcut_fraction`` of the images of
    class ``c`` (chosen at random) and on no other image. The tag is drawn over
    whatever is there, and the object's mask loses the pixels it covers. The images
    are otherwise the ones of the same ``(n, size, seed)`` without a shortcut, so
    the two calls give each image with and without its tag.

    Args:
        n: Number of images.
        size: Height and width in pixels (>= 16).
        seed: Seed of every random choice.
        shortcut: The class that carries the tag, or None (no tag).
        shortcut_fraction: The fraction of that class's images tagged, in [0, 1].

    Returns:
        ``(images, labels, masks)``: float32 ``(n, size, size, 3)`` in [0, 1],
        int64 ``(n,)`` labels, bool ``(n, size, size)`` object masks; with a
        ``shortcut``, also the bool ``(n, size, size)`` masks of the tags (all
        False on untagged images).

    Raises:
        ValueError: For a non-positive ``n``, a ``size`` below 16, a ``shortcut``
            that is not a class, or a ``shortcut_fraction`` outside [0, 1].

    Example:
        >>> import keras_explain as kx
        >>> images, labels, masks = kx.datasets.shapes(8, size=32, seed=1)
        >>> images.shape, images.dtype, labels.shape, masks.shape
        ((8, 32, 32, 3), dtype('float32'), (8,), (8, 32, 32))
        >>> bool(masks.any(axis=(1, 2)).all())
        True
        >>> tagged, _, _, tags = kx.datasets.shapes(8, size=32, seed=1, shortcut=0)
        >>> bool(np.array_equal(tagged[~tags], images[~tags]))  # the same images but the tags
        True
    """
    n = _validate.positive_int(n, "n")
    size = _checked_size(size, "shapes")
    if shortcut is not None and shortcut not in range(len(CLASSES)):
        raise ValueError(
            f"shapes: shortcut must be a class, 0 to {len(CLASSES) - 1} ({', '.join(CLASSES)}), "
            f"or None. Received: shortcut={shortcut!r}."
        )
    if not 0 <= shortcut_fraction <= 1:
        raise ValueError(
            "shapes: shortcut_fraction is the fraction of the class's images tagged, in "
            f"[0, 1]. Received: shortcut_fraction={shortcut_fraction!r}."
        )
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    images, masks = _images(labels, size, rng)
    if shortcut is None:
        return images, labels.astype(np.int64), masks
    chosen = np.random.default_rng([seed, 1]).random(n) < shortcut_fraction
    tags = np.zeros_like(masks)
    side = max(3, round(0.15 * size))
    tags[(labels == shortcut) & chosen, 1 : 1 + side, 1 : 1 + side] = True
    images[tags] = TAG_COLOUR
    masks &= ~tags
    return images, labels.astype(np.int64), masks, tags


def shapes_mosaics(
    n: int, size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2 x 2 mosaics of :func:`shapes` images, two of them of the target class.

    The Focus setting (Arias-Duart et al. 2022,
    :func:`keras_explain.metrics.focus`): each mosaic has a target class
    (uniform over :data:`CLASSES`), two tiles of that class at two random
    positions of the four, and two tiles of classes drawn uniformly from the
    other classes (the two may share a class). Each tile is an image of
    :func:`shapes` (drawn the same way, its own object, background and
    distractors). Same ``(n, size, seed)``, identical arrays.

    Args:
        n: Number of mosaics.
        size: Height and width of a tile in pixels (>= 16); a mosaic is ``2 * size``.
        seed: Seed of every random choice.

    Returns:
        ``(mosaics, labels, layouts)``: float32 ``(n, 2 * size, 2 * size, 3)`` in
        [0, 1], int64 ``(n,)`` target classes, bool ``(n, 2, 2)`` tile layouts
        (True where the tile shows the target class; row-major: top-left,
        top-right, bottom-left, bottom-right).

    Raises:
        ValueError: For a non-positive ``n`` or a ``size`` below 16.

    Example:
        >>> import keras_explain as kx
        >>> mosaics, labels, layouts = kx.datasets.shapes_mosaics(4, size=16, seed=1)
        >>> mosaics.shape, labels.shape, layouts.shape
        ((4, 32, 32, 3), (4,), (4, 2, 2))
        >>> layouts.sum(axis=(1, 2)).tolist()
        [2, 2, 2, 2]
    """
    n = _validate.positive_int(n, "n")
    size = _checked_size(size, "shapes_mosaics")
    classes = len(CLASSES)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    positions = rng.permuted(np.tile(np.arange(4), (n, 1)), axis=1)
    layouts = positions < 2  # the tiles that drew positions 0 and 1 show the target class
    others = (labels[:, None] + rng.integers(1, classes, (n, 4))) % classes
    tiles, _ = _images(np.where(layouts, labels[:, None], others).ravel(), size, rng)
    mosaics = tiles.reshape(n, 2, 2, size, size, 3).transpose(0, 1, 3, 2, 4, 5)
    return (
        mosaics.reshape(n, 2 * size, 2 * size, 3),
        labels.astype(np.int64),
        layouts.reshape(n, 2, 2),
    )


def _checked_size(size, function: str) -> int:
    size = _validate.positive_int(size, "size")
    if size < 16:
        raise ValueError(
            f"{function} draws objects of at least a few pixels: size must be >= 16. "
            f"Received: size={size}."
        )
    return size


def _images(labels: np.ndarray, size: int, rng: np.random.Generator):
    """Images and masks of objects of the given classes, :data:`_CHUNK` at a time."""
    images = np.empty((len(labels), size, size, 3), np.float32)
    masks = np.empty((len(labels), size, size), bool)
    for start in range(0, len(labels), _CHUNK):
        stop = min(len(labels), start + _CHUNK)
        images[start:stop], masks[start:stop] = _draw(labels[start:stop], size, rng)
    return images, masks


def _draw(labels: np.ndarray, size: int, rng: np.random.Generator):
    count = len(labels)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in (0, 1)
    ys, xs = grid[None, :, None], grid[None, None, :]
    image = _background(count, ys, xs, rng)
    base = image.mean(axis=(1, 2))  # (count, 3)
    for _ in range(_LINES):  # thin segments, behind the object
        start, end = rng.uniform(0, 1, (2, count, 2)).astype(np.float32)
        width = rng.uniform(1.0, 2.0, count).astype(np.float32) / size
        colour = rng.uniform(0, 1, (count, 3)).astype(np.float32)
        on = _segment_distance(ys, xs, start, end) <= width[:, None, None] / 2
        np.copyto(image, colour[:, None, None], where=on[..., None])
    radius = rng.uniform(*_RADIUS, count).astype(np.float32)
    centre = rng.uniform(radius[:, None], 1 - radius[:, None], (count, 2)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, count).astype(np.float32)
    direction = np.where(rng.random((count, 3)) < 0.5, -1.0, 1.0).astype(np.float32)
    contrast = rng.uniform(0.35, 0.6, (count, 3)).astype(np.float32)
    colour = base + direction * contrast
    colour = np.where((colour < 0) | (colour > 1), base - direction * contrast, colour)
    colour = np.clip(colour, 0, 1).astype(np.float32)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dy = (ys - centre[:, 0, None, None]) / radius[:, None, None]
    dx = (xs - centre[:, 1, None, None]) / radius[:, None, None]
    u, v = cos * dx + sin * dy, cos * dy - sin * dx  # rotated, in radii
    mask = np.zeros((count, size, size), bool)
    for label, inside in enumerate((_circle, _square, _triangle, _star, _cross)):
        chosen = labels == label
        if chosen.any():
            mask[chosen] = inside(u[chosen], v[chosen])
    np.copyto(image, colour[:, None, None], where=mask[..., None])
    return np.clip(image, 0, 1, out=image), mask


def _background(count, ys, xs, rng):
    """Base colour + a sinusoidal grating + Gaussian blobs + pixel noise, ``(count, H, W, 3)``.

    The grating and the blobs are separable in y and x, so they are products of
    ``(count, H, 1)`` and ``(count, 1, W)`` factors.
    """
    base = rng.uniform(0.25, 0.75, (count, 1, 1, 3)).astype(np.float32)
    frequency = rng.uniform(2, 8, count).astype(np.float32)[:, None, None]
    orientation = rng.uniform(0, np.pi, count).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, count).astype(np.float32)[:, None, None]
    amplitude = rng.uniform(0.03, 0.12, (count, 1, 1, 3)).astype(np.float32)
    along_x = 2 * np.pi * frequency * xs * np.cos(orientation) + phase
    along_y = 2 * np.pi * frequency * ys * np.sin(orientation)
    wave = np.sin(along_x) * np.cos(along_y) + np.cos(along_x) * np.sin(along_y)
    image = base + amplitude * wave[..., None]
    for _ in range(_BLOBS):
        centre = rng.uniform(0, 1, (count, 2)).astype(np.float32)
        spread = rng.uniform(0.05, 0.15, count).astype(np.float32)[:, None, None]
        height = rng.uniform(-0.2, 0.2, (count, 1, 1, 3)).astype(np.float32)
        bump = np.exp(-((ys - centre[:, 0, None, None]) ** 2) / (2 * spread**2)) * np.exp(
            -((xs - centre[:, 1, None, None]) ** 2) / (2 * spread**2)
        )
        image += height * bump[..., None]
    noise = rng.random(image.shape, dtype=np.float32)  # uniform: 4x cheaper than normal
    noise -= 0.5
    noise *= 0.1  # standard deviation 0.1 / sqrt(12) ~ 0.03
    image += noise
    return image


def _segment_distance(ys, xs, start, end):
    """Distance of every pixel centre to the segment start-end, per image ``(count, H, W)``."""
    ay, ax = start[:, 0, None, None], start[:, 1, None, None]
    by, bx = end[:, 0, None, None], end[:, 1, None, None]
    length = np.maximum((by - ay) ** 2 + (bx - ax) ** 2, 1e-12)
    t = np.clip(((ys - ay) * (by - ay) + (xs - ax) * (bx - ax)) / length, 0, 1)
    return np.sqrt((ys - ay - t * (by - ay)) ** 2 + (xs - ax - t * (bx - ax)) ** 2)


def _circle(u, v):
    return u**2 + v**2 <= 1


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF


def _triangle(u, v):
    """Equilateral, circumradius 1: inside the three edges at distance 1/2 from the centre."""
    inside = np.ones(u.shape, bool)
    for normal in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):
        inside &= u * np.cos(normal) + v * np.sin(normal) <= 0.5
    return inside


def _star(u, v):
    """Five points of radius 1, inner corners at radius :data:`_STAR_INNER`."""
    rho = np.sqrt(u**2 + v**2)
    sector = 2 * np.pi / 5
    phi = np.abs(np.mod(np.arctan2(v, u) + sector / 2, sector) - sector / 2)
    qx, qy = rho * np.cos(phi), rho * np.sin(phi)
    px, py = _STAR_INNER * np.cos(sector / 2), _STAR_INNER * np.sin(sector / 2)
    # inside when on the origin's side of the edge from (1, 0) to the inner corner
    return (px - 1) * qy - py * (qx - 1) >= 0


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= _CROSS_ARM) & (av <= 1)) | ((av <= _CROSS_ARM) & (au <= 1))

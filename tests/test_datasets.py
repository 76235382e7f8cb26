"""kx.datasets.shapes: seeded, and each mask is one object whose geometry matches its label."""

import numpy as np
import pytest
from skimage import measure

import keras_explain as kx


def test_shapes_is_seeded_and_well_formed():
    images, labels, masks = kx.datasets.shapes(40, size=48, seed=3)
    again = kx.datasets.shapes(40, size=48, seed=3)
    for first, second in zip((images, labels, masks), again):
        np.testing.assert_array_equal(first, second)
    other = kx.datasets.shapes(40, size=48, seed=4)
    assert not np.array_equal(images, other[0])
    assert images.shape == (40, 48, 48, 3) and images.dtype == np.float32
    assert labels.shape == (40,) and masks.shape == (40, 48, 48) and masks.dtype == bool
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(labels) == set(range(len(kx.datasets.CLASSES)))


def classify(mask):
    """The class of one mask from rotation-invariant geometry (scikit-image regionprops).

    Solidity (area / convex hull area) separates the convex shapes (~1) from star and
    cross (~0.6); the area over the circle through the farthest pixel, pi r_max^2,
    is 1 for a circle, 2 / pi = 0.64 for a square, 3 sqrt(3) / (4 pi) = 0.41 for a
    triangle, and 0.42 (star) / 0.60 (cross) for the concave ones.
    """
    (region,) = measure.regionprops(mask.astype(np.uint8))
    rows, columns = np.nonzero(mask)
    centre_row, centre_column = region.centroid
    farthest = np.sqrt((rows - centre_row) ** 2 + (columns - centre_column) ** 2).max() + 0.5
    fill = region.area / (np.pi * farthest**2)
    if region.solidity < 0.85:
        return "star" if fill < 0.5 else "cross"
    if fill > 0.85:
        return "circle"
    return "square" if fill > 0.52 else "triangle"


def test_each_mask_is_the_object_of_its_class():
    images, labels, masks = kx.datasets.shapes(60, size=64, seed=0)
    for image, label, mask in zip(images, labels, masks):
        assert (
            measure.label(mask, connectivity=2).max() == 1
        )  # one object (star tips touch diagonally)
        assert classify(mask) == kx.datasets.CLASSES[label]
        # the object is drawn last in one colour: every mask pixel has that colour
        colours = image[mask]
        np.testing.assert_array_equal(colours, np.broadcast_to(colours[0], colours.shape))


def test_shapes_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"n must be a positive int. Received: n=0"):
        kx.datasets.shapes(0)
    with pytest.raises(ValueError, match=r"size must be >= 16. Received: size=8"):
        kx.datasets.shapes(4, size=8)


def object_mask(tile):
    """The pixels of a tile's object: the one colour that survives a 3 x 3 erosion the most.

    The object is drawn last in one colour and is many pixels wide; the line
    distractors (1 to 2 pixels wide) vanish under the erosion and the noisy
    background never repeats a colour exactly.
    """
    from scipy import ndimage

    colours, counts = np.unique(tile.reshape(-1, 3), axis=0, return_counts=True)
    candidates = [np.all(tile == colour, axis=-1) for colour in colours[counts >= 20]]
    cores = [ndimage.binary_erosion(mask, np.ones((3, 3))).sum() for mask in candidates]
    return candidates[int(np.argmax(cores))]


def test_shapes_mosaics_tile_two_objects_of_the_target_class():
    mosaics, labels, layouts = kx.datasets.shapes_mosaics(30, size=64, seed=2)
    again = kx.datasets.shapes_mosaics(30, size=64, seed=2)
    for first, second in zip((mosaics, labels, layouts), again):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(mosaics, kx.datasets.shapes_mosaics(30, size=64, seed=3)[0])
    assert mosaics.shape == (30, 128, 128, 3) and mosaics.dtype == np.float32
    assert labels.shape == (30,) and labels.dtype == np.int64
    assert layouts.shape == (30, 2, 2) and layouts.dtype == bool
    assert 0.0 <= mosaics.min() and mosaics.max() <= 1.0
    np.testing.assert_array_equal(layouts.sum(axis=(1, 2)), 2)
    assert set(labels) == set(range(len(kx.datasets.CLASSES)))
    positions = {tuple(layout.ravel()) for layout in layouts}
    assert len(positions) > 3  # the target tiles are placed at random
    for mosaic, label, layout in zip(mosaics, labels, layouts):
        for row in range(2):
            for column in range(2):
                tile = mosaic[64 * row : 64 * (row + 1), 64 * column : 64 * (column + 1)]
                mask = object_mask(tile)
                assert measure.label(mask, connectivity=2).max() == 1
                shown = kx.datasets.CLASSES.index(classify(mask))
                assert (shown == label) == layout[row, column]


def test_shapes_mosaics_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"n must be a positive int. Received: n=-1"):
        kx.datasets.shapes_mosaics(-1)
    with pytest.raises(ValueError, match=r"shapes_mosaics draws .* size must be >= 16"):
        kx.datasets.shapes_mosaics(2, size=15)


def test_the_shortcut_tags_most_images_of_one_class_and_nothing_else():
    plain, labels, masks = kx.datasets.shapes(400, size=32, seed=3)
    images, same_labels, tagged_masks, tags = kx.datasets.shapes(
        400, size=32, seed=3, shortcut=2, shortcut_fraction=0.8
    )
    np.testing.assert_array_equal(same_labels, labels)
    tagged = tags.any(axis=(1, 2))
    assert not tagged[labels != 2].any()
    assert 0.7 <= tagged[labels == 2].mean() <= 0.9  # 80% of about 80 images
    side = round(0.15 * 32)  # 5 pixels, one from the top and left edges
    assert tags[tagged][:, 1 : 1 + side, 1 : 1 + side].all()
    assert tags[tagged].sum(axis=(1, 2)).tolist() == [side * side] * int(tagged.sum())
    np.testing.assert_array_equal(images[tags], np.tile([1.0, 0.0, 1.0], (int(tags.sum()), 1)))
    np.testing.assert_array_equal(images[~tags], plain[~tags])  # the rest untouched
    np.testing.assert_array_equal(tagged_masks, masks & ~tags)
    none = kx.datasets.shapes(50, size=32, seed=3, shortcut=2, shortcut_fraction=0.0)[3]
    assert not none.any()


def test_a_bad_shortcut_is_named():
    with pytest.raises(ValueError, match=r"shapes: shortcut must be a class, 0 to 4 \(circle"):
        kx.datasets.shapes(4, size=32, shortcut=5)
    with pytest.raises(ValueError, match=r"shortcut_fraction=1.5"):
        kx.datasets.shapes(4, size=32, shortcut=0, shortcut_fraction=1.5)

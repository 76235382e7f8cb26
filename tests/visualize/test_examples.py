"""plot_examples: each cell shows the training image its index names, titled by its score."""

import numpy as np
import pytest

from keras_explain import visualize


def test_cells_show_the_indexed_training_images_with_their_scores_and_labels():
    rng = np.random.default_rng(0)
    train, test = rng.random((10, 6, 6, 3)), rng.random((2, 6, 6, 3))
    proponents = (np.array([[3, 1], [0, 9]]), np.array([[2.5, 1.0], [0.5, 0.125]]))
    opponents = (np.array([[7], [2]]), np.array([[-4.0], [-0.3]]))
    figure = visualize.plot_examples(
        test,
        train,
        proponents,
        opponents,
        test_labels=["a", "b"],
        train_labels=list("abcdefghij"),
    )
    axes = np.array(figure.axes).reshape(2, 4)
    expected = [[3, 1, 7], [0, 9, 2]]
    for row in range(2):
        np.testing.assert_allclose(axes[row, 0].images[0].get_array(), visualize.as_rgb(test)[row])
        assert axes[row, 0].get_ylabel() == "ab"[row]
        for column, index in enumerate(expected[row], start=1):
            shown = axes[row, column].images[0].get_array()
            np.testing.assert_allclose(shown, visualize.as_rgb(train[index : index + 1])[0])
    assert axes[0, 1].get_title() == "proponent 1\n+2.5 · d"
    assert axes[1, 2].get_title() == "+0.125 · j"
    assert axes[0, 3].get_title() == "opponent 1\n-4 · h"


def test_bad_shapes_are_named():
    train, test = np.zeros((5, 4, 4)), np.zeros((2, 4, 4))
    with pytest.raises(
        ValueError,
        match=r"plot_examples: the proponents' indices and scores must both be \(n_test, k\) "
        r"with n_test = 2 test images. Received: indices \(2, 2\), scores \(2, 3\)",
    ):
        visualize.plot_examples(test, train, (np.zeros((2, 2), int), np.zeros((2, 3))))
    with pytest.raises(
        ValueError, match=r"must index the 5 training images. Received: indices from 0 to 5"
    ):
        visualize.plot_examples(test, train, (np.array([[0], [5]]), np.zeros((2, 1))))
    with pytest.raises(ValueError, match=r"train_labels needs one label per training image \(5\)"):
        visualize.plot_examples(
            test, train, (np.zeros((2, 1), int), np.zeros((2, 1))), train_labels=[1, 2]
        )

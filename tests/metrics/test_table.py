"""``kx.metrics.evaluate``: the table is the metrics, called directly."""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

layers = keras.layers


# =====================================================================================
# evaluate: the table is the metrics, called directly
# =====================================================================================
def test_evaluate_rows_are_the_metrics_means():
    helpers.seeded(2)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(4, 3, activation="relu", name="conv"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(5, name="logits"),
        ]
    )
    images, labels, masks = kx.datasets.shapes(4, size=16, seed=1)
    rows = kx.metrics.evaluate(
        {"gradient": {}, "grad_cam": {}}, model, images, labels, masks=masks, steps=8, verbose=0
    )
    assert [row["method"] for row in rows] == ["gradient", "grad_cam"]
    for row in rows:
        defaults = kx.metrics.registry.default_metrics(masks=True)
        assert list(row) == ["method", "seconds_per_sample", *defaults]
        relevance = kx.create_analyzer(row["method"], model).analyze(images, labels)
        direct = {
            "deletion_auc": kx.metrics.deletion(model, images, relevance, labels, steps=8).auc,
            "insertion_auc": kx.metrics.insertion(model, images, relevance, labels, steps=8).auc,
            "pointing_game": kx.metrics.pointing_game(relevance, masks),
            "relevance_mass": kx.metrics.relevance_mass(relevance, masks),
            "sparseness": kx.metrics.sparseness(relevance),
            "infidelity": kx.metrics.infidelity(model, images, relevance, labels),
            "sensitivity_max": kx.metrics.sensitivity_max(
                kx.create_analyzer(row["method"], model), images, labels
            ),
        }
        for metric, values in direct.items():
            np.testing.assert_allclose(row[metric], np.nanmean(values), rtol=1e-5, err_msg=metric)
    with pytest.raises(
        ValueError,
        match=r"evaluate: metric 'pointing_game' compares with "
        r"ground-truth masks. Received: masks=None",
    ):
        kx.metrics.evaluate(["gradient"], model, images, metrics=["pointing_game"])


def test_evaluate_randomization_of_a_method_with_its_own_seed():
    # smoothgrad's `seed` must not collide with randomization's re-initialization seed
    helpers.seeded(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(4, 3, activation="relu", name="conv"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(5, name="logits"),
        ]
    )
    images, labels, _ = kx.datasets.shapes(3, size=16, seed=1)
    images = images[:, :8, :8]
    rows = kx.metrics.evaluate(
        {"smoothgrad": {"samples": 4, "seed": 5}},
        model,
        images,
        labels,
        metrics=["randomization"],
        seed=2,
        verbose=0,
    )
    direct = kx.metrics.randomization("smoothgrad", model, images, labels, seed=2, samples=4)
    np.testing.assert_allclose(rows[0]["randomization"], np.nanmean(direct["conv"]), rtol=1e-6)

"""No public method family reads or changes the global random state (issue #25, item 3).

A user's seeded experiment must not change because an explanation, a metric, a concept
test or a feature visualization ran in between. Each family runs between two snapshots of
numpy's global generator, Python's ``random`` and TensorFlow's global generator, without
``seed`` arguments where a method takes one (fresh seeds come from the library's own
generator). The models and data are built before the first snapshot.
"""

import random

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import demo


def snapshot():
    numpy_state = np.random.get_state()
    return (
        numpy_state[0],
        numpy_state[1].copy(),
        numpy_state[2:],
        random.getstate(),
        tf.random.get_global_generator().state.numpy().copy(),
    )


def assert_same(before, after, family):
    assert before[0] == after[0] and np.array_equal(before[1], after[1]), f"{family}: numpy"
    assert before[2] == after[2], f"{family}: numpy"
    assert before[3] == after[3], f"{family}: Python random"
    assert np.array_equal(before[4], after[4]), f"{family}: TensorFlow's global generator"


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    keras.utils.set_random_seed(0)  # before the snapshots
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(),
            layers.Conv2D(6, 3, activation="relu", padding="same"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(4),
        ]
    )
    x = helpers.data((8, 8, 2), batch=4)
    masks = np.zeros((4, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    return model, x, masks, tmp_path_factory.mktemp("side_effects")


def every_analyzer(model, x, masks, out):
    results, skipped = demo.explain_all(model, x, log=lambda line: None)
    assert not skipped, skipped
    assert len(results) == len(kx.analyzers.names())


def wrappers(model, x, masks, out):
    kx.NoiseTunnel(kx.IntegratedGradients(model, steps=4), samples=2).analyze(x)
    kx.NoiseTunnel(kx.Occlusion(model, window=4), samples=2).analyze(x)
    kx.LayerConductance(model, layer=model.layers[0], steps=4).analyze(x)


def metrics(model, x, masks, out):
    kx.metrics.evaluate(["gradient", "occlusion"], model, x, masks=masks, steps=8)
    # every other registered column, and the functions that are not columns
    others = [name for name in kx.metrics.METRICS if name not in ("irof", "road")]
    kx.metrics.evaluate(["gradient"], model, x, masks=masks, steps=8, metrics=others)
    relevance = kx.Gradient(model).analyze(x)
    kx.metrics.road(model, x, relevance, percentages=(20, 60))
    kx.metrics.irof(model, x, relevance, segmentation=np.arange(64).reshape(8, 8) // 16)
    kx.metrics.relative_representation_stability(kx.Gradient(model), x, layer=model.layers[0])
    kx.metrics.meta_evaluate(
        "sparseness", model, x, methods=["gradient", "input_t_gradient"], iterations=2, verbose=0
    )


def concepts(model, x, masks, out):
    rng = np.random.default_rng(3)
    concept = rng.normal(1.0, 1.0, (12, 8, 8, 2)).astype("float32")
    randoms = [rng.normal(size=(12, 8, 8, 2)).astype("float32") for _ in range(3)]
    layer = model.layers[0]
    kx.concepts.TCAV(model, layer, {"shifted": concept}, randoms, runs=2).run(x, target=1)
    kx.concepts.CAV.fit(model, layer, concept, randoms[0])


def representations(model, x, masks, out):
    kx.representations.similarity_matrix(model, model, np.concatenate([x] * 3), batch_size=4)
    features = np.random.default_rng(5).normal(size=(20, 6))
    kx.representations.cka(features, features[:, ::-1])
    kx.representations.svcca(features, features[:, ::-1])
    kx.representations.embed(features)


def features(model, x, masks, out):
    kx.features.maximize(model, kx.features.logit(1), steps=4)
    kx.features.top_patches(model, model.layers[0], x, 0, k=2)


def datasets_and_streams(model, x, masks, out):
    kx.datasets.shapes(4, size=16)
    kx.explain_dataset("smoothgrad", model, x, out_dir=out / "shards", batch_size=2, samples=2)
    kx.report(["gradient", "occlusion"], model, x, out=str(out / "page.html"))


def attacks(model, x, masks, out):
    target = np.zeros(len(x), int)
    kx.robust.pgd(model, x, target, radius=0.1, step_size=0.05, steps=2, random_start=True)
    kx.robust.fgsm(model, x, target, epsilon=0.1)


def model_builders(model, x, masks, out):
    from keras_explain import benchmark

    for augment in (False, True):
        benchmark.train_shapes_cnn(32, 1, 16, test=4, verbose=0, batch_size=16, augment=augment)
    digits = demo.digits_data()
    demo.train(demo.digits_cnn(), tuple(part[:64] for part in digits), epochs=1)


def influence(model, x, masks, out):
    labels = np.arange(len(x)) % 2
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tracin = kx.influence.TracIn(model, (x, labels), loss=loss, projection_dim=4)
    tracin.proponents(x[:2], labels[:2], k=2)
    function = kx.influence.InfluenceFunction(
        model,
        (x, labels),
        loss=loss,
        hessian="arnoldi",
        arnoldi_dim=4,
        projection_dim=2,
        damping=0.1,
    )
    function.influence(x[:2], labels[:2])
    kx.influence.Similarity(model, x, model.layers[0]).opponents(x[:2], k=1)


FAMILIES = {
    "every registered analyzer": every_analyzer,
    "wrappers and layer paths": wrappers,
    "metrics": metrics,
    "concepts": concepts,
    "representations": representations,
    "features": features,
    "datasets, explain_dataset, report": datasets_and_streams,
    "robust": attacks,
    "influence": influence,
    "the demo's and benchmark's models": model_builders,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_public_family_touches_the_global_random_state(setting, family):
    model, x, masks, out = setting
    before = snapshot()
    FAMILIES[family](model, x, masks, out)
    assert_same(before, snapshot(), family)


def test_the_model_builders_are_reproducible_without_global_seeding():
    from keras_explain import benchmark

    first, second = benchmark.shapes_cnn(16, seed=3), benchmark.shapes_cnn(16, seed=3)
    other = benchmark.shapes_cnn(16, seed=4)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    kernels = [w for w in first.get_weights() if w.ndim > 1]
    assert not np.array_equal(kernels[0], other.get_weights()[0])
    assert len({float(np.abs(k).sum()) for k in kernels}) == len(kernels)  # layers differ
    np.testing.assert_array_equal(
        demo.digits_cnn(seed=1).get_weights()[0], demo.digits_cnn(seed=1).get_weights()[0]
    )

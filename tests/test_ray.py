"""kx.ray.Explainer on a local Ray (slow step): equal to analyze after sorting by id."""

import os

import helpers
import numpy as np
import pytest

import keras_explain as kx

ray = pytest.importorskip("ray", reason='Ray is the optional extra "keras-explainer[ray]"')

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize(
    "method, params",
    [("lrp.epsilon", {}), ("smoothgrad", {"samples": 3, "seed": 2})],
)
def test_explainer_equals_analyze_after_sorting_by_id(local_ray, tmp_path, method, params):
    model = helpers.randomize(helpers.conv_sequential())
    x = helpers.data((8, 8, 2), seed=5, batch=24)
    labels = np.arange(24) % 3
    model.save(tmp_path / "model.keras")
    items = [{"id": i, "x": x[i], "label": labels[i]} for i in range(len(x))]
    dataset = ray.data.from_items(items, override_num_blocks=4)
    explained = dataset.map_batches(
        kx.ray.Explainer,
        fn_constructor_kwargs={
            "model_path": str(tmp_path / "model.keras"),
            "method": method,
            "target_column": "label",
            **params,
        },
        concurrency=2,
        batch_size=6,
    )
    rows = sorted(explained.take_all(), key=lambda row: row["id"])
    assert [row["id"] for row in rows] == list(range(24))  # nothing lost or duplicated
    np.testing.assert_array_equal(np.stack([row["x"] for row in rows]), x)  # passed through
    result = np.stack([row["explanation"] for row in rows])
    expected = kx.create_analyzer(method, model, **params).analyze(x, target=labels, batch_size=6)
    # the same samples in batches of the same rows (blocks of 6 ids): same arithmetic;
    # allclose at float32 rounding in case Ray regroups rows across blocks
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


def test_a_killed_actor_is_restarted_and_its_batch_explained_again(local_ray, tmp_path):
    """An actor process that dies mid-run (os._exit: no exception, no cleanup, as when
    the OOM killer or a preempted node takes it) is restarted by Ray, which loads the
    model again and re-runs the batches the dead process held; the result has every id
    once and equals analyze. The retry options are the ones the guide tells users to
    pass (Ray Data's defaults since at least Ray 2.60, explicit for older versions)."""
    marker = tmp_path / "killed"

    class DiesOnce(kx.ray.Explainer):  # local: pickled by value into the actors
        def __call__(self, batch):
            if batch["id"][0] >= 12:  # the first actor to reach the second half dies once
                try:
                    handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(handle, str(os.getpid()).encode())
                    os.close(handle)
                    os._exit(1)
            return super().__call__(batch)

    model = helpers.randomize(helpers.conv_sequential())
    x = helpers.data((8, 8, 2), seed=6, batch=24)
    model.save(tmp_path / "model.keras")
    items = [{"id": i, "x": x[i]} for i in range(len(x))]
    explained = ray.data.from_items(items, override_num_blocks=4).map_batches(
        DiesOnce,
        fn_constructor_kwargs={"model_path": str(tmp_path / "model.keras"), "method": "gradient"},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=6,
        max_restarts=-1,  # ray_remote_args: restart a dead actor, without limit
        max_task_retries=-1,  # and re-run the batches it held
    )
    rows = sorted(explained.take_all(), key=lambda row: row["id"])
    dead = int(marker.read_text())  # an actor did die
    assert dead != os.getpid()
    assert [row["id"] for row in rows] == list(range(24))  # nothing lost or duplicated
    expected = kx.Gradient(model).analyze(x, batch_size=6)
    np.testing.assert_allclose(
        np.stack([row["explanation"] for row in rows]), expected, rtol=1e-5, atol=1e-7
    )


def test_missing_column_names_the_columns(tmp_path):
    model = helpers.conv_sequential()
    model.save(tmp_path / "model.keras")
    explain = kx.ray.Explainer("gradient", tmp_path / "model.keras", column="image")
    with pytest.raises(KeyError, match=r"no column 'image'. Received columns: \['id', 'x'\]"):
        explain({"id": np.arange(2), "x": np.zeros((2, 8, 8, 2), "float32")})


def test_tracin_features_on_ray_equal_tracin_after_sorting_by_id(local_ray, tmp_path):
    """The training set's projected gradients computed by Ray actors from weight files
    give TracIn the scores and self-influence it computes itself."""
    import keras

    helpers.seeded(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)]
    )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 6)).astype("float32")
    y = rng.integers(0, 3, 60)
    model.save(tmp_path / "model.keras")
    paths = []
    for number, scale in enumerate((1.0, 0.7)):
        model.set_weights([w * scale for w in model.get_weights()])
        paths.append(str(tmp_path / f"c{number}.weights.h5"))
        model.save_weights(paths[-1])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    options = {"checkpoints": paths, "loss": loss, "projection_dim": 16, "seed": 4}
    items = [{"id": i, "x": x[i], "y": y[i]} for i in range(len(x))]
    computed = ray.data.from_items(items, override_num_blocks=4).map_batches(
        kx.ray.TracInFeatures,
        fn_constructor_kwargs={"model_path": str(tmp_path / "model.keras"), **options},
        concurrency=2,
        batch_size=16,
    )
    rows = sorted(computed.take_all(), key=lambda row: row["id"])
    assert [row["id"] for row in rows] == list(range(60))
    features = np.stack([row["tracin_features"] for row in rows])
    norms = np.stack([row["tracin_squared_norms"] for row in rows])
    assert features.shape == (60, 2, 16) and norms.shape == (60, 2)
    given = kx.influence.TracIn(model, (x, y), train_features=(features, norms), **options)
    local = kx.influence.TracIn(model, (x, y), **options)
    np.testing.assert_allclose(
        given.influence(x[:5], y[:5]), local.influence(x[:5], y[:5]), rtol=1e-5
    )
    np.testing.assert_allclose(given.self_influence(), local.self_influence(), rtol=1e-5)


def test_tracin_features_name_missing_columns_and_projection(tmp_path):
    model = helpers.conv_sequential()
    model.save(tmp_path / "model.keras")
    path = tmp_path / "model.keras"
    with pytest.raises(ValueError, match=r"TracInFeatures needs projection_dim \(e.g. 256\)"):
        kx.ray.TracInFeatures(path, loss="categorical_crossentropy")
    compute = kx.ray.TracInFeatures(path, loss="categorical_crossentropy", projection_dim=4)
    with pytest.raises(KeyError, match=r"TracInFeatures: the batch has no column 'y'"):
        compute({"x": np.zeros((2, 8, 8, 2), "float32")})

"""kx.ray.Explainer on a local Ray (slow step): equal to analyze after sorting by id."""

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


def test_missing_column_names_the_columns(tmp_path):
    model = helpers.conv_sequential()
    model.save(tmp_path / "model.keras")
    explain = kx.ray.Explainer(tmp_path / "model.keras", "gradient", column="image")
    with pytest.raises(KeyError, match=r"no column 'image'. Received columns: \['id', 'x'\]"):
        explain({"id": np.arange(2), "x": np.zeros((2, 8, 8, 2), "float32")})

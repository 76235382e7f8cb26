"""``keras-explain spray``: the page of SpRAy's clusters, with a concept atlas per cluster."""

import json
import re

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx
from keras_explain import cli


def embedded(path):
    text = open(path, encoding="utf-8").read()
    return json.loads(re.search(r'id="spray-data">(.*?)</script>', text, re.S).group(1))


def test_the_command_writes_the_clusters_spray_finds_with_their_atlases(tmp_path, capsys):
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    model = helpers.randomize(model)
    x = np.abs(helpers.data((12, 12, 3), seed=2, batch=40))
    labels = np.repeat([0, 1], 20)
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=x, y=labels)
    out = tmp_path / "spray.html"
    status = cli.main(
        ["spray", "--model", str(tmp_path / "model.keras"), "--data", str(tmp_path / "data.npz"),
         "--size", "6", "--clusters", "2", "--layer", "conv", "--out", str(out)]
    )  # fmt: skip
    assert status == 0 and f"SpRAy page: {out}" in capsys.readouterr().out
    data = embedded(out)
    maps = kx.create_analyzer("lrp.epsilon_plus_flat", model).analyze(x, labels)
    expected = kx.spray.analyze(maps, labels, size=(6, 6), clusters=2)
    assert [group["label"] for group in data["groups"]] == [0, 1]
    for group in data["groups"]:
        result = expected[group["label"]]
        assert [p[3] for p in group["points"]] == result.indices.tolist()
        assert [p[2] for p in group["points"]] == result.clusters.tolist()
        np.testing.assert_allclose([p[:2] for p in group["points"]], result.embedding, atol=1e-3)
        assert [c["size"] for c in group["clusters"]] == result.sizes.tolist()
        assert all(c["atlas"].startswith("data:image/png;base64,") for c in group["clusters"])
    assert sorted(data["samples"], key=int) == [str(i) for i in range(40)]
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(SystemExit):
        cli.main(["spray", "--model", str(tmp_path / "model.keras"), "--data",
                  str(tmp_path / "bad.npz")])  # fmt: skip
    assert "spray: " in capsys.readouterr().err

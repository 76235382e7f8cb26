"""TracIn's training features as resumable shards: the same scores, resumed, never mixed."""

import json
import os

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def setting(n=40):
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="tanh", name="hidden"),
            keras.layers.Dense(3, name="head"),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    checkpoints = [
        [w + rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()]
        for _ in range(2)
    ]
    return model, x, rng.integers(0, 3, n), checkpoints


@pytest.fixture
def small_passes():
    """A memory budget of a few rows per pass, so the training set spans several shards."""
    previous = kx.config.memory_budget()
    kx.config.set_memory_budget(600)
    yield
    kx.config.set_memory_budget(previous)


@pytest.mark.parametrize("options", [{"layers": ["head"]}, {"projection_dim": 16}])
def test_cached_features_give_the_same_scores(tmp_path, small_passes, options):
    model, x, y, checkpoints = setting()
    common = dict(checkpoints=checkpoints, learning_rates=[0.5, 0.1], loss=LOSS, **options)
    memory = kx.influence.TracIn(model, (x, y), **common)
    cached = kx.influence.TracIn(model, (x, y), cache_dir=tmp_path / "cache", **common)
    assert cached.gradients.rows() < len(x)  # several shards
    np.testing.assert_array_equal(cached.influence(x[:5], y[:5]), memory.influence(x[:5], y[:5]))
    np.testing.assert_array_equal(cached.self_influence(), memory.self_influence())
    again = kx.influence.TracIn(model, (x, y), cache_dir=tmp_path / "cache", **common)
    again.gradients.checked_of = None  # complete: read back, nothing computed
    np.testing.assert_array_equal(again.self_influence(), memory.self_influence())
    manifest = json.loads((tmp_path / "cache" / "checkpoint-0001" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["samples"] == len(x)


def test_a_killed_run_resumes_at_its_first_missing_shard(tmp_path, small_passes):
    model, x, y, checkpoints = setting()
    common = dict(checkpoints=checkpoints[:1], loss=LOSS, cache_dir=tmp_path / "cache")
    first = kx.influence.TracIn(model, (x, y), **common)
    calls = []
    compute = first.gradients.checked_of

    def dies_after_two(x_chunk, y_chunk):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process killed during the third pass
        calls.append(len(y_chunk))
        return compute(x_chunk, y_chunk)

    first.gradients.checked_of = dies_after_two
    with pytest.raises(KeyboardInterrupt):
        first.self_influence()
    shards = sorted(os.listdir(tmp_path / "cache" / "checkpoint-0000"))
    assert "shard-000001-1.npy" in shards and "shard-000002-0.npy" not in shards
    resumed = kx.influence.TracIn(model, (x, y), **common)
    computed = []
    compute = resumed.gradients.checked_of
    resumed.gradients.checked_of = lambda a, b: computed.append(len(b)) or compute(a, b)
    scores = resumed.self_influence()
    assert sum(calls) + sum(computed) == len(x)  # the first two chunks were not computed again
    expected = kx.influence.TracIn(model, (x, y), checkpoints=checkpoints[:1], loss=LOSS)
    np.testing.assert_array_equal(scores, expected.self_influence())


def test_other_settings_and_unwritable_directories_are_refused(tmp_path):
    model, x, y, checkpoints = setting(12)
    cache_dir = tmp_path / "cache"
    kx.influence.TracIn(model, (x, y), loss=LOSS, cache_dir=cache_dir).self_influence()
    other = kx.influence.TracIn(model, (x, y), loss=LOSS, cache_dir=cache_dir, projection_dim=4)
    with pytest.raises(
        ValueError,
        match=r"TracIn: '.*checkpoint-0000' holds the features of other settings; its "
        r"projection_dim was None, this one's is 4. Pass another cache_dir",
    ):
        other.self_influence()
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(
        ValueError, match=r"TracIn: cannot write cache_dir '.*file/cache' \(Not a directory\)"
    ):
        kx.influence.TracIn(model, (x, y), loss=LOSS, cache_dir=tmp_path / "file" / "cache")

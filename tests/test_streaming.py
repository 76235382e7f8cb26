"""kx.explain_dataset / kx.load_explanations: shards equal analyze, resume, bad input.

The reference of every comparison is ``analyzer.analyze(x, batch_size=B)`` on all the
data: the same batches, so the same arithmetic, and results must be exactly equal
(``np.array_equal``), whatever the data's own batching, interruptions or replicas.
"""

import json
import os
import signal
import sys

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

BATCH = 4


def shard_files(out_dir):
    return sorted(name for name in os.listdir(out_dir) if name.startswith("shard-"))


def batches(x, sizes, labels=None):
    """A generator of x (and labels) cut into batches of the given sizes, in order."""
    start = 0
    for size in sizes:
        stop = start + size
        yield x[start:stop] if labels is None else (x[start:stop], labels[start:stop])
        start = stop


@pytest.mark.parametrize(
    "method, params",
    [
        ("gradient", {}),
        ("lrp.epsilon", {}),
        # noise drawn per sample from the seed of its position: shards must pass
        # the position of their first sample, not restart at 0
        (
            "meaningful_perturbation",
            {"deletion": "noise", "steps": 2, "mask_size": 4, "seed": 1},
        ),
    ],
)
def test_array_equals_analyze_in_order(conv, tmp_path, method, params):
    model, x = conv
    expected = kx.create_analyzer(method, model, **params).analyze(x, batch_size=BATCH)
    result = kx.explain_dataset(method, model, x, out_dir=tmp_path, batch_size=BATCH, **params)
    assert isinstance(result, np.memmap) and result.dtype == np.float32
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(kx.load_explanations(tmp_path), expected)
    assert shard_files(tmp_path)[:3] == [
        "shard-000000-0.npy",
        "shard-000000.ids.npy",
        "shard-000001-0.npy",
    ]
    ids = [np.load(tmp_path / f"shard-{k:06d}.ids.npy") for k in range(3)]
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(10))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["method"] == method and manifest["shards"] == [4, 4, 2]
    assert manifest["inputs"] == [{"shape": [8, 8, 2], "dtype": "float32"}]
    assert manifest["model"]["name"] == model.name and manifest["complete"]


def test_meaningful_fixture_depends_on_position(conv):
    # what makes the parametrized case above able to fail: the same samples explained
    # as rows 0.. (first_row 0) differ from the same samples at rows 4..
    model, x = conv
    analyzer = kx.create_analyzer(
        "meaningful_perturbation", model, deletion="noise", steps=2, mask_size=4, seed=1
    )
    whole = analyzer.analyze(x, batch_size=BATCH)
    assert not np.allclose(analyzer.analyze(x[4:8]), whole[4:8])


def test_stream_rebatched_equals_array(conv, tmp_path):
    model, x = conv
    expected = kx.LRPEpsilon(model).analyze(x, batch_size=BATCH)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(3)  # 3, 3, 3, 1 -> 4, 4, 2
    result = kx.explain_dataset(
        "lrp.epsilon", model, dataset, out_dir=tmp_path / "a", batch_size=BATCH
    )
    np.testing.assert_array_equal(result, expected)
    generator = batches(x, [1, 6, 2, 1])
    result = kx.explain_dataset(
        "lrp.epsilon", model, generator, out_dir=tmp_path / "b", batch_size=BATCH
    )
    np.testing.assert_array_equal(result, expected)


def test_targets_labels_and_per_sample(conv, tmp_path):
    model, x = conv
    labels = np.array([2, 0, 1, 1, 0, 2, 2, 1, 0, 1])
    expected = kx.Gradient(model).analyze(x, target=labels, batch_size=BATCH)
    assert not np.allclose(expected, kx.Gradient(model).analyze(x, batch_size=BATCH))
    one_hot = np.eye(3, dtype="float32")[labels]
    dataset = tf.data.Dataset.from_tensor_slices((x, one_hot)).batch(5)
    result = kx.explain_dataset("gradient", model, dataset, out_dir=tmp_path / "a", target="labels")
    np.testing.assert_array_equal(result[:], kx.Gradient(model).analyze(x, target=labels))
    result = kx.explain_dataset(
        "gradient",
        model,
        batches(x, [5, 5], labels),
        out_dir=tmp_path / "b",
        batch_size=BATCH,
        target="labels",
    )
    np.testing.assert_array_equal(result, expected)
    result = kx.explain_dataset(
        "gradient",
        model,
        batches(x, [7, 3]),
        out_dir=tmp_path / "c",
        batch_size=BATCH,
        target=labels,
    )
    np.testing.assert_array_equal(result, expected)


def test_multi_input_returns_a_list(tmp_path, multi_input_model, multi_input_data):
    expected = kx.Gradient(multi_input_model).analyze(multi_input_data, batch_size=3)
    result = kx.explain_dataset(
        "gradient", multi_input_model, multi_input_data, out_dir=tmp_path, batch_size=3
    )
    assert isinstance(result, list) and len(result) == 2
    for got, want in zip(result, expected):
        np.testing.assert_array_equal(got, want)


def test_resume_after_an_exception_keeps_finished_shards(conv, tmp_path):
    model, x = conv

    def interrupted():
        yield from batches(x, [4, 4])
        raise KeyboardInterrupt  # before the last batch

    with pytest.raises(KeyboardInterrupt):
        kx.explain_dataset("lrp.epsilon", model, interrupted(), out_dir=tmp_path, batch_size=BATCH)
    with pytest.raises(ValueError, match=r"not finished \(2 shard\(s\), 8 samples so far\)"):
        kx.load_explanations(tmp_path)
    before = {name: os.stat(tmp_path / name).st_mtime_ns for name in shard_files(tmp_path)}
    assert len(before) == 4
    result = kx.explain_dataset("lrp.epsilon", model, x, out_dir=tmp_path, batch_size=BATCH)
    np.testing.assert_array_equal(result, kx.LRPEpsilon(model).analyze(x, batch_size=BATCH))
    for name, mtime in before.items():  # finished shards are never written again
        assert os.stat(tmp_path / name).st_mtime_ns == mtime
    # a finished run is read back, not recomputed
    merged = os.stat(tmp_path / "explanations-0.npy").st_mtime_ns
    again = kx.explain_dataset("lrp.epsilon", model, x, out_dir=tmp_path, batch_size=BATCH)
    np.testing.assert_array_equal(again, result)
    assert os.stat(tmp_path / "explanations-0.npy").st_mtime_ns == merged


KILLED_RUN = """
import os, signal
import keras, numpy as np
import keras_explain as kx

model = keras.saving.load_model({model!r})
x = np.load({data!r})

def batches():
    for number, start in enumerate(range(0, len(x), 4)):
        if number == 3:  # shards 0, 1, 2 are on disk: a hard kill, no clean-up runs
            print(os.getpid(), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        yield x[start:start + 4]

kx.explain_dataset("smoothgrad", model, batches(), out_dir={out_dir!r}, batch_size=4, samples=3)
"""


def test_resume_after_a_kill_equals_an_uninterrupted_run(conv, tmp_path):
    model, x = conv
    x = np.concatenate([x, x[:4] + 1.0])  # 14 samples: shards of 4, 4, 4, 2
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    out_dir = tmp_path / "out"
    code = KILLED_RUN.format(
        model=str(tmp_path / "model.keras"), data=str(tmp_path / "x.npy"), out_dir=str(out_dir)
    )
    process = helpers.run_python(code)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    finished = shard_files(out_dir)
    assert finished == [f"shard-{k:06d}{end}" for k in range(3) for end in ("-0.npy", ".ids.npy")]
    before = {name: os.stat(out_dir / name).st_mtime_ns for name in finished}
    (out_dir / "shard-000003-0.npy.partial").write_bytes(b"torn write")  # a write cut short
    lock = out_dir / "explain_dataset.lock"
    assert lock.read_text().strip() == process.stdout.strip()  # the dead run's lock

    result = kx.explain_dataset("smoothgrad", model, x, out_dir=out_dir, batch_size=4, samples=3)
    seed = json.loads((out_dir / "manifest.json").read_text())["seed"]
    assert isinstance(seed, int)  # drawn by the killed run and reused by the resumed one
    expected = kx.SmoothGrad(model, samples=3, seed=seed).analyze(x, batch_size=4)
    np.testing.assert_array_equal(result, expected)
    other = kx.SmoothGrad(model, samples=3, seed=seed + 1).analyze(x, batch_size=4)
    assert not np.allclose(other, expected)  # the seed matters on this fixture
    for name, mtime in before.items():
        assert os.stat(out_dir / name).st_mtime_ns == mtime
    assert lock.read_text().strip() == str(os.getpid())  # taken over


HOLDING_RUN = """
import os, time
import keras, numpy as np
import keras_explain as kx

model = keras.saving.load_model({model!r})
x = np.load({data!r})

def batches():
    yield x[:4]
    print(os.getpid(), flush=True)  # the lock is held: tell the test, then hang
    time.sleep(120)
    yield x[4:]

kx.explain_dataset("gradient", model, batches(), out_dir={out_dir!r}, batch_size=4)
"""


SECOND_RUN = """
import keras, numpy as np
import keras_explain as kx

model = keras.saving.load_model({model!r})
kx.explain_dataset("gradient", model, np.load({data!r}), out_dir={out_dir!r}, batch_size=4)
"""


@pytest.mark.slow  # two processes importing TensorFlow: about 30 s on a loaded machine
@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: no lock on Windows")
def test_two_processes_on_one_out_dir(conv, tmp_path):
    """A second process is refused while the first holds out_dir; once the first is
    killed, its stale lock is taken over and the run finishes as if never shared."""
    model, x = conv
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    out_dir = tmp_path / "out"
    paths = {"model": str(tmp_path / "model.keras"), "data": str(tmp_path / "x.npy")}
    first = helpers.start_python(HOLDING_RUN.format(out_dir=str(out_dir), **paths))
    try:
        holder = first.stdout.readline().strip()  # the first run holds the lock now
        assert holder == str(first.pid), "the first run did not reach its second batch"
        second = helpers.run_python(SECOND_RUN.format(out_dir=str(out_dir), **paths))
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == 1
    assert (
        f"RuntimeError: explain_dataset: '{out_dir}' is in use by another explain_dataset run "
        f"(process {first.pid} holds explain_dataset.lock)"
    ) in second.stderr, second.stderr[-2000:]
    assert shard_files(out_dir) == ["shard-000000-0.npy", "shard-000000.ids.npy"]  # the first's

    result = kx.explain_dataset("gradient", model, x, out_dir=out_dir, batch_size=4)
    np.testing.assert_array_equal(result, kx.Gradient(model).analyze(x, batch_size=4))


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: no lock on Windows")
def test_a_second_call_in_the_same_process_is_refused(conv, tmp_path):
    model, x = conv
    error = []

    def batches():
        yield x[:4]
        with pytest.raises(RuntimeError) as raised:  # the outer call holds the lock
            kx.explain_dataset("gradient", model, x, out_dir=tmp_path, batch_size=4)
        error.append(str(raised.value))
        yield x[4:]

    result = kx.explain_dataset("gradient", model, batches(), out_dir=tmp_path, batch_size=4)
    np.testing.assert_array_equal(result, kx.Gradient(model).analyze(x, batch_size=4))
    assert error == [
        f"explain_dataset: '{tmp_path}' is in use by another explain_dataset run (process "
        f"{os.getpid()} holds explain_dataset.lock). Two runs never write one directory: wait "
        "for that run to finish (a call with the same arguments then resumes or reads its "
        "result), or pass another out_dir."
    ]


# -- bad input --------------------------------------------------------------------------
def test_another_run_in_out_dir_is_refused(conv, tmp_path):
    model, x = conv
    kx.explain_dataset("gradient", model, x, out_dir=tmp_path, batch_size=BATCH)
    files = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    with pytest.raises(
        ValueError,
        match=r"holds the shards of another run; its method was 'gradient', this call's is "
        r"'lrp.epsilon'.*never mixed: pass a new out_dir",
    ):
        kx.explain_dataset("lrp.epsilon", model, x, out_dir=tmp_path, batch_size=BATCH)
    with pytest.raises(
        ValueError, match=r"its parameters was \{\}, this call's is \{'postprocess': 'abs'\}"
    ):
        kx.explain_dataset(
            "gradient", model, x, out_dir=tmp_path, batch_size=BATCH, postprocess="abs"
        )
    with pytest.raises(ValueError, match=r"its batch_size was 4, this call's is 5"):
        kx.explain_dataset("gradient", model, x, out_dir=tmp_path, batch_size=5)
    with pytest.raises(ValueError, match=r"its target was None, this call's is 1"):
        kx.explain_dataset("gradient", model, x, out_dir=tmp_path, batch_size=BATCH, target=1)
    changed = keras.models.clone_model(model)
    changed.set_weights([w + 0.5 for w in model.get_weights()])
    with pytest.raises(ValueError, match=r"its model was \{'name': .*'sha256'"):
        kx.explain_dataset("gradient", changed, x, out_dir=tmp_path, batch_size=BATCH)
    assert files == {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}


def test_shapes_changing_mid_stream(conv, tmp_path):
    model, x = conv
    stream = iter([x[:4], x[4:8, :6, :6]])
    with pytest.raises(
        ValueError,
        match=r"element 1 of data has samples of shape \(6, 6, 2\) float32, but the elements "
        r"before had shape \(8, 8, 2\) float32",
    ):
        kx.explain_dataset("gradient", model, stream, out_dir=tmp_path, batch_size=BATCH)
    assert shard_files(tmp_path) == ["shard-000000-0.npy", "shard-000000.ids.npy"]


def test_unwritable_out_dir(conv, tmp_path):
    model, x = conv
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(
        OSError, match=r"cannot create out_dir '.*file/out'.*Pass a writable directory"
    ):
        kx.explain_dataset("gradient", model, x, out_dir=tmp_path / "file" / "out")


def test_full_disk_mid_run_keeps_finished_shards(conv, tmp_path, monkeypatch):
    model, x = conv
    helpers.fail_file_writes_after(monkeypatch, 4)  # ids + explanations of shards 0 and 1
    with pytest.raises(
        OSError,
        match=r"could not write shard 2 to .*No space left on device.*The 2 finished "
        r"shard\(s\) \(8 samples\) are intact.*call again with the same arguments to resume",
    ):
        kx.explain_dataset("gradient", model, x, out_dir=tmp_path, batch_size=BATCH)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    monkeypatch.undo()
    result = kx.explain_dataset("gradient", model, x, out_dir=tmp_path, batch_size=BATCH)
    np.testing.assert_array_equal(result, kx.Gradient(model).analyze(x, batch_size=BATCH))


def test_argument_errors(conv, tmp_path):
    model, x = conv
    with pytest.raises(
        TypeError,
        match=r"parameters go to the analyzer's constructor.*Received: \['steps'\] with Gradient",
    ):
        kx.explain_dataset(kx.Gradient(model), model, x, out_dir=tmp_path, steps=3)
    with pytest.raises(ValueError, match=r'target="labels" reads the y of \(x, y\) elements'):
        kx.explain_dataset("gradient", model, x, out_dir=tmp_path, target="labels")
    with pytest.raises(
        ValueError, match=r"target has 3 per-sample indices but data has 10 samples"
    ):
        kx.explain_dataset(
            "gradient", model, x, out_dir=tmp_path / "t", target=[0, 1, 2], batch_size=3
        )
    with pytest.raises(ValueError, match=r"target has 3 per-sample indices but data has more"):
        kx.explain_dataset(
            "gradient",
            model,
            batches(x, [5, 5]),
            out_dir=tmp_path / "u",
            target=[0, 1, 2],
            batch_size=3,
        )
    with pytest.raises(ValueError, match=r"element 0 of data is not a batch"):
        kx.explain_dataset("gradient", model, iter([np.float32(1.0)]), out_dir=tmp_path / "s")
    with pytest.raises(FileNotFoundError, match=r"holds no manifest.json"):
        kx.load_explanations(tmp_path / "nothing")


def test_analyzer_instance_and_progress_in_samples(conv, tmp_path, capsys):
    model, x = conv
    analyzer = kx.IntegratedGradients(model, steps=4)
    result = kx.explain_dataset(analyzer, model, x, out_dir=tmp_path, batch_size=BATCH, verbose=1)
    np.testing.assert_array_equal(result, analyzer.analyze(x, batch_size=BATCH))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["method"] == "IntegratedGradients" and manifest["parameters"]["steps"] == 4
    err = capsys.readouterr().err
    assert "10/10" in err and "sample/s" in err, err

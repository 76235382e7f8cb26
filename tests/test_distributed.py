"""``strategy=``: each batch split across the replicas of a ``tf.distribute`` strategy, in order."""

import helpers
import pytest

import keras_explain as kx

STRATEGY_RUN = """
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import tempfile
import helpers, numpy as np
import keras_explain as kx

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
devices = set()
run = strategy.run

def recording_run(fn, args=(), kwargs=None, options=None):
    result = run(fn, args=args, kwargs=kwargs, options=options)
    for part in strategy.experimental_local_results(result):
        devices.add(part[0].device)
    return result

strategy.run = recording_run
model = helpers.randomize(helpers.conv_sequential())
x = helpers.data((8, 8, 2), seed=3, batch=9)
for name, params in [
    ("gradient", {}),
    ("lrp.epsilon", {}),
    ("integrated_gradients", {"steps": 6}),
    ("occlusion", {"window": 2}),
    ("smoothgrad", {"samples": 3, "seed": 4}),
]:
    expected = kx.create_analyzer(name, model, **params).analyze(x, batch_size=5)
    result = kx.explain_dataset(
        name, model, x, out_dir=tempfile.mkdtemp(), batch_size=5, strategy=strategy, **params
    )
    np.testing.assert_array_equal(result, expected, err_msg=name)
    print("equal", name)
print("devices", sorted(devices))
"""


def test_strategy_splits_batches_across_two_logical_devices():
    # each batch of 5 (and the last of 4) is cut into one slice per replica; slices of
    # other sizes run the same per-sample arithmetic here, so results are exactly equal
    process = helpers.run_python(STRATEGY_RUN)
    assert process.returncode == 0, process.stderr[-3000:]
    for name in ("gradient", "lrp.epsilon", "integrated_gradients", "occlusion", "smoothgrad"):
        assert f"equal {name}" in process.stdout
    assert "CPU:0'" in process.stdout and "CPU:1'" in process.stdout, process.stdout


def test_strategy_must_be_a_strategy(conv, tmp_path):
    model, x = conv
    with pytest.raises(
        TypeError,
        match=r"strategy must be a tf.distribute.Strategy.*Received: strategy of type str",
    ):
        kx.explain_dataset("gradient", model, x, out_dir=tmp_path / "out", strategy="mirrored")
    assert not (tmp_path / "out").exists()  # refused before anything is written

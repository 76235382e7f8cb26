"""Similarity against numpy on the layer's activations; the Checkpoints callback feeding TracIn."""

import os

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def model_and_data(n=24, seed=0):
    return helpers.hidden_head_classifier(n, seed=seed)


def hidden_of(model, x):
    kernel, bias = model.get_layer("hidden").get_weights()
    return np.maximum(x.astype(np.float64) @ kernel + bias, 0.0)


def test_similarity_measures_equal_numpy():
    model, x, y = model_and_data()
    train, test = hidden_of(model, x), hidden_of(model, x[:5])
    distances = np.linalg.norm(test[:, None] - train[None], axis=2)
    norms = np.linalg.norm(train, axis=1)
    safe = np.where(norms == 0, 1.0, norms)
    cosine = (test / safe[:5, None]) @ (train / safe[:, None]).T
    for measure, expected in [
        ("dot", test @ train.T),
        ("euclidean", -distances),
        ("cosine", cosine),
    ]:
        similar = kx.influence.Similarity(model, (x, y), "hidden", measure=measure)
        np.testing.assert_allclose(similar.influence(x[:5]), expected, rtol=1e-5, atol=1e-6)
    nearest = kx.influence.Similarity(model, x, "hidden", measure="euclidean")
    indices, scores = nearest.proponents(x[:5], k=2)
    np.testing.assert_array_equal(indices[:, 0], np.arange(5))  # each its own nearest
    np.testing.assert_allclose(scores[:, 0], 0.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"Similarity: Unknown measure. Received: measure='l1'"):
        kx.influence.Similarity(model, x, "hidden", measure="l1")


def test_checkpoints_record_weights_and_rates_and_feed_tracin(tmp_path):
    """TracIn over the callback's checkpoints is the rate-weighted sum of one-checkpoint runs."""
    model, x, y = model_and_data(32)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=LOSS)
    memory = kx.callbacks.Checkpoints(every=1)
    files = kx.callbacks.Checkpoints(every=2, path=tmp_path / "weights")
    model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[memory, files])
    # one step per epoch: the rate after epoch e (e steps taken) is 0.5 * 0.5**e
    np.testing.assert_allclose(memory.learning_rates, [0.25, 0.125, 0.0625, 0.03125])
    assert files.checkpoints == [
        os.fspath(tmp_path / "weights" / f"epoch_{e:04d}.weights.h5") for e in (2, 4)
    ]
    np.testing.assert_allclose(files.learning_rates, [0.125, 0.03125])
    for weights, path in zip(memory.checkpoints[1::2], files.checkpoints):
        clone = keras.models.clone_model(model)
        clone.load_weights(path)
        for kept, loaded in zip(weights, clone.get_weights()):
            np.testing.assert_array_equal(kept, loaded)
    tracin = kx.influence.TracIn(model, (x, y), checkpoints=memory, loss=LOSS)
    expected = sum(
        rate
        * kx.influence.TracIn(model, (x, y), checkpoints=[w], loss=LOSS).influence(x[:3], y[:3])
        for w, rate in zip(memory.checkpoints, memory.learning_rates)
    )
    np.testing.assert_allclose(tracin.influence(x[:3], y[:3]), expected, rtol=1e-6)
    from_files = kx.influence.TracIn(model, (x, y), checkpoints=files, loss=LOSS)
    in_memory = kx.influence.TracIn(
        model,
        (x, y),
        checkpoints=memory.checkpoints[1::2],
        learning_rates=[0.125, 0.03125],
        loss=LOSS,
    )
    np.testing.assert_array_equal(
        from_files.influence(x[:3], y[:3]), in_memory.influence(x[:3], y[:3])
    )


def test_checkpoints_fail_before_training_and_warn_after(tmp_path):
    model, x, y = model_and_data(8)
    model.compile(optimizer="sgd", loss=LOSS)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(
        ValueError,
        match=r"Checkpoints cannot write weight files to '.*file/weights': \[Errno 20\] Not a ",
    ):
        model.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[kx.callbacks.Checkpoints(path=blocked / "weights")],
        )
    with pytest.raises(ValueError, match=r"Checkpoints: every must be an int >= 1"):
        kx.callbacks.Checkpoints(every=0)
    record = kx.callbacks.Checkpoints(path=tmp_path / "w")

    def block(epoch, logs):  # after the first epoch the directory becomes a file
        if epoch == 0:
            for name in os.listdir(tmp_path / "w"):
                os.remove(tmp_path / "w" / name)
            os.rmdir(tmp_path / "w")
            (tmp_path / "w").write_text("in the way")

    with pytest.warns(
        RuntimeWarning,
        match=r"Checkpoints could not record the weights of epoch 2; "
        r"training continues",
    ):
        history = model.fit(
            x,
            y,
            epochs=2,
            verbose=0,
            callbacks=[record, keras.callbacks.LambdaCallback(on_epoch_end=block)],
        )
    assert len(history.history["loss"]) == 2  # training went on
    assert len(record.checkpoints) == 1 and record.learning_rates == [pytest.approx(0.01)]

import glob
import os
import sys

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import visualize
from keras_explain.callbacks import ExplanationLogger

layers = keras.layers


def tiny_cnn(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            layers.Conv2D(4, 3, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(3),
        ],
        name="tiny_cnn",
    )
    model.compile(
        keras.optimizers.Adam(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def training_data(seed=0, samples=32):
    generator = np.random.default_rng(seed)
    x = generator.random((samples, 6, 6, 1)).astype("float32")
    y = generator.integers(0, 3, samples)
    return x, y


def read_images(summary_dir):
    """{(tag, step): uint8 array (N, H, W, 3)} decoded from the event files' PNGs."""
    images = {}
    for path in sorted(glob.glob(os.path.join(summary_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "images":
                    continue
                encoded = tf.make_ndarray(value.tensor)[2:]  # width, height, then PNGs
                decoded = [tf.io.decode_png(png).numpy() for png in encoded]
                images[(value.tag, event.step)] = np.stack(decoded)
    return images


def expected_pictures(model, names, x, target=None):
    pictures = {}
    for name in names:
        relevance = kx.create_analyzer(name, model).analyze(x, target)
        pictures[name] = visualize.to_uint8(visualize.overlay(x, relevance))
    return pictures


class Recorder(keras.callbacks.Callback):
    """Computes the expected overlays at every epoch end, with independent analyzers."""

    def __init__(self, names, x, target=None):
        super().__init__()
        self.names, self.x, self.target = names, x, target
        self.expected = {}
        self.epochs_begun = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_begun += 1

    def on_epoch_end(self, epoch, logs=None):
        self.expected[epoch] = expected_pictures(self.model, self.names, self.x, self.target)


def test_logged_pngs_are_the_overlays_of_each_method_and_step(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    shown = x[:4]
    names = ["gradient", "guided_backprop"]
    logger = ExplanationLogger(names, shown, log_dir=tmp_path)
    recorder = Recorder(names, shown)
    tensorboard = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    assert not (tmp_path / "explanations").exists()  # the writer is created lazily
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[tensorboard, recorder, logger])

    assert (tmp_path / "train").is_dir()  # keras' TensorBoard run beside ours
    assert logger.summary_dir == os.path.join(str(tmp_path), "explanations")
    images = read_images(logger.summary_dir)
    assert set(images) == {("input", 0)} | {(n, s) for n in names for s in (0, 1)}
    np.testing.assert_array_equal(images[("input", 0)], visualize.to_uint8(visualize.as_rgb(shown)))
    for step in (0, 1):
        for name in names:
            assert images[(name, step)].shape == (4, 6, 6, 3)
            np.testing.assert_array_equal(images[(name, step)], recorder.expected[step][name])
    # The last step explains the final weights, computed after training.
    final = expected_pictures(model, names, shown)
    for name in names:
        np.testing.assert_array_equal(images[(name, 1)], final[name])
        # The weights changed during training, and the pictures show it.
        assert not np.array_equal(images[(name, 0)], images[(name, 1)])


def test_dict_of_prebuilt_analyzers_explains_live_weights_with_target(tmp_path):
    model = tiny_cnn(seed=1)
    x, y = training_data(seed=1)
    shown, target = x[:3], np.array([0, 1, 2])
    analyzers = {"saliency": kx.Gradient(model), "ixg": kx.InputTimesGradient(model)}
    logger = ExplanationLogger(analyzers, shown, target=target, log_dir=tmp_path, freq=2)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[logger])

    images = read_images(logger.summary_dir)
    assert set(images) == {("input", 0)} | {(t, s) for t in analyzers for s in (0, 2)}
    final = expected_pictures(model, ["gradient", "input_t_gradient"], shown, target)
    np.testing.assert_array_equal(images[("saliency", 2)], final["gradient"])
    np.testing.assert_array_equal(images[("ixg", 2)], final["input_t_gradient"])


def test_overlay_options_are_used(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    options = {"alpha": 0.3, "cmap": "jet", "percentile": 90.0}
    logger = ExplanationLogger(["gradient"], x[:2], log_dir=tmp_path, overlay_options=options)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[logger])
    relevance = kx.Gradient(model).analyze(x[:2])
    expected = visualize.to_uint8(visualize.overlay(x[:2], relevance, **options))
    np.testing.assert_array_equal(read_images(logger.summary_dir)[("gradient", 0)], expected)


@pytest.mark.parametrize(
    "analyzers, shown, match",
    [
        (["gradiant"], np.zeros((2, 6, 6, 1)), r"cannot create analyzer 'gradiant'.*Did you mean"),
        (["gradient"], np.zeros((2, 5, 5, 1)), r"'gradient' fails on x of shape \(2, 5, 5, 1\)"),
        (["gradient"], np.zeros((2, 6, 6, 2)), r"Received: shape \(2, 6, 6, 2\)"),
    ],
)
def test_bad_configuration_fails_before_the_first_epoch(tmp_path, analyzers, shown, match):
    model = tiny_cnn()
    x, y = training_data()
    recorder = Recorder([], x[:1])
    logger = ExplanationLogger(analyzers, shown, log_dir=tmp_path)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[recorder, logger])
    assert recorder.epochs_begun == 0


def test_bad_target_fails_before_the_first_epoch(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    recorder = Recorder([], x[:1])
    logger = ExplanationLogger(["gradient"], x[:2], target=7, log_dir=tmp_path)
    with pytest.raises(ValueError, match=r"target=7.*target index out of range"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[recorder, logger])
    assert recorder.epochs_begun == 0


def test_missing_tensorboard_fails_before_the_first_epoch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    model = tiny_cnn()
    x, y = training_data()
    recorder = Recorder([], x[:1])
    logger = ExplanationLogger(["gradient"], x[:2], log_dir=tmp_path)
    with pytest.raises(ImportError, match=r'pip install "keras-explainer\[tensorboard\]"'):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[recorder, logger])
    assert recorder.epochs_begun == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"freq": 0}, ValueError, r"freq must be an int >= 1.*Received: freq=0"),
        ({"freq": 1.5}, ValueError, r"Received: freq=1.5"),
        ({"freq": True}, ValueError, r"Received: freq=True"),
        ({"analyzers": []}, ValueError, "analyzers is empty"),
        ({"analyzers": "gradient"}, TypeError, "Received: str"),
        ({"analyzers": [kx.Gradient]}, TypeError, "must hold registry names"),
        ({"analyzers": {"g": "gradient"}}, TypeError, r"'g' -> str"),
        ({"x": np.zeros((4, 36))}, ValueError, r"x must be a non-empty batch.*\(4, 36\)"),
    ],
)
def test_bad_arguments_fail_at_construction(tmp_path, kwargs, error, match):
    arguments = {"analyzers": ["gradient"], "x": np.zeros((2, 6, 6, 1)), "log_dir": tmp_path}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        ExplanationLogger(**arguments)


class PoisonWeights(keras.callbacks.Callback):
    """Sets the first kernel to NaN at the start of epoch 1."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.layers[0].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_failure_in_a_later_epoch_warns_and_training_continues(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    logger = ExplanationLogger(["gradient"], x[:2], log_dir=tmp_path)
    with pytest.warns(RuntimeWarning) as caught:
        history = model.fit(
            x, y, epochs=3, batch_size=16, verbose=0, callbacks=[PoisonWeights(), logger]
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any(
        "could not explain 'gradient' at epoch 1; training continues" in m and "NaN" in m
        for m in messages
    )
    assert len(history.history["loss"]) == 3  # training went on
    images = read_images(logger.summary_dir)
    assert set(images) == {("input", 0), ("gradient", 0)}  # epoch 0's data is kept


def test_writer_is_closed_and_reopened_for_a_second_fit(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    logger = ExplanationLogger(["gradient"], x[:2], log_dir=tmp_path)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    model.fit(x, y, epochs=2, initial_epoch=1, verbose=0, callbacks=[logger])
    images = read_images(logger.summary_dir)
    assert {("gradient", 0), ("gradient", 1)} <= set(images)
    np.testing.assert_array_equal(
        images[("gradient", 1)], expected_pictures(model, ["gradient"], x[:2])["gradient"]
    )


def test_a_writer_failure_in_a_later_epoch_warns_and_training_continues(tmp_path, monkeypatch):
    model = tiny_cnn()
    x, y = training_data()
    logger = ExplanationLogger(["gradient"], x[:2], log_dir=tmp_path)

    class BrokenWriter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:

                def fail():
                    raise OSError("disk full")

                monkeypatch.setattr(logger, "_get_writer", fail)

    with pytest.warns(RuntimeWarning, match="could not write the summaries of epoch 1.*disk full"):
        history = model.fit(
            x, y, epochs=2, batch_size=16, verbose=0, callbacks=[BrokenWriter(), logger]
        )
    assert len(history.history["loss"]) == 2
    assert set(read_images(logger.summary_dir)) == {("input", 0), ("gradient", 0)}


# -- EmbeddingLogger --------------------------------------------------------------------
class ActivationRecorder(keras.callbacks.Callback):
    """The flattened activations of a layer at every epoch end, by a hand-cut sub-model."""

    def __init__(self, layer_index, x):
        super().__init__()
        self.layer_index, self.x = layer_index, x
        self.expected = {}

    def on_epoch_end(self, epoch, logs=None):
        layer = self.model.layers[self.layer_index]
        cut = keras.Model(self.model.inputs[0], layer.output)
        self.expected[epoch] = cut(self.x).numpy().reshape(len(self.x), -1)


def read_projector(log_dir):
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    config = projector.ProjectorConfig()
    with open(os.path.join(log_dir, "projector_config.pbtxt")) as handle:
        text_format.Parse(handle.read(), config)
    return {item.tensor_name: item for item in config.embeddings}


def test_embedding_logger_writes_the_layer_activations_of_every_freq_th_epoch(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    conv = model.layers[0]
    recorder = ActivationRecorder(0, x[:10])
    logger = kx.callbacks.EmbeddingLogger(
        conv.name, x[:10], y[:10], tmp_path, freq=2, images=x[:10]
    )
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[recorder, logger])
    embeddings = read_projector(tmp_path)
    assert sorted(embeddings) == [f"{conv.name}_epoch0", f"{conv.name}_epoch2"]
    for epoch in (0, 2):
        item = embeddings[f"{conv.name}_epoch{epoch}"]
        values = np.loadtxt(tmp_path / item.tensor_path, delimiter="\t")
        # the same float32 ops; the TSV keeps every float32 digit
        np.testing.assert_allclose(values, recorder.expected[epoch], rtol=1e-5, atol=1e-6)
        labels = (tmp_path / item.metadata_path).read_text().split()
        assert labels == [str(label) for label in y[:10]]
        assert list(item.sprite.single_image_dim) == [6, 6]
    # the weights moved between the logged epochs, and so did the embedding
    assert not np.allclose(recorder.expected[0], recorder.expected[2])


def test_embedding_logger_bad_layer_fails_before_the_first_epoch(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    recorder = Recorder([], x[:1])
    logger = kx.callbacks.EmbeddingLogger("nope", x[:4], log_dir=tmp_path)
    with pytest.raises(ValueError, match=r"EmbeddingLogger cannot compute.*'nope'.*No layer named"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[recorder, logger])
    assert recorder.epochs_begun == 0


# =====================================================================================
# Training-time metrics: scalars per epoch, equal to the metrics called directly
# =====================================================================================
def read_summaries(summary_dir, plugin, decode):
    """{(tag, step): decode(tensor proto)} of the event files' summaries of ``plugin``."""
    summaries = {}
    for path in sorted(glob.glob(os.path.join(summary_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == plugin:
                    summaries[(value.tag, event.step)] = decode(value.tensor)
    return summaries


def read_scalars(summary_dir):
    """{(tag, step): float} from the event files' scalar summaries."""
    return read_summaries(summary_dir, "scalars", lambda t: float(tf.make_ndarray(t)))


def centre_masks(samples):
    masks = np.zeros((samples, 6, 6), bool)
    masks[:, 2:4, 2:4] = True
    return masks


class MetricRecorder(keras.callbacks.Callback):
    """The metrics at every epoch end, called directly with an independent analyzer."""

    def __init__(self, x, target, masks):
        super().__init__()
        self.x, self.target, self.masks = x, target, masks
        self.expected = {}

    def on_epoch_end(self, epoch, logs=None):
        relevance = kx.Gradient(self.model).analyze(self.x, self.target)
        deletion = kx.metrics.deletion(self.model, self.x, relevance, self.target, steps=36)
        self.expected[epoch] = {
            "gradient/deletion_auc": float(np.mean(deletion.auc)),
            "gradient/pointing_game": float(
                np.mean(kx.metrics.pointing_game(relevance, self.masks))
            ),
            "gradient/total": float(np.mean(relevance.sum(axis=(1, 2, 3)))),
        }


def total(model, x, attributions, target):
    return attributions.sum(axis=(1, 2, 3))


def test_metrics_are_logged_per_epoch_as_the_metrics_called_directly(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    shown, target, masks = x[:4], y[:4], centre_masks(4)
    logger = ExplanationLogger(
        ["gradient"],
        shown,
        target,
        log_dir=tmp_path,
        metrics=["deletion_auc", "pointing_game", total],
        masks=masks,
    )
    recorder = MetricRecorder(shown, target, masks)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[logger, recorder])
    scalars = read_scalars(logger.summary_dir)
    assert set(scalars) == {(tag, epoch) for epoch in range(3) for tag in recorder.expected[0]}
    for epoch, expected in recorder.expected.items():
        for tag, value in expected.items():
            np.testing.assert_allclose(scalars[(tag, epoch)], value, rtol=1e-5, atol=1e-7)
    # the weights changed, so did the deletion AUC: the scalars are not one value repeated
    assert len({scalars[("gradient/deletion_auc", epoch)] for epoch in range(3)}) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"freq": 0}, r"freq must be an int >= 1.*Received: freq=0"),
        ({"labels": [1, 2]}, r"labels must have one entry per sample of x \(4\).*\[2\]"),
        ({"images": np.zeros((3, 6, 6))}, r"images must have one entry per sample of x \(4\)"),
        ({"x": np.zeros((0, 6, 6, 1))}, r"needs a non-empty batch x"),
    ],
)
def test_embedding_logger_bad_arguments_fail_at_construction(tmp_path, kwargs, match):
    arguments = {"layer": "dense", "x": np.zeros((4, 6, 6, 1)), "log_dir": tmp_path}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        kx.callbacks.EmbeddingLogger(**arguments)


class PoisonHead(keras.callbacks.Callback):
    """Sets the Dense head's kernel to NaN at the start of epoch 1 (a ReLU would hide it)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.layers[2].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_embedding_logger_failure_in_a_later_epoch_warns_and_training_continues(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    logger = kx.callbacks.EmbeddingLogger(model.layers[2], x[:6], log_dir=tmp_path)
    with pytest.warns(RuntimeWarning) as caught:
        history = model.fit(
            x, y, epochs=3, batch_size=16, verbose=0, callbacks=[PoisonHead(), logger]
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    for epoch in (1, 2):
        assert any(
            f"could not write the embedding of epoch {epoch}; training continues" in m
            and "NaN" in m
            for m in messages
        )
    assert len(history.history["loss"]) == 3
    assert list(read_projector(tmp_path)) == [f"{model.layers[2].name}_epoch0"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metrics": ["delettion_auc"]}, r"unknown metric. Received: 'delettion_auc'"),
        ({"metrics": ["pointing_game"]}, r"metric 'pointing_game' compares with ground-truth"),
    ],
)
def test_bad_metrics_fail_at_construction(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExplanationLogger(["gradient"], training_data()[0][:2], log_dir=tmp_path, **kwargs)
    with pytest.raises(TypeError, match=r"metrics must be a list of names"):
        ExplanationLogger(["gradient"], training_data()[0][:2], metrics="deletion_auc")


def test_metric_failures_before_training_raise(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    wrong_masks = ExplanationLogger(
        ["gradient"], x[:2], log_dir=tmp_path, metrics=["pointing_game"], masks=np.ones((2, 5, 5))
    )
    with pytest.raises(ValueError, match=r"the metrics \['pointing_game'\] fail for analyzer"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[wrong_masks])
    by_object = ExplanationLogger(
        {"mine": kx.Gradient(model)}, x[:2], log_dir=tmp_path, metrics=["randomization"]
    )
    with pytest.raises(ValueError, match=r"needs its registry name"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[by_object])


def test_metric_failure_in_a_later_epoch_warns_and_training_continues(tmp_path):
    model = tiny_cnn()
    x, y = training_data()
    calls = []

    def flaky(model, x, attributions, target):
        calls.append(1)
        if len(calls) == 3:  # on_train_begin, epoch 0, then epoch 1 fails
            raise RuntimeError("flaky metric")
        return np.ones(len(x))

    logger = ExplanationLogger(["gradient"], x[:2], log_dir=tmp_path, metrics=[flaky])
    with pytest.warns(RuntimeWarning, match=r"could not compute 'flaky' of 'gradient' at epoch 1"):
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[logger])
    assert len(history.history["loss"]) == 3
    assert sorted(read_scalars(logger.summary_dir)) == [
        ("gradient/flaky", 0),
        ("gradient/flaky", 2),
    ]


# -- text models -------------------------------------------------------------------------
def read_texts(summary_dir):
    """{(tag, step): list of str} from the event files' text summaries."""
    return read_summaries(
        summary_dir, "text", lambda t: [s.decode() for s in tf.make_ndarray(t).reshape(-1)]
    )


def test_text_model_logs_token_tables_with_words(tmp_path):
    model, _ = helpers.token_model("conv")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tokens = helpers.padded_tokens()
    vocabulary = [""] + [f"w{i}" for i in range(1, 49)] + ["a|b"]
    tokens[3, 0] = 49  # a word with a Markdown character
    logger = ExplanationLogger(
        ["gradient"], tokens, target=1, log_dir=tmp_path, vocabulary=vocabulary
    )
    model.fit(tokens, np.array([0, 1, 2, 1]), epochs=1, verbose=0, callbacks=[logger])
    texts = read_texts(logger.summary_dir)
    assert set(texts) == {("input", 0), ("gradient", 0)}
    # the sentences without padding, one per sample
    assert texts[("input", 0)][1] == " ".join(vocabulary[i] for i in tokens[1, :3])
    # one table per sample: a row per non-padding token with the score of the weights
    # of the moment (the analyzer runs on the trained model after the epoch)
    expected = kx.Gradient(model).analyze(tokens, 1)
    for row, table in enumerate(texts[("gradient", 0)]):
        lines = table.split("\n")[2:]
        kept = tokens[row] != 0
        assert len(lines) == kept.sum()
        peak = np.abs(expected[row][kept]).max()
        for line, token, score in zip(lines, tokens[row][kept], expected[row][kept]):
            word, value, bar = (cell.strip() for cell in line.strip("|").split(" | "))
            assert word == vocabulary[token].replace("|", "\\|")
            assert float(value) == pytest.approx(score, rel=1e-3, abs=1e-6)
            assert bar.count("█") == int(round(10 * abs(score) / peak))


def test_text_model_without_vocabulary_shows_ids_and_vocabulary_needs_tokens(tmp_path):
    logger = ExplanationLogger(["gradient"], np.array([[3, 7, 0]]), log_dir=tmp_path)
    assert logger.words == [["3", "7", "0"]]
    with pytest.raises(
        ValueError,
        match=r"vocabulary= maps token ids to words and needs x of "
        r"int token ids shaped \(batch, length\)\. Received: x of shape "
        r"\(2, 6, 6, 1\)",
    ):
        ExplanationLogger(["gradient"], np.zeros((2, 6, 6, 1)), log_dir=tmp_path, vocabulary=["a"])
    with pytest.raises(ValueError, match=r"token_strings: token id 5 is outside the vocabulary"):
        ExplanationLogger(["gradient"], np.array([[1, 5]]), log_dir=tmp_path, vocabulary=["", "a"])

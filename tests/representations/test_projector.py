"""TensorBoard's embedding projector: the files parse, other embeddings are kept."""

import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins import projector

from keras_explain import representations as rep


# -- TensorBoard projector -----------------------------------------------------------------
def read_config(log_dir):
    config = projector.ProjectorConfig()
    with open(os.path.join(log_dir, "projector_config.pbtxt")) as handle:
        text_format.Parse(handle.read(), config)
    return config


def test_projector_files_parse(tmp_path):
    values = np.random.default_rng(0).normal(size=(10, 2, 3))
    images = np.random.default_rng(1).random((10, 5, 4, 3))
    rep.write_projector(tmp_path, values, ["cat\tdog", *map(str, range(9))], images, name="h")
    (embedding,) = read_config(tmp_path).embeddings
    assert embedding.tensor_name == "h" and list(embedding.tensor_shape) == [10, 6]
    table = np.loadtxt(tmp_path / embedding.tensor_path, delimiter="\t")
    np.testing.assert_allclose(table, values.reshape(10, 6).astype(np.float32), rtol=1e-6)
    labels = (tmp_path / embedding.metadata_path).read_text().splitlines()
    assert labels == ["cat dog", *map(str, range(9))]  # one column: no header
    sprite = tf.io.decode_png(tf.io.read_file(str(tmp_path / embedding.sprite.image_path)))
    assert tuple(sprite.shape) == (4 * 5, 4 * 4, 3)  # ceil(sqrt(10)) = 4 cells a side
    assert list(embedding.sprite.single_image_dim) == [4, 5]  # width, height
    # the first thumbnail is the first image, min-max scaled
    first = images[0]
    expected = np.round((first - first.min()) / (first.max() - first.min()) * 255)
    np.testing.assert_allclose(sprite.numpy()[:5, :4], expected, atol=1)
    assert sprite.numpy()[-5:, -4:].max() == 0  # cells past the last image stay black


def test_projector_keeps_other_embeddings_and_writes_metadata_columns(tmp_path):
    rep.write_projector(tmp_path, np.ones((3, 2)), name="first")
    columns = {"label": [0, 1, 2], "kind": ["a", "b", "c"]}
    rep.write_projector(tmp_path, np.ones((3, 2)), columns, name="b")
    rep.write_projector(tmp_path, np.zeros((3, 2)), name="first")  # replaced, not doubled
    config = read_config(tmp_path)
    assert [item.tensor_name for item in config.embeddings] == ["b", "first"]
    lines = (tmp_path / "b_metadata.tsv").read_text().splitlines()
    assert lines == ["label\tkind", "0\ta", "1\tb", "2\tc"]
    with pytest.raises(ValueError, match=r"metadata 'label' must have one value per point \(3\)"):
        rep.write_projector(tmp_path, np.ones((3, 2)), [1, 2])
    with pytest.raises(ValueError, match=r"images must be \(3, height, width"):
        rep.write_projector(tmp_path, np.ones((3, 2)), images=np.ones((2, 4, 4)))

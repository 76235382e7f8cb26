"""TensorBoard's embedding projector: the values, metadata and sprite files and the config."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from keras_explain import visualize
from keras_explain.representations import _matrices

PROJECTOR_CONFIG = "projector_config.pbtxt"
#: TensorBoard's limit on the sprite image's width and height.
MAX_SPRITE_SIZE = 8192


def _require_projector():
    try:
        from tensorboard.plugins import projector
    except ImportError as error:
        raise ImportError(
            "write_projector writes TensorBoard projector files and needs the tensorboard "
            'package: pip install "keras-explainer[tensorboard]".'
        ) from error
    return projector


def _cell(value: Any) -> str:
    return " ".join(str(value).split())  # no tabs or newlines inside a TSV cell


def write_metadata(path: str, metadata: Any, count: int) -> None:
    """Write labels as TensorBoard metadata: one column without header, several with one.

    Args:
        path: The file to write.
        metadata: ``(N,)`` labels, or a dict ``{column: (N,) values}``.
        count: N, the number of embedded points.

    Raises:
        ValueError: If a column does not have one value per point.
    """
    columns = dict(metadata) if isinstance(metadata, dict) else {"label": metadata}
    values = {}
    for column, items in columns.items():
        items = list(np.asarray(items).reshape(-1)) if not isinstance(items, list) else items
        if len(items) != count:
            raise ValueError(
                f"write_projector: metadata {column!r} must have one value per point ({count}). "
                f"Received: {len(items)} values."
            )
        values[column] = items
    lines = [] if len(values) == 1 else ["\t".join(_cell(name) for name in values)]
    lines += ["\t".join(_cell(items[row]) for items in values.values()) for row in range(count)]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def write_sprite(path: str, images: Any, count: int) -> tuple[int, int]:
    """Tile images into a square sprite PNG, row-major, as the projector reads it.

    Images are brought to RGB with :func:`keras_explain.visualize.as_rgb`
    (each min-max scaled); empty cells stay black.

    Args:
        path: The PNG file to write.
        images: ``(N, H, W[, C])``.
        count: N, the number of embedded points.

    Returns:
        ``(width, height)`` of one image.

    Raises:
        ValueError: For the wrong number of images, or a sprite over 8192 pixels a side.
    """
    import tensorflow as tf

    pictures = visualize.to_uint8(visualize.as_rgb(np.asarray(images)))
    if pictures.ndim != 4 or len(pictures) != count:
        raise ValueError(
            f"write_projector: images must be ({count}, height, width[, channels]), one per "
            f"point. Received: shape {np.shape(images)}."
        )
    height, width = pictures.shape[1:3]
    side = math.ceil(math.sqrt(count))
    if side * max(height, width) > MAX_SPRITE_SIZE:
        raise ValueError(
            f"write_projector: the sprite of {count} images of {height}x{width} would be "
            f"{side * height}x{side * width} pixels; TensorBoard reads at most "
            f"{MAX_SPRITE_SIZE}x{MAX_SPRITE_SIZE}. Pass smaller thumbnails or fewer points."
        )
    sprite = np.zeros((side * side, height, width, 3), np.uint8)
    sprite[:count] = pictures
    sprite = sprite.reshape(side, side, height, width, 3).transpose(0, 2, 1, 3, 4)
    sprite = sprite.reshape(side * height, side * width, 3)
    tf.io.write_file(path, tf.io.encode_png(sprite))
    return width, height


def write_projector(
    log_dir: str | os.PathLike,
    activations: Any,
    metadata: Any = None,
    images: Any = None,
    *,
    name: str = "activations",
) -> str:
    """Write activations as a TensorBoard Projector embedding.

    Files in ``log_dir``: ``{name}.tsv`` (the values, one row per point,
    flattened), ``{name}_metadata.tsv`` (labels), ``{name}_sprite.png`` (a
    square grid of thumbnails) and ``projector_config.pbtxt``. An existing
    config is kept and the embedding named ``name`` added or replaced, so
    several embeddings (e.g. one per epoch) share a directory. Open with
    ``tensorboard --logdir log_dir``, tab "Projector".

    Args:
        log_dir: The directory (created if needed).
        activations: ``(N, ...)`` values, flattened to ``(N, features)``.
        metadata: Optional ``(N,)`` labels or ``{column: (N,) values}``.
        images: Optional ``(N, H, W[, C])`` thumbnails for the sprite.
        name: The embedding's name (its ``tensor_name``) and file prefix.

    Returns:
        The path of ``projector_config.pbtxt``.

    Raises:
        ValueError: For metadata or images that do not have one entry per
            point, or a sprite too large for TensorBoard.
        ImportError: If tensorboard is not installed.

    Example:
        >>> import tempfile, numpy as np
        >>> from keras_explain import representations
        >>> path = representations.write_projector(tempfile.mkdtemp(), np.ones((3, 4)), [0, 1, 2])
        >>> path.endswith("projector_config.pbtxt")
        True
    """
    projector = _require_projector()
    from google.protobuf import text_format

    values = _matrices.matrix(activations, "activations", "write_projector")
    log_dir = os.fspath(log_dir)
    os.makedirs(log_dir, exist_ok=True)
    count = len(values)
    embedding = projector.EmbeddingInfo(tensor_name=name, tensor_path=f"{name}.tsv")
    embedding.tensor_shape.extend(values.shape)
    if metadata is not None:
        write_metadata(os.path.join(log_dir, f"{name}_metadata.tsv"), metadata, count)
        embedding.metadata_path = f"{name}_metadata.tsv"
    if images is not None:
        width, height = write_sprite(os.path.join(log_dir, f"{name}_sprite.png"), images, count)
        embedding.sprite.image_path = f"{name}_sprite.png"
        embedding.sprite.single_image_dim.extend([width, height])
    np.savetxt(os.path.join(log_dir, f"{name}.tsv"), values.astype(np.float32), delimiter="\t")
    path = os.path.join(log_dir, PROJECTOR_CONFIG)
    config = projector.ProjectorConfig()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            text_format.Parse(handle.read(), config)
    kept = [item for item in config.embeddings if item.tensor_name != name]
    del config.embeddings[:]
    config.embeddings.extend([*kept, embedding])
    projector.visualize_embeddings(log_dir, config)
    return path

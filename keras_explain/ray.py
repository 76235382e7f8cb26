"""Explain a Ray Data dataset on many machines: :class:`Explainer` for ``map_batches``.

:class:`TracInFeatures` computes the projected training gradients of
:class:`keras_explain.influence.TracIn` the same way, for a training set too large
for one machine.

Ray is optional: ``pip install "keras-explainer[ray]"``. This module imports nothing
from Ray; Ray calls :class:`Explainer` (a callable class) in its actors::

    import ray
    import keras_explain as kx

    explained = dataset.map_batches(
        kx.ray.Explainer,
        fn_constructor_kwargs={"method": "lrp.epsilon", "model_path": "model.keras"},
        concurrency=4,  # actors; add num_gpus=1 to give each a GPU
        batch_size=256,
    )

Each actor loads the ``.keras`` file once (the model is never pickled) and explains
the batches of its blocks. An actor process that dies mid-run is restarted and its
batches are run again given ``max_restarts=-1, max_task_retries=-1`` in
``map_batches`` (Ray Data's defaults; see the guide's *Whole datasets* page).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from keras_explain import _validate


class Explainer:
    """A callable class for ``ray.data.Dataset.map_batches``: adds an explanation column.

    Args:
        method: An analyzer registry name, e.g. ``"lrp.epsilon"``. The method
            comes first, as in ``create_analyzer(name, model)``; the former order
            ``Explainer(model_path, method)`` still works, with a ``FutureWarning``.
        model_path: Path of a ``.keras`` file readable by every worker (a shared
            file system or object store path that ``keras.saving.load_model``
            reads).
        column: The column holding the model input (default ``"x"``); a list of
            columns for a multi-input model.
        output_column: The column the explanations are written to (default
            ``"explanation"``; ``"explanation_1"``, ... for the other inputs of a
            multi-input model).
        target_column: A column of per-sample target indices (e.g. the labels),
            or None for the analyzer's default target (each sample's top class).
        id_column: A column of consecutive integer sample positions (default
            ``"id"``, if present). Seeds are keyed by it, so stochastic methods
            give each sample the noise ``analyze`` gives its position.
        **params: The analyzer's parameters (``verbose`` defaults to 0).

    Returns:
        Calling it on a batch (a dict of numpy columns) returns the batch with
        the explanation column added; every other column (an ``id``) is passed
        through, so the order of the data is recoverable.

    Raises:
        KeyError: If a batch has no ``column`` (the message lists its columns).

    Example:
        >>> import os, tempfile, keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
        >>> model.save(path)
        >>> explain = kx.ray.Explainer("gradient", path)  # what each Ray actor builds
        >>> batch = {"id": np.arange(2), "x": np.ones((2, 4), "float32")}
        >>> sorted(explain(batch)), explain(batch)["explanation"].shape
        (['explanation', 'id', 'x'], (2, 4))
    """

    def __init__(
        self,
        method: str,
        model_path: str | os.PathLike,
        *,
        column: str | list[str] = "x",
        output_column: str = "explanation",
        target_column: str | None = None,
        id_column: str = "id",
        **params: Any,
    ):
        import keras

        from keras_explain.analyzers.registry import create_analyzer, names

        if model_path in names() and method not in names():
            warnings.warn(
                "Explainer: the method now comes first, Explainer(method, model_path), as "
                "in create_analyzer(name, model); the former order (model_path, method) "
                "still works in this release and will be removed in the next one.",
                FutureWarning,
                stacklevel=2,
            )
            method, model_path = model_path, method
        self.model_path = os.fspath(model_path)
        self.method = method
        self.column = column
        self.output_column = output_column
        self.target_column = target_column
        self.id_column = id_column
        self.model = keras.saving.load_model(self.model_path, compile=False)
        self.analyzer = create_analyzer(method, self.model, **{"verbose": 0, **params})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Explain one batch: ``batch`` with the explanation column(s) added."""
        columns = self.column if isinstance(self.column, list) else [self.column]
        for name in [*columns, *([self.target_column] if self.target_column else [])]:
            if name not in batch:
                raise KeyError(
                    f"Explainer: the batch has no column {name!r}. Received columns: "
                    f"{sorted(batch)}. Pass column= (or target_column=) to name it."
                )
        inputs = [
            np.stack(batch[name]) if batch[name].dtype == object else batch[name]
            for name in columns
        ]
        target = None if self.target_column is None else np.asarray(batch[self.target_column])
        result = self.analyzer.analyze_part(
            inputs if len(inputs) > 1 else inputs[0], target, first_row=self._first_row(batch)
        )
        results = result if isinstance(result, list) else [result]
        names = [self.output_column] + [f"{self.output_column}_{i}" for i in range(1, len(results))]
        return {**batch, **dict(zip(names, results))}

    def _first_row(self, batch) -> int:
        """The position of the batch's first sample, if the ids are consecutive ints."""
        ids = batch.get(self.id_column)
        if ids is None or not np.issubdtype(np.asarray(ids).dtype, np.integer) or len(ids) == 0:
            return 0
        ids = np.asarray(ids)
        consecutive = np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids)))
        return int(ids[0]) if consecutive else 0


class TracInFeatures:
    """A callable class for ``map_batches``: a training set's projected TracIn gradients.

    Each actor loads the model and, per batch, computes every example's loss gradient
    at every checkpoint, projected to ``projection_dim`` with the seeded projection
    of :class:`~keras_explain.influence.TracIn`. Collected in the order of the data,
    the columns are ``TracIn``'s ``train_features``::

        computed = dataset.map_batches(
            kx.ray.TracInFeatures,
            fn_constructor_kwargs={"model_path": "model.keras",
                                   "checkpoints": ["e1.weights.h5", "e5.weights.h5"],
                                   "loss": "sparse_categorical_crossentropy",
                                   "layers": ["head"], "projection_dim": 256},
            concurrency=4, batch_size=512,
        ).sort("id")
        features = np.concatenate([b["tracin_features"] for b in computed.iter_batches(
            batch_size=None, batch_format="numpy")])      # and "tracin_squared_norms"
        tracin = kx.influence.TracIn(model, (x, y), checkpoints=[...], loss=..., layers=["head"],
                                     projection_dim=256, train_features=(features, norms))

    Args:
        model_path: A ``.keras`` file every worker reads.
        checkpoints: ``.weights.h5`` paths (or weight lists) of the model, in
            ``TracIn``'s order; None: the saved model's weights.
        loss: The training loss, as ``TracIn``'s ``loss`` (a name or a
            ``keras.losses.Loss``; it is pickled to the actors).
        layers: The layers whose weights the gradients cover, as ``TracIn``'s.
        projection_dim: The projection's dimension (required: the exact gradients
            of a large training set do not fit anywhere).
        seed: The projection's seed, as ``TracIn``'s.
        column: The column of model inputs.
        label_column: The column of labels.

    Returns:
        Calling it on a batch returns the batch with ``"tracin_features"``
        ``(B, n_checkpoints, projection_dim)`` float32 and
        ``"tracin_squared_norms"`` ``(B, n_checkpoints)`` (the exact ``||g||²``).

    Raises:
        KeyError: If a batch has no ``column`` or ``label_column``.
        ValueError: For ``projection_dim=None``, and as ``TracIn``.

    Example:
        >>> import os, tempfile, keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="head")])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
        >>> model.save(path)
        >>> compute = kx.ray.TracInFeatures(path, loss="sparse_categorical_crossentropy",
        ...                                 projection_dim=8)
        >>> batch = {"x": np.ones((2, 4), "float32"), "y": np.array([0, 2])}
        >>> compute(batch)["tracin_features"].shape
        (2, 1, 8)
    """

    owner = "TracInFeatures"

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        checkpoints: Any = None,
        loss: Any = None,
        layers: Any = None,
        projection_dim: int | None = None,
        seed: int = 0,
        column: str = "x",
        label_column: str = "y",
    ):
        import keras

        from keras_explain.influence import engine

        if projection_dim is None:
            raise ValueError(
                f"{self.owner} needs projection_dim (e.g. 256): the exact gradients of a "
                "training set this large would not fit. Received: projection_dim=None."
            )
        self.engine = engine
        self.column, self.label_column = column, label_column
        model = keras.saving.load_model(os.fspath(model_path), compile=False)
        self.checkpoints = engine.checkpoints_of(model, checkpoints, None, self.owner)
        chosen = engine.chosen_layers(model, layers, self.owner)
        projection_dim = engine.checked(
            self.owner, _validate.positive_int, projection_dim, "projection_dim"
        )
        self.gradients = engine.GradientFeatures(
            model, engine.per_example_loss(loss, model, self.owner), chosen, projection_dim, seed
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batch ``batch``'s projected gradients at every checkpoint, added as columns."""
        for name in (self.column, self.label_column):
            if name not in batch:
                raise KeyError(
                    f"{self.owner}: the batch has no column {name!r}. Received columns: "
                    f"{sorted(batch)}. Pass column= (or label_column=) to name it."
                )
        x = batch[self.column]
        x = np.stack(x) if x.dtype == object else x
        y = np.asarray(batch[self.label_column])
        features = self.engine.checkpoint_features(self.gradients, self.checkpoints, x, y)
        return {
            **batch,
            "tracin_features": np.stack([f.full for f in features], axis=1),
            "tracin_squared_norms": np.stack([f.squared_norms for f in features], axis=1),
        }

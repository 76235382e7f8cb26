"""Explain a Ray Data dataset on many machines: :class:`Explainer` for ``map_batches``.

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

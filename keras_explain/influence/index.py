"""Proponents among millions of training examples: an approximate nearest-neighbour index.

TracIn's score with projected gradients is one inner product: with
``e(z) = [sqrt(η_1) g_1(z) R, ..., sqrt(η_C) g_C(z) R]`` (every checkpoint's
projection, scaled by the square root of its learning rate, side by side),
``TracIn(z, z') = e(z) · e(z')``. Proponents are a maximum-inner-product search
and opponents the same search for ``-e(z')``. :class:`NearestIndex` runs it on
faiss' HNSW graph (``faiss.IndexHNSWFlat`` with the inner product as its measure;
Malkov & Yashunin 2018, "Efficient and robust approximate nearest neighbor search
using Hierarchical Navigable Small World graphs"). Lifting the rows onto a sphere
to search Euclidean distances instead (Bachrach et al. 2014) was measured worse on
TracIn's projections: recall 0.93 against 1.00 for the same graph and breadth,
since a few large gradients (the examples TracIn cares about) set the radius.

Why faiss: it builds and searches float32 vectors on every core (OpenMP), supports
the inner product in its HNSW graph (no lifting), and installs from a binary wheel
(``faiss-cpu``, no compiler). scikit-learn has no approximate search (its trees fall back to a scan
beyond a few dozen dimensions, and a projection has hundreds); hnswlib and annoy
ship as sources to compile here; pynndescent brings numba. faiss is optional
(``pip install "keras-explainer[influence]"``); without it the exact blocked
product of :meth:`~keras_explain.influence.engine.Features.dot` is used.

The index is asked for ``4 k`` candidates, which are re-ranked by their exact inner
products, and the best ``k`` returned with those exact scores. It may still miss a
true neighbour (recall below 1, measured in the tests and in
``benchmarks/bench_influence.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Neighbours per node of the HNSW graph (faiss' ``M``).
GRAPH_DEGREE = 32
#: Candidates kept while the graph is built (faiss' ``efConstruction``).
BUILD_BREADTH = 200
#: Candidates kept per query, at least (faiss' ``efSearch``); ``4 k`` when larger.
SEARCH_BREADTH = 128
#: Candidates fetched per neighbour asked for, re-ranked by their exact scores.
CANDIDATES = 4
#: Training rows added to the index per block (memory-mapped features).
ADD_BLOCK = 2**16


def faiss_module(owner: str) -> Any:
    """The ``faiss`` module.

    Raises:
        ImportError: When faiss is not installed, with the install command.
    """
    try:
        import faiss
    except ImportError:
        raise ImportError(
            f'{owner}: index="hnsw" needs faiss. Install it with pip install '
            '"keras-explainer[influence]" (or pip install faiss-cpu), or pass index=None '
            "for the exact search."
        ) from None
    return faiss


class NearestIndex:
    """Maximum-inner-product search over the rows of an embedding.

    Args:
        rows: A callable ``rows(start, stop) -> (m, d)`` reading the training
            embedding in blocks (it may be memory-mapped), and its size.
        size: The number of training rows.
        dimension: ``d``.
        owner: The class name, for error messages.

    Raises:
        ImportError: When faiss is not installed.
    """

    def __init__(self, rows: Any, size: int, dimension: int, owner: str):
        faiss = faiss_module(owner)
        self.rows = rows
        self.size = size
        self.index = faiss.IndexHNSWFlat(dimension, GRAPH_DEGREE, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = BUILD_BREADTH
        for start in range(0, size, ADD_BLOCK):
            self.index.add(np.ascontiguousarray(rows(start, start + ADD_BLOCK), np.float32))

    def search(self, queries: np.ndarray, k: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)`` ``(n, k)`` of the largest (or smallest) inner products.

        Args:
            queries: ``(n, d)`` query embeddings.
            k: Neighbours per query.
            largest: True for proponents, False for opponents (``-q`` searched).

        Returns:
            The indices found and their exact inner products, highest first for
            proponents and lowest first for opponents.
        """
        signed = np.asarray(queries, np.float64) * (1.0 if largest else -1.0)
        candidates = min(self.size, CANDIDATES * k)
        self.index.hnsw.efSearch = max(SEARCH_BREADTH, candidates)
        _, found = self.index.search(np.ascontiguousarray(signed, np.float32), candidates)
        scores = np.stack(
            [self.rows_at(row) @ np.asarray(q, np.float64) for row, q in zip(found, queries)]
        )
        order = np.argsort(-scores if largest else scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(found, order, 1), np.take_along_axis(scores, order, 1)

    def rows_at(self, indices: np.ndarray) -> np.ndarray:
        """The training embedding's rows at ``indices`` (in that order), float64."""
        return np.stack([np.asarray(self.rows(int(i), int(i) + 1)[0], np.float64) for i in indices])

"""Split each batch across the replicas of a ``tf.distribute`` strategy, keep the order.

:func:`batch_runner` gives :meth:`Analyzer.analyze_part
<keras_explain.analyzers.base.Analyzer.analyze_part>` (``strategy=``) a
``run_batch`` that cuts a batch into one contiguous slice per replica, prepares
each slice's compiled function on the host with :meth:`Analyzer.prepare_batch
<keras_explain.analyzers.base.Analyzer.prepare_batch>` (tracing happens once per
slice shape, in the calling thread), and runs them with ``strategy.run``: under
``MirroredStrategy`` each replica calls its function in its own thread, on its own
device. The slices come back with ``strategy.experimental_local_results`` in replica order and are
concatenated, so results keep the order of the batch. Every slice is seeded with
its first sample's position (``first_row``), and all randomness of the library is
keyed by sample or by copy (:mod:`keras_explain.random`), so stochastic methods
give the same result whatever the number of replicas.

The model's variables are not mirrored: each replica reads them from where they
live (TensorFlow copies them to the replica's device). Analyzers that run on the
host (``Analyzer.compiled`` False: LIME, KernelSHAP, numpy callables) run their
batch as without a strategy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf


def batch_runner(analyzer, strategy: tf.distribute.Strategy) -> Callable:
    """``run_batch(batch, target, first_row)`` that splits the batch across replicas.

    Args:
        analyzer: The analyzer whose compiled function runs on each replica.
        strategy: A ``tf.distribute.Strategy`` with ``num_replicas_in_sync``
            replicas.

    Returns:
        ``run_batch(batch, target, first_row)``: float32 numpy results of one
        standardized batch, as :meth:`Analyzer.prepare_batch` describes them.

    Raises:
        TypeError: If ``strategy`` is not a ``tf.distribute.Strategy``.
    """
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            "strategy must be a tf.distribute.Strategy, e.g. tf.distribute.MirroredStrategy(). "
            f"Received: strategy of type {type(strategy).__name__}."
        )
    replicas = strategy.num_replicas_in_sync

    def run_batch(batch, target, first_row):
        size = int(batch[0].shape[0])
        if not analyzer.compiled or replicas == 1 or size < replicas:
            function, args = analyzer.prepare_batch(batch, target, first_row)
            return [np.asarray(result, np.float32) for result in function(*args)]
        bounds = np.linspace(0, size, replicas + 1).round().astype(int)
        prepared = {}  # slice size -> its function (one trace per shape)
        arguments = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            piece = [item[start:stop] for item in batch]
            function, args = analyzer.prepare_batch(
                piece, target.for_rows(start, stop), first_row + int(start)
            )
            prepared[stop - start] = function
            arguments.append(args)
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda context: arguments[context.replica_id_in_sync_group]
        )

        def replica(args):
            return prepared[int(args[0][0].shape[0])](*args)

        logger = tf.get_logger()
        level = logger.level
        # Eager MirroredStrategy warns of its overhead at every call; each replica only
        # calls an already-compiled function, which is what the warning recommends.
        logger.setLevel("ERROR")
        try:
            outputs = strategy.run(replica, args=(per_replica,))
        finally:
            logger.setLevel(level)
        outputs = strategy.experimental_local_results(outputs)
        return [
            np.concatenate([np.asarray(part[index], np.float32) for part in outputs], axis=0)
            for index in range(len(outputs[0]))
        ]

    return run_batch

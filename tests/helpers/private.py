"""Private accessors: the only code that touches keras_explain's private modules and
attributes. The refactor re-points these functions; tests call nothing private.
"""

from __future__ import annotations

import keras
import tensorflow as tf

import keras_explain as kx


def plan_of(model):
    """The analysis-time plan (flat step list) of a graph model."""
    return kx.graph.Plan(model)


def first_step(model):
    """The first engine step of a model (a one-layer model's linear op)."""
    return plan_of(model).steps[0]


def marked_step(step, **flags):
    """A copy of an engine step with flags changed (``first_linear``, ``nonnegative``)."""
    return step.replace(**flags)


def program_output(model, x):
    """The model re-executed with every recurrent and attention layer run by its program.

    Each step with an ``op.inner`` program runs it with its primitive ops unchanged,
    the others run their op; returns the first output as numpy.
    """
    plan = plan_of(model)

    def run(inputs):
        values = dict(zip(plan.input_keys, inputs))
        for step in plan.steps:
            tensors = [values[key] for key in step.inputs]
            if step.op.inner is not None:
                values[step.outputs[0]] = step.op.inner.run(tensors)
            else:
                result = step.op.forward(*tensors)
                if len(step.outputs) == 1:
                    values[step.outputs[0]] = result
                else:
                    values.update(zip(step.outputs, keras.tree.flatten(result)))
        return values[plan.output_keys[0]]

    return tf.function(run)([tf.constant(x)]).numpy()


def program_kinds(model):
    """``{layer name: op kind}`` of the steps that have a program."""
    return {s.op.name: s.op.kind for s in plan_of(model).steps if s.op.inner is not None}


def analyzer_steps(analyzer):
    """The (canonized) engine steps an analyzer runs."""
    return analyzer.plan.steps


def step_output(analyzer, x, step):
    """The value ``step`` computes when the analyzer's (canonized) plan runs on ``x``."""
    values = analyzer.plan.run([tf.constant(x)], targets=step.outputs)
    return values[step.outputs[0]].numpy()


def tracing_counts(analyzer):
    """How often each of an analyzer's compiled functions has been traced, by target kind."""
    return {key: f.experimental_get_tracing_count() for key, f in analyzer._functions.items()}


def noisy_copies(analyzer, x, seed, first_row=0):
    """The noisy copies a SmoothGrad-style analyzer draws for ``x`` at ``seed``: (K, B, ...).

    ``x`` may be a list (multi-input model); then a list of copies is returned.
    """
    seed_tensor = tf.constant([seed, first_row], tf.int64)
    inputs = x if isinstance(x, list) else [x]
    copies = analyzer.noisy_copies([tf.constant(item) for item in inputs], seed_tensor)
    copies = [copy.numpy() for copy in copies]
    return copies if isinstance(x, list) else copies[0]


def register_temporarily(monkeypatch, name, cls):
    """Register ``cls`` under ``name`` in the analyzer registry for one test."""
    from keras_explain.analyzers import registry

    monkeypatch.setitem(registry._REGISTRY, name, cls)


def fail_file_writes_after(monkeypatch, count, error=None):
    """Make explain_dataset's file writes raise ``error`` (a full disk) after ``count`` succeed."""
    import errno

    from keras_explain import _shards

    error = error or OSError(errno.ENOSPC, "No space left on device")
    original = _shards.save_array
    calls = {"count": 0}

    def save_array(path, array):
        calls["count"] += 1
        if calls["count"] > count:
            raise error
        original(path, array)

    monkeypatch.setattr(_shards, "save_array", save_array)


def fail_fsync(monkeypatch, error=None):
    """Make the atomic writer's fsync raise ``error`` (a full disk) once the file is written."""
    import errno

    from keras_explain import _shards

    error = error or OSError(errno.ENOSPC, "No space left on device")

    def fsync(descriptor):
        raise error

    monkeypatch.setattr(_shards.os, "fsync", fsync)


def node_counts(layer):
    """The numbers of inbound and outbound nodes of a layer and of its sublayers."""
    return [
        (len(item._inbound_nodes), len(item._outbound_nodes))
        for item in [layer, *layer._flatten_layers(include_self=False)]
    ]


def assigned_rules(analyzer):
    """``{op name: repr(rule)}`` of every op an LRP analyzer has a rule for (run-time ones too)."""
    return {op.name: repr(rule) for op, rule in analyzer._rules.items()}

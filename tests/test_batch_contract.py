"""The analyzer contract's public parts: parts of a larger input, the copy loop, bindings.

Expected values come from plain ``analyze`` calls on the whole input (the parts must
equal them exactly) or from literal arithmetic, never from the code under test.
"""

import ast
import pathlib

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import _batching

PACKAGE = pathlib.Path(kx.__file__).parent


def _per_sample_noise(model):
    """An analyzer whose randomness is drawn per sample (from the seeds of its position)."""
    return kx.MeaningfulPerturbation(model, steps=3, mask_size=4, deletion="noise", seed=3)


def test_parts_with_their_first_rows_equal_one_call_on_the_whole():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=5)
    analyzer = _per_sample_noise(model)
    whole = analyzer.analyze(x)
    parts = [analyzer.analyze_part(x[i : i + 2], first_row=i) for i in (0, 2, 4)]
    # equal up to the float arithmetic of other batch sizes (oneDNN kernels)
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)
    # a part seeded as if it started the input is another draw
    other = analyzer.analyze_part(x[2:4], first_row=0)
    assert np.abs(other - whole[2:4]).max() > 1e-2


def test_a_dataset_is_seeded_by_position_like_the_array_it_holds():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=5)
    analyzer = _per_sample_noise(model)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(2)
    np.testing.assert_allclose(analyzer.analyze(dataset), analyzer.analyze(x), rtol=1e-5, atol=1e-6)


def test_analyze_part_refuses_a_batch_shaped_baseline():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), batch=3)
    analyzer = kx.IntegratedGradients(model, steps=4, baseline=np.zeros((3, 6), "float32"))
    analyzer.analyze(x)  # the whole batch in one call: accepted
    with pytest.raises(ValueError, match="A batch-shaped baseline needs the whole batch"):
        analyzer.analyze_part(x, first_row=3)


def test_no_global_random_state_is_read_or_changed():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=2)
    numpy_state = np.random.get_state()
    python_state = __import__("random").getstate()
    kx.SmoothGrad(model, samples=4).analyze(x)  # no seed: a fresh one per call
    kx.Occlusion(model, window=4).analyze(x)
    after = np.random.get_state()
    assert numpy_state[0] == after[0] and np.array_equal(numpy_state[1], after[1])
    assert numpy_state[2:] == after[2:]
    assert python_state == __import__("random").getstate()


def test_fresh_seeds_differ_between_calls_without_a_seed():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=2)
    analyzer = kx.SmoothGrad(model, samples=4)
    assert not np.allclose(analyzer.analyze(x), analyzer.analyze(x))


def test_a_wrapper_binds_the_analyzer_it_wraps():
    model = helpers.dense_sequential()
    inner = kx.LRPEpsilon(model, output_layer=model.layers[0])
    tunnel = kx.NoiseTunnel(inner, samples=2)
    for name in ("model", "plan", "output_key", "output_layer", "strip_softmax"):
        assert getattr(tunnel, name) is getattr(inner, name)
        assert name not in vars(tunnel)  # read through, never copied
    assert tunnel.backward_memory_factor == inner.backward_memory_factor == 1.1


@pytest.mark.parametrize(
    "build, compiled",
    [
        (lambda m, f: kx.Gradient(m), True),
        (lambda m, f: kx.Occlusion(m, window=2), True),
        (lambda m, f: kx.Occlusion(f, window=2), False),
        (lambda m, f: kx.MeaningfulPerturbation(f, steps=2), True),
        (lambda m, f: kx.KernelShap(m, samples=8), False),
    ],
)
def test_where_an_analyzer_runs(build, compiled):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    analyzer = build(model, lambda x: x[:, :2])
    assert analyzer.compiled is compiled
    assert analyzer.host_model() is (not compiled and not isinstance(analyzer.model, keras.Model))


def test_predict_is_the_explained_output_for_models_and_callables():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, activation="softmax", use_bias=False)]
    )
    model.set_weights([np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]], "float32")])
    x = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0], [2.0, 0.0, 0.0]], "float32")
    logits = np.array([[4.0, 1.0], [-1.0, 3.0], [2.0, 0.0]], "float32")  # x @ W by hand
    kx.config.set_memory_budget(1)  # one row per pass
    try:
        np.testing.assert_allclose(kx.Gradient(model).predict(x), logits, rtol=1e-6)
        np.testing.assert_allclose(
            kx.Occlusion(lambda rows: rows @ [[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]).predict(x),
            logits,
            rtol=1e-6,
        )
    finally:
        kx.config.set_memory_budget(None)
    assert kx.Gradient(model).resolve_target(x).tolist() == [0, 1, 0]
    assert kx.Gradient(model).resolve_target(x, 1) == 1


def test_the_copy_loop_keeps_or_accumulates_the_same_values():
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])

    def make(start, size):
        scale = tf.cast(tf.range(start, start + size), tf.float32)[:, None, None]
        return [_batching.copies(x, size) * (1.0 + scale)], None

    def evaluate(flat, size):
        return [tf.reduce_sum(flat[0], axis=1)]

    expected = np.array([[(1 + k) * 3.0, (1 + k) * 7.0] for k in range(5)], "float32")
    for per_pass in (1, 2, 5, 7):
        kept = _batching.run_copies(5, per_pass, make, evaluate)
        np.testing.assert_array_equal(kept, expected)
        total = _batching.run_copies(
            5,
            per_pass,
            make,
            evaluate,
            lambda acc, v, aux, s, n: acc + tf.reduce_sum(v[0], 0),
            tf.zeros(()),
        )
        np.testing.assert_array_equal(total, expected.sum(axis=0))
    np.testing.assert_array_equal(_batching.repeat(tf.constant([7, 8]), 3), [7, 8, 7, 8, 7, 8])


def _private_reads(path: pathlib.Path) -> list[str]:
    """Reads ``obj._name`` of a private name the module itself does not define.

    ``self``, ``cls`` and ``super()`` are always the module's own; any other owner
    may read a private name only if the module defines it (a method or an assigned
    attribute of one of its classes).
    """
    tree = ast.parse(path.read_text())
    own = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    own |= {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        owner = node.value
        if node.attr.startswith("__") or node.attr in own:
            continue
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
            continue
        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: .{node.attr}")
    return found


def _is_module(package: str, name: str) -> bool:
    folder = PACKAGE.parent / package.replace(".", "/")
    return (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()


def test_no_module_reads_another_modules_private_names():
    # _graph.py is the one module that reads private Keras attributes
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "_graph.py"]
    reads = [read for path in modules for read in _private_reads(path)]
    assert reads == []
    imports = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_explain"):
                # a private module (keras_explain._validate) may be imported, a private name not
                imports += [
                    f"{path.name}: from {node.module} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                    and not alias.name.startswith("__")
                    and not _is_module(node.module, alias.name)
                ]
    assert imports == []


def _top_level_imports(path: pathlib.Path) -> set[str]:
    """The keras_explain modules a file imports at its top level (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_explain"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                module = full if _module_path(full) else node.module
                found.add(module.removeprefix("keras_explain").lstrip("."))
    return found - {""}


def _module_path(name: str) -> pathlib.Path | None:
    parts = name.removeprefix("keras_explain").lstrip(".").split(".")
    base = PACKAGE.joinpath(*parts) if parts != [""] else PACKAGE
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_the_dependency_order_of_the_architecture_page_holds():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    block = page.split(":name: dependency-order\n\n", 1)[1].split("```", 1)[0]
    level = {}
    for line in block.strip().splitlines():
        number, names = line.split(".", 1)
        level.update({name: int(number) for name in names.split()})
    modules = {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for path in PACKAGE.rglob("*.py")
    }
    aggregators = {m for m in modules if m not in level}  # packages re-exporting modules
    assert aggregators == {
        "__init__",
        "analyzers",
        "analyzers.perturbation",
        "features",
        "lrp",
        "metrics",
        "representations",
        "visualize",
    }
    assert set(level) <= modules, sorted(set(level) - modules)

    def rank(name):  # an aggregator ranks as its highest module
        if name in level:
            return level[name]
        return max(level[m] for m in level if m.startswith(name + "."))

    wrong = [
        f"{module} (line {level[module]}) imports {dependency} (line {rank(dependency)})"
        for module in level
        for dependency in _top_level_imports(_module_path(module))
        if dependency != module and rank(dependency) >= level[module]
    ]
    assert wrong == []

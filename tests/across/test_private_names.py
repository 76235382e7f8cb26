"""No module of the package reads another module's private names (_graph.py excepted)."""

import ast
import pathlib

import keras_explain as kx

PACKAGE = pathlib.Path(kx.__file__).parent


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

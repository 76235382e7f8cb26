"""The package's architecture holds: no module reads another module's private names
(_graph.py excepted), and imports follow the dependency order of docs/architecture.md."""

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
        "crp",
        "features",
        "influence",
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

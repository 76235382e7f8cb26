"""Check the built distributions before they are published: `check_dist.py dist [VERSION]`.

The wheel must hold the package, the report page's assets and the console command's
launcher (a top-level module, easy to lose), declare the `keras-explain` command, and
carry VERSION when given (the release tag without its `v`). The sdist must exist.
Run by .ci/run and by .github/workflows/release.yml after `python -m build`.
"""

import sys
import zipfile
from pathlib import Path

REQUIRED = (
    "keras_explain_cli.py",
    "keras_explain/__init__.py",
    "keras_explain/cli.py",
    "keras_explain/report/_page.html",
    "keras_explain/report/_page.js",
    "keras_explain/report/_page.css",
)
COMMAND = "keras-explain = keras_explain_cli:main"


def check(directory: Path, version: str | None) -> list[str]:
    wheels = sorted(directory.glob("keras_explainer-*.whl"))
    sdists = sorted(directory.glob("keras_explainer-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {directory}, found {wheels + sdists}"]
    problems = []
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        problems += [f"the wheel lacks {name}" for name in REQUIRED if name not in names]
        entry_points = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        commands = wheel.read(entry_points[0]).decode() if entry_points else ""
        if COMMAND not in commands:
            problems.append(f"the wheel does not declare `{COMMAND}`")
    if version is not None and f"keras_explainer-{version}-" not in wheels[0].name:
        problems.append(f"the wheel {wheels[0].name} is not version {version}")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
    for problem in found:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not found:
        print("check_dist: the wheel and the sdist are complete")
    sys.exit(1 if found else 0)

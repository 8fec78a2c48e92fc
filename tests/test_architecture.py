"""The shape of the house: import graph, module and function sizes, packaging, start-up.

The dependency *direction* is checked by import-linter (``lint-imports`` in
``./scripts/test``, contracts in pyproject.toml); these tests check what its
contracts do not say: no import cycle anywhere, modules and functions of a
readable size, every package in the installed list, and that the local demos
start without loading a Redis or RQ client.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "pcq.core", "producer": "pcq.producer", "consumer": "pcq.consumer"}
MAX_MODULE_LINES = 420  # "about 400": a module past this wants splitting
MAX_FUNCTION_LINES = 60
REMOTE = ("redis", "rq", "matplotlib")


def _sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def _import_graph() -> dict[str, list[str]]:
    """module -> the modules it imports, built by grimp in a child process.

    Not in this process: grimp's Rust core leaves a pool of threads behind, and
    a process-directed signal can then land on one of them, which breaks the
    tests that block SIGINT in the main thread (test_fork.py).
    """
    code = (
        "import json, grimp\n"
        f"graph = grimp.build_graph(*{list(FOLDERS.values())!r})\n"
        "print(json.dumps({m: sorted(graph.find_modules_directly_imported_by(m))"
        " for m in graph.modules}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    graph: dict[str, list[str]] = json.loads(proc.stdout)
    return graph


def test_no_import_cycles() -> None:
    graph = _import_graph()
    modules = sorted(graph)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_modules_and_functions_stay_readable() -> None:
    too_long: list[str] = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}(): {length} lines")
    assert too_long == []


def test_pyproject_installs_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([name, *parts]))
    assert listed == found


@pytest.mark.parametrize(
    "args",
    [
        ["local", "--items", "6", "--max-delay", "0", "--quiet", "--json"],
        ["fork", "--count", "1", "--json"],
        ["--help"],
    ],
    ids=["local", "fork", "help"],
)
def test_local_commands_load_no_redis_rq_or_matplotlib(args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    code = (
        "import json, sys\n"
        "from pcq.core.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {REMOTE!r})\n"
        f"open({str(out)!r}, 'w').write(json.dumps(loaded))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.exists(), proc.stderr
    assert json.loads(out.read_text()) == []

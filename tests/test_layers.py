"""The package's three layers, read from the source (every import, at any depth):

- ``pimodule.core``: numpy/scipy only, imports nothing else of pimodule;
- ``pimodule.device``: the module (no torch), imports core and device only;
- ``pimodule.laptop``: training, export, evaluation (torch), may import core and device;
- no import circles, and pimodule's own imports sit at the top of each file (the CLI's
  dispatch by name is the one exception), so the graph below is the graph a reader sees.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pimodule"
# third-party packages each layer may import (the standard library is always allowed)
CORE_THIRD_PARTY = {"numpy", "scipy", "soundfile"}
DEVICE_THIRD_PARTY = CORE_THIRD_PARTY | {
    "onnx",
    "onnxruntime",
    "numba",
    "llvmlite",
    "sounddevice",
    "pythonosc",
    "serial",
    "sdnotify",
    "spidev",
    "RPi",
    "cffi",
}
FORBIDDEN_ON_DEVICE = {"torch", "torchaudio", "auraloss", "torchcomp", "torchlpc", "pedalboard", "matplotlib"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at top level?) for every import in the file; ``from a import b`` gives
    ``a.b`` when that is a module of the package."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((sub if sub in MODULES else node.module, id(node) in top_level))
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("core", "device", "laptop") else "top"


def _is_stdlib(name: str) -> bool:
    import sys

    return name.split(".")[0] in sys.stdlib_module_names or name == "__future__"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_what_its_layer_may(module):
    layer = _layer(module)
    allowed_own = {
        "core": {"core"},
        "device": {"core", "device"},
        "laptop": {"core", "device", "laptop"},
        "top": {"core", "device", "laptop", "top"},
    }[layer]
    for name, _ in _imports(MODULES[module]):
        root = name.split(".")[0]
        if root == "pimodule":
            assert _layer(name) in allowed_own, f"{module} ({layer}) imports {name}"
        elif layer == "core":
            assert _is_stdlib(name) or root in CORE_THIRD_PARTY, f"core module {module} imports {name}"
        elif layer == "device":
            assert root not in FORBIDDEN_ON_DEVICE, f"device module {module} imports {name}"
            assert _is_stdlib(name) or root in DEVICE_THIRD_PARTY, f"device module {module} imports {name}"


def test_pimodule_imports_sit_at_the_top_of_each_file():
    inner = [
        (m, name) for m, p in MODULES.items() for name, top in _imports(p) if name.startswith("pimodule") and not top
    ]
    assert inner == []


def test_no_import_circles():
    graph = {m: sorted({n for n, _ in _imports(p) if n in MODULES and n != m}) for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_every_cli_command_names_an_existing_module():
    from pimodule.cli import COMMANDS, SUMMARIES

    for name, target in COMMANDS.items():
        for module in [target] if isinstance(target, str) else target.values():
            assert importlib.util.find_spec(module) is not None, f"pimodule {name}: no module {module}"
        assert SUMMARIES[name], name


def test_no_two_files_share_a_name_with_different_jobs():
    """A file name says what it is: the same stem twice only for the same job in two model
    families (``train``, ``model``, ``export``, ``evaluate`` of ddsp and fx) or packages' own files."""
    same_job = {"__init__", "train", "model", "export", "evaluate", "cli"}
    seen: dict[str, str] = {}
    for m, path in MODULES.items():
        stem = m.rsplit(".", 1)[-1]
        if path.name == "__init__.py":  # the fx package of each half: the same job, two halves
            continue
        if stem in same_job:
            continue
        assert stem not in seen, f"{m} and {seen[stem]} share the name {stem!r}"
        seen[stem] = m

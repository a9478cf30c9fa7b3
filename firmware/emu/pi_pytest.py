"""pytest plugin for the device tests on the emulated Pi (make pi-check): ``-p pi_pytest``.

The Pi never has torch, and the check asserts that here (a usage error if torch can be imported).
Tests that need torch (to build their model files with the laptop code) are *skipped* with the
reason "needs torch", never counted as failures: a test module importing torch or the laptop
package at its top is not collected, and a test or fixture that imports torch when it runs is
reported as skipped. Everything else runs as on the laptop.
"""

from __future__ import annotations

import ast
import importlib.util

import pytest

LAPTOP = ("torch", "pimodule.laptop")
IGNORED: list[str] = []


def _torch_importable() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def pytest_configure(config):
    if _torch_importable():
        raise pytest.UsageError("torch is importable here: the module's device side must never have it")


def _imports_laptop_at_top(path) -> bool:
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        if any(n == m or n.startswith(m + ".") for n in names for m in LAPTOP):
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        if _imports_laptop_at_top(collection_path):
            IGNORED.append(str(collection_path))
            return True
    return None


def _needs_torch(excinfo) -> bool:
    err = excinfo.value if excinfo is not None else None
    while err is not None:
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == "torch":
            return True
        err = err.__cause__ or err.__context__
    return False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None and _needs_torch(call.excinfo):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, "Skipped: needs torch (not on the device)")


def pytest_terminal_summary(terminalreporter):
    if IGNORED:
        terminalreporter.write_line(
            f"pi_pytest: {len(IGNORED)} module(s) not collected (they import torch or "
            f"pimodule.laptop at the top): " + ", ".join(IGNORED)
        )

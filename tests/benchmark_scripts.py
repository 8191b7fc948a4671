"""The scripts in benchmarks/ as modules: for the tests that check them, and for the test
books that share their definitions (the FOCUS columns)."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@cache
def benchmark_script(name: str) -> ModuleType:
    """benchmarks/NAME.py, loaded once as the module `benchmark_NAME`."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module

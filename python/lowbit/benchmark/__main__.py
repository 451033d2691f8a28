"""`python -m lowbit.benchmark`: the short run; with --worker or --dram, one measurement worker.

Workers are started as `python <this folder>/__main__.py --worker ...`, by path: `-m
lowbit.benchmark` would first import the lowbit package (its extension and thread pool) into
every worker, the peers' included, and fail them all when the lowbit being measured isn't built.
Run by path, this file loads its folder as a standalone package, "lowbit_benchmark": the harness
modules import each other relatively and import lowbit only inside lowbit's own methods, so they
never need their parent package. Which lowbit a worker measures is then up to its sys.path (see
runner.worker_env). bench/compare.py loads the checkout's harness the same way, so it runs
against the installed lowbit, built or not, and never against a stale installed harness.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Callable

STANDALONE_NAME = "lowbit_benchmark"


def load_standalone(folder: str, name: str = STANDALONE_NAME) -> ModuleType:
    """The harness package in `folder`, imported as the top-level package `name`."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # relative imports and dataclasses look the package up here
    spec.loader.exec_module(module)
    return module


def _entry_point() -> Callable[[], int]:
    if __package__:   # python -m lowbit.benchmark
        from .runner import main
        return main
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0]) == here:
        # Run by path, Python put this folder first on sys.path: data.py, timing.py, ... must not
        # shadow top-level modules of the same names for the libraries being benchmarked.
        del sys.path[0]
    standalone_main: Callable[[], int] = load_standalone(here).runner.main
    return standalone_main


if __name__ == "__main__":
    sys.exit(_entry_point()())

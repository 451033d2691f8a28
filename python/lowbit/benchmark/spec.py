"""What a benchmarked method is: its setup (Method) and the calls it makes once set up (Bench)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

Call = Callable[[], Any]


@dataclass
class Bench:
    """One method set up for one (K, N, threads): weights built, ready for any M."""
    calls: Callable[[int], list[Call]]          # M -> one call per weight copy
    check: Callable[[int, Any], str]            # M, output of copy 0 -> check note; raises if wrong
    context: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    requires: tuple[str, ...]       # modules that must be installed
    weight_itemsize: float          # bytes per weight in the method's own format, scales included
    setup: Callable[[int, int, int, int], Bench]   # (K, N, threads, copies)

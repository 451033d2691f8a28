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
    # M, output of copy 0 -> check note; raises if wrong. The conv suite's checks return a dict
    # of row fields instead (check, rel_err, int_check, inexact: see methods_conv).
    check: Callable[[int, Any], Any]
    context: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    requires: tuple[str, ...]       # modules that must be installed
    weight_itemsize: float          # bytes per weight in the method's own format, scales included
    setup: Callable[[int, int, int, int], Bench]   # (K, N, threads, copies)


@dataclass(frozen=True)
class ConvMethod:
    """A method of the conv suite (methods_conv): the setup builds it for one layer shape (a
    methods_conv.ConvShape) or, for a whole-model method (model=True), one model name; the
    Bench's M is the batch size."""
    name: str
    requires: tuple[str, ...]       # modules that must be installed
    setup: Callable[[Any, int], Bench]   # (shape or model name, threads)
    model: bool = False

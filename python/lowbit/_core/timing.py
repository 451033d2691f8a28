"""The one timer of lowbit: per-call wall times of one or more calls (the benchmarks, lowbit.report,
quantize_'s skip_slower and the demo all time with it), and their median."""
from __future__ import annotations

import gc
import statistics
import time
from typing import Any, Callable, Sequence

WARMUP_CALLS = 3
MIN_SECONDS = 0.2        # keep sampling until this much timed time, even past `repeats`
MAX_SECONDS = 30.0       # cap: stop sampling after this, even short of `repeats`
MAX_SAMPLES = 200_000    # cap for calls of a few microseconds


def time_calls(calls: Sequence[Callable[[], Any]], repeats: int, min_seconds: float = MIN_SECONDS,
               max_seconds: float = MAX_SECONDS, warmup: int = WARMUP_CALLS,
               max_samples: int = MAX_SAMPLES) -> list[float]:
    """Per-call wall times, cycling through `calls` (one per weight copy): at least `repeats`
    and `min_seconds` of timed calls, at most `max_seconds` and `max_samples`, after
    max(warmup, len(calls)) untimed ones; the garbage collector is off while timing."""
    n = len(calls)
    warmup = max(warmup, n)   # every copy touched once, so page faults aren't timed
    for i in range(warmup):
        calls[i % n]()
    samples: list[float] = []
    total, i = 0.0, warmup          # continue the cycle: the next copy is the least recent
    gc_was_enabled = gc.isenabled()
    gc.disable()                    # a collection inside a timed call is noise, not cost
    try:
        while (len(samples) < repeats or total < min_seconds) and len(samples) < max_samples:
            if samples and total >= max_seconds:
                break
            call = calls[i % n]
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
            samples.append(elapsed)
            total += elapsed
            i += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def median_seconds(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.0,
                   max_samples: int = MAX_SAMPLES, warmup: int = WARMUP_CALLS) -> float:
    """The median of time_calls([fn], ...): at least `repeats` timed calls (and `min_seconds`
    of them, up to `max_samples`) after `warmup` untimed ones."""
    return statistics.median(time_calls([fn], max(repeats, 1), min_seconds, warmup=warmup,
                                        max_samples=max_samples))

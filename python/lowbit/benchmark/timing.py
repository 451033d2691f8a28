"""Timing primitives: per-call wall times, the L3 size that decides how many weight copies make
a "cold" measurement, and the DRAM read bandwidth that cold results are compared to."""
from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

WARMUP_CALLS = 3
MIN_SECONDS = 0.2        # keep sampling until this much timed time, even past `repeats`
MAX_SECONDS = 30.0       # cap: stop sampling after this, even short of `repeats`
MAX_SAMPLES = 200_000    # cap for calls of a few microseconds
COLD_FACTOR = 3          # cold mode: weight copies total more than this many L3 caches
DEFAULT_L3_BYTES = 32 * 2**20
DRAM_PROBE_BYTES = 512 * 2**20
DRAM_PROBE_REPEATS = 5


def l3_cache_bytes() -> int:
    """cpu0's L3 size from sysfs, or DEFAULT_L3_BYTES when it isn't exposed. LOWBIT_BENCH_L3_BYTES
    overrides both (a VM's sysfs may not show the host's cache)."""
    override = os.environ.get("LOWBIT_BENCH_L3_BYTES")
    if override:
        return _parse_size(override)
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            with open(os.path.join(base, index, "level")) as f:
                if f.read().strip() != "3":
                    continue
            with open(os.path.join(base, index, "size")) as f:
                return _parse_size(f.read())
    except (OSError, ValueError):
        pass
    return DEFAULT_L3_BYTES


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def cold_copies(weight_bytes: int, l3_bytes: Optional[int] = None) -> int:
    """Copies whose total size exceeds COLD_FACTOR x L3, so each call reads from DRAM."""
    l3 = l3_cache_bytes() if l3_bytes is None else l3_bytes
    return COLD_FACTOR * l3 // weight_bytes + 1


def time_calls(calls: Sequence[Callable[[], Any]], repeats: int, min_seconds: float = MIN_SECONDS,
               max_seconds: float = MAX_SECONDS) -> list[float]:
    """Per-call wall times, cycling through `calls` (one per weight copy)."""
    n = len(calls)
    warmup = max(WARMUP_CALLS, n)   # every copy touched once, so page faults aren't timed
    for i in range(warmup):
        calls[i % n]()
    samples: list[float] = []
    total, i = 0.0, warmup          # continue the cycle: the next copy is the least recent
    gc_was_enabled = gc.isenabled()
    gc.disable()                    # a collection inside a timed call is noise, not cost
    try:
        while (len(samples) < repeats or total < min_seconds) and len(samples) < MAX_SAMPLES:
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


def dram_bandwidth(nbytes: int, repeats: int) -> tuple[float, str]:
    """DRAM read bandwidth in GB/s and the probe that measured it."""
    try:
        # Absolute import, as in methods: whichever lowbit this process finds, if it is built.
        from lowbit import _C
        probe = getattr(_C, "memory_read_bandwidth", None)
    except Exception:
        probe = None
    if probe is not None:
        return float(probe(nbytes, repeats)), "lowbit._C.memory_read_bandwidth"
    buf = np.ones(nbytes // 4, dtype=np.float32)   # ones, not empty: every page really mapped
    np.add.reduce(buf)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.add.reduce(buf)
        times.append(time.perf_counter() - start)
    return buf.nbytes / statistics.median(times) / 1e9, "numpy add.reduce (1 thread)"


def measure_dram_bandwidth(nbytes: int = DRAM_PROBE_BYTES, repeats: int = DRAM_PROBE_REPEATS) -> float:
    """DRAM read bandwidth in GB/s: lowbit's streaming probe if built, else NumPy's reduce."""
    return dram_bandwidth(nbytes, repeats)[0]

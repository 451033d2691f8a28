"""Timing for the benchmarks: per-call wall times (lowbit._core.timing, the one timer), the L3 size that decides how many weight copies make
a "cold" measurement, and the DRAM read bandwidth that cold results are compared to."""
from __future__ import annotations

import importlib.util
import os
import statistics
import time
from types import ModuleType
from typing import Optional

import numpy as np


def _load_timer() -> ModuleType:
    """lowbit's one timer, lowbit/_core/timing.py (stdlib only), loaded by path: the harness
    runs standalone in its workers, which never import the lowbit package (see __main__)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_core",
                        "timing.py")
    spec = importlib.util.spec_from_file_location("lowbit_benchmark_timer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_timer = _load_timer()
WARMUP_CALLS = _timer.WARMUP_CALLS
MIN_SECONDS = _timer.MIN_SECONDS
MAX_SECONDS = _timer.MAX_SECONDS
MAX_SAMPLES = _timer.MAX_SAMPLES
time_calls = _timer.time_calls
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

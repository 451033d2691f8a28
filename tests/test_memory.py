"""10,000 create / pack / run / destroy cycles (small shapes, 8-bit and 4-bit weights) must not
grow the resident set: packed weights, their scratch buffers and the result arrays are all
released. Leaks inside the C++ core are also checked by LeakSanitizer on the C++ tests."""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import lowbit

CYCLES = 10_000
WARMUP = 1_000
TOLERANCE_BYTES = 4 << 20   # a leaked 8-bit pack here holds ~4 KB: 10,000 of them are 40 MB


def _asan_loaded() -> bool:
    """ASan keeps freed memory in quarantine, so RSS says nothing about leaks there."""
    try:
        with open("/proc/self/maps") as f:
            return "asan" in f.read()
    except OSError:
        return False


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.skipif(_asan_loaded(),
                    reason="ASan quarantine inflates RSS; LeakSanitizer covers that build")
def test_pack_run_destroy_cycles_keep_rss_flat():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 64)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    a = rng.integers(0, 256, (3, 64), dtype=np.int64).astype(np.uint8)
    bias = rng.standard_normal(48).astype(np.float32)

    def cycle(i):
        kind = i % 4
        if kind == 0:
            pw = lowbit.pack_weight(w)
            lowbit.linear(x, pw, bias)
            lowbit.matmul_integer(a, pw, np.uint8(3))
        elif kind == 1:
            layer = lowbit.nn.QuantizedLinear.from_float(w, bias, symmetric=False)
            layer(x)
        else:
            mode = "w4a8" if kind == 2 else "weight_only"
            pw = lowbit.pack_weight(w, bits=4, group_size=32, mode=mode, symmetric=kind == 2)
            lowbit.linear(x, pw, bias)
            pw.qtensor()

    for i in range(WARMUP):
        cycle(i)
    gc.collect()
    before = _rss_bytes()
    for i in range(CYCLES):
        cycle(i)
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < TOLERANCE_BYTES, f"RSS grew by {grown / 2**20:.1f} MiB over {CYCLES} cycles"

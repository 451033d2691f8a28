"""Eight Python threads share one PackedWeight (8-bit, and 4-bit in both modes) through
lowbit.linear and lowbit.matmul_integer, with mixed shapes, while another thread keeps changing
the thread count between 1, 2 and 3, on lowbit's own threads and on PyTorch's OpenMP threads. The kernels release the GIL, so these calls really run at
the same time; every result must equal the serial run bit for bit."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import lowbit

WORKERS = 8
CALLS_PER_WORKER = 12
K, N = 768, 130                # big enough that the larger shapes take the parallel kernel path
ROWS = (1, 3, 17, 64, 130)

WEIGHTS = {
    "int8": dict(bits=8),
    "int8-asym": dict(bits=8, symmetric=False),
    "int4-w4a8": dict(bits=4, group_size=64, mode="w4a8", symmetric=False),
    "int4-weight_only": dict(bits=4, group_size=96, mode="weight_only"),
}


def _calls(pw, rng):
    """(function, args) pairs covering every shape; matmul_integer only takes 8-bit weights."""
    calls = []
    for m in ROWS:
        x = rng.standard_normal((m, K)).astype(np.float32)
        calls.append((lowbit.linear, (x, pw)))
        if pw.bits == 8:
            a = rng.integers(0, 256, (m, K), dtype=np.int64).astype(np.uint8)
            calls.append((lowbit.matmul_integer, (a, pw, np.uint8(m % 256))))
    x3 = rng.standard_normal((2, 5, K)).astype(np.float32)   # leading dims
    calls.append((lowbit.linear, (x3, pw, rng.standard_normal(N).astype(np.float32))))
    return calls


@pytest.fixture(params=["lowbit", "openmp"])
def runtime(request):
    """Whose threads run the kernels: lowbit's pool, or PyTorch's OpenMP team (as inside
    lowbit.torch models; needs PyTorch)."""
    if request.param == "lowbit":
        before = lowbit.parallel_runtime()
        lowbit._C._use_own_threads()
        yield "lowbit"
    else:
        pytest.importorskip("torch")
        from lowbit.torch import use_torch_threads
        before = lowbit.parallel_runtime()
        if not use_torch_threads(True):
            pytest.skip("this PyTorch build does not use OpenMP")
        yield "openmp"
    if before == "lowbit":
        lowbit._C._use_own_threads()
    else:
        lowbit._C._use_openmp_runtime(before.split(":", 1)[1])


@pytest.mark.parametrize("kind", list(WEIGHTS))
def test_shared_packed_weight_under_changing_thread_count(isa, rng, kind, runtime):
    w = rng.standard_normal((N, K)).astype(np.float32)
    pw = lowbit.pack_weight(w, **WEIGHTS[kind])
    calls = _calls(pw, rng)
    lowbit.set_num_threads(1)
    expected = [fn(*args) for fn, args in calls]

    start = threading.Barrier(WORKERS + 1)
    done = threading.Event()
    failures: list[str] = []

    def flipper():
        start.wait()
        i = 0
        while not done.is_set():
            lowbit.set_num_threads(1 + i % 3)
            i += 1

    def worker(w_id):
        start.wait()
        try:
            for i in range(CALLS_PER_WORKER):
                j = (w_id * 5 + i * 3) % len(calls)   # threads hit different shapes at once
                fn, args = calls[j]
                got = fn(*args)
                want = expected[j]
                if got.dtype != want.dtype or got.shape != want.shape or \
                        got.tobytes() != want.tobytes():
                    failures.append(f"worker {w_id} call {j} ({fn.__name__}) differs")
        except Exception as e:  # noqa: BLE001 - any exception is a failure to report
            failures.append(f"worker {w_id}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    flip = threading.Thread(target=flipper)
    for t in threads + [flip]:
        t.start()
    for t in threads:
        t.join(timeout=300)
    done.set()
    flip.join(timeout=60)
    assert not any(t.is_alive() for t in threads + [flip]), "a thread hung"
    assert not failures, failures[:5]

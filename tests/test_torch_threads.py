"""lowbit's kernels on PyTorch's OpenMP threads (lowbit.torch.use_torch_threads): switched on by
importing lowbit.torch, off with LOWBIT_TORCH_THREADS=0 or use_torch_threads(False); results are
the same bits as on lowbit's own threads for every thread count of either library."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import lowbit

torch = pytest.importorskip("torch")
from lowbit.torch import QuantizedLinear, use_torch_threads  # noqa: E402

OPENMP = "parallel backend: OpenMP" in torch.__config__.parallel_info()
needs_openmp = pytest.mark.skipif(not OPENMP, reason="this PyTorch build does not use OpenMP")


@pytest.fixture(autouse=True)
def _restore_runtime():
    before = lowbit.parallel_runtime()
    torch_threads = torch.get_num_threads()
    yield
    torch.set_num_threads(torch_threads)
    if before == "lowbit":
        use_torch_threads(False)
    else:
        lowbit._C._use_openmp_runtime(before.split(":", 1)[1])


def _run_in_subprocess(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, check=True)
    return out.stdout.strip()


@needs_openmp
def test_importing_lowbit_torch_switches_to_torch_threads():
    code = ("import lowbit; a = lowbit.parallel_runtime(); import lowbit.torch; "
            "print(a, lowbit.parallel_runtime())")
    before, after = _run_in_subprocess(code).split()
    assert before == "lowbit"
    assert after.startswith("openmp:") and "omp" in os.path.basename(after)
    assert os.path.dirname(torch.__file__) in after   # PyTorch's own copy, not another one


@pytest.mark.parametrize("value", ["0", "off"])
def test_env_var_keeps_lowbit_threads(value):
    code = "import lowbit, lowbit.torch; print(lowbit.parallel_runtime())"
    assert _run_in_subprocess(code, LOWBIT_TORCH_THREADS=value) == "lowbit"


@needs_openmp
def test_switching_back_and_forth():
    assert use_torch_threads(True) is True
    assert lowbit.parallel_runtime().startswith("openmp:")
    assert use_torch_threads(False) is False
    assert lowbit.parallel_runtime() == "lowbit"


def test_a_library_without_openmp_is_refused():
    before = lowbit.parallel_runtime()
    with pytest.raises(RuntimeError, match="cannot load|not an OpenMP runtime"):
        lowbit._C._use_openmp_runtime("/nonexistent/libgomp.so.1")
    with pytest.raises(RuntimeError, match="not an OpenMP runtime"):
        lowbit._C._use_openmp_runtime("libc.so.6")
    assert lowbit.parallel_runtime() == before


WEIGHTS = {
    "int8": dict(bits=8),
    "int8-asym": dict(bits=8, symmetric=False),
    "int4-w4a8": dict(bits=4, group_size=32, mode="w4a8"),
    "int4-weight_only": dict(bits=4, group_size=64, mode="weight_only", symmetric=False),
}


@needs_openmp
@pytest.mark.parametrize("kind", list(WEIGHTS))
def test_same_bits_on_either_pool_and_any_thread_count(isa, rng, kind):
    k, n = 512, 1000   # large enough for the parallel kernel paths at every M below
    pw = lowbit.pack_weight(rng.standard_normal((n, k)).astype(np.float32), **WEIGHTS[kind])
    xs = [rng.standard_normal((m, k)).astype(np.float32) for m in (1, 4, 37, 200)]
    bias = rng.standard_normal(n).astype(np.float32)
    use_torch_threads(False)
    lowbit.set_num_threads(1)
    want = [lowbit.linear(x, pw, bias).tobytes() for x in xs]
    use_torch_threads(True)
    for lowbit_threads in (1, 2, 3):
        lowbit.set_num_threads(lowbit_threads)
        for torch_threads in (1, 2, 3):
            torch.set_num_threads(torch_threads)
            got = [lowbit.linear(x, pw, bias).tobytes() for x in xs]
            assert got == want, (lowbit_threads, torch_threads)


@needs_openmp
def test_matmul_integer_exact_on_torch_threads(rng):
    use_torch_threads(True)
    a = rng.integers(0, 256, (150, 700)).astype(np.uint8)
    b = rng.integers(-128, 128, (700, 300)).astype(np.int8)
    got = lowbit.matmul_integer(a, b, np.uint8(7), np.int8(-3))
    want = (a.astype(np.int64) - 7) @ (b.astype(np.int64) + 3)
    np.testing.assert_array_equal(got, want.astype(np.int32))


@needs_openmp
def test_torch_layer_from_several_python_threads():
    """Python threads other than the one PyTorch set up call a lowbit layer at once: each
    gets an OpenMP team of its own or runs serially, and every result is the same."""
    import threading
    use_torch_threads(True)
    lin = torch.nn.Linear(256, 512)
    q = QuantizedLinear.from_float(lin)
    x = torch.randn(64, 256)
    with torch.inference_mode():
        want = q(x).clone()
        errors: list[str] = []

        def worker():
            for _ in range(20):
                if not torch.equal(q(x), want):
                    errors.append("differs")

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors
    assert not any(t.is_alive() for t in threads)


@needs_openmp
def test_forked_child_runs_on_lowbit_threads(rng):
    """After fork() the OpenMP team is gone; the child must fall back to lowbit's own pool and
    still compute (a hang here is what the fallback prevents)."""
    import multiprocessing as mp
    use_torch_threads(True)
    pw = lowbit.pack_weight(rng.standard_normal((600, 512)).astype(np.float32))
    x = rng.standard_normal((64, 512)).astype(np.float32)
    want = lowbit.linear(x, pw)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        runtime, got = pool.apply_async(_child_linear, (x, pw)).get(timeout=120)
    assert runtime == "lowbit"
    assert got.tobytes() == want.tobytes()


def _child_linear(x, pw):
    return lowbit.parallel_runtime(), lowbit.linear(x, pw)

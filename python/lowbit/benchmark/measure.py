"""Measuring a method in this process: set it up, check its result, time its calls.

This is what a worker subprocess runs. In-process timings of NumPy use whatever BLAS thread count
NumPy loaded with: runner.run_method_subprocess is the way to a controlled thread count.
"""
from __future__ import annotations

import functools
import statistics
from typing import Any, Sequence

import numpy as np

from .data import make_weight
from .methods import METHODS, Bench, missing_requirements
from .methods_conv import ALL_CONV_METHODS, conv_missing_requirements, conv_shape_of
from .timing import MIN_SECONDS, cold_copies, time_calls


def describe_error(e: BaseException) -> str:
    """One short line for a result row."""
    return f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]


def measure_many(method: str, Ms: Sequence[int], K: int, N: int, threads: int, cold: bool,
                 repeats: int, min_seconds: float = MIN_SECONDS) -> list[dict[str, Any]]:
    """Sets the method up once for (K, N, threads) and times it at each M, in this process."""
    spec = METHODS[method]
    missing = missing_requirements(method)
    if missing:
        raise ModuleNotFoundError(f"{', '.join(missing)} not installed")
    weight_bytes = int(spec.weight_itemsize * K * N)
    copies = cold_copies(weight_bytes) if cold else 1
    bench = spec.setup(K, N, threads, copies)
    results = []
    for M in Ms:
        try:
            check, samples = _check_and_time(bench, M, repeats, min_seconds)
            results.append({"M": M, "status": "ok", "seconds": statistics.median(samples),
                            "n_samples": len(samples), "min_seconds": min(samples),
                            "check": check, "copies": copies, "weight_bytes": weight_bytes,
                            **bench.info})
        except Exception as e:   # one bad M must not lose the others
            results.append({"M": M, "status": "error", "error": describe_error(e)})
    return results


def measure_conv(method: str, shape: str, batches: Sequence[int], threads: int, repeats: int,
                 min_seconds: float = MIN_SECONDS) -> list[dict[str, Any]]:
    """The conv suite's measure_many: sets the method up once for a layer shape (its spec or
    id, see methods_conv.conv_shape) or a model name, and times it at each batch size, in this
    process. The check's fields (rel_err, int_check, inexact) join each row."""
    spec = ALL_CONV_METHODS[method]
    missing = conv_missing_requirements(method)
    if missing:
        raise ModuleNotFoundError(f"{', '.join(missing)} not installed")
    bench = spec.setup(conv_shape_of(method, shape), threads)
    results = []
    for batch in batches:
        try:
            check, samples = _check_and_time(bench, batch, repeats, min_seconds)
            fields = check if isinstance(check, dict) else {"check": check}
            results.append({"batch": batch, "status": "ok", "seconds": statistics.median(samples),
                            "n_samples": len(samples), "min_seconds": min(samples),
                            **fields, **bench.info})
        except Exception as e:   # one bad batch must not lose the others
            results.append({"batch": batch, "status": "error", "error": describe_error(e)})
    return results


PACK_KINDS = ("pack_weight_f32", "pack_weight_int8")


def measure_pack(K: int, N: int, threads: int, repeats: int,
                 min_seconds: float = MIN_SECONDS) -> list[dict[str, Any]]:
    """pack_weight timed in this process on an (N, K) weight, one result per PACK_KINDS entry:
    pack_weight_f32 is `lb.pack_weight(w)` of float32 weights (per-channel int8 quantization and
    the packing), pack_weight_int8 `lb.pack_weight(qt)` of an int8 QTensor (packing alone: the
    public way to pack int8 weights that are already quantized). GB/s count the int8 weight
    bytes (K * N) packed per second."""
    import lowbit as lb   # absolute: see methods._import_lowbit
    lb.set_num_threads(threads)
    w, _ = make_weight(K, N)
    qt = lb.pack_weight(w).qtensor()
    qt = lb.QTensor(np.ascontiguousarray(qt.data), qt.scale, qt.zero_point, "int8", 0)
    inputs = {"pack_weight_f32": w, "pack_weight_int8": qt}
    results = []
    for kind in PACK_KINDS:
        try:
            call = functools.partial(lb.pack_weight, inputs[kind])
            pw = call()
            if not np.array_equal(np.asarray(pw.qtensor().data), qt.data):
                raise RuntimeError("wrong result: packed weight differs from the int8 reference")
            samples = time_calls([call], repeats, min_seconds)
            seconds = statistics.median(samples)
            results.append({"method": kind, "status": "ok", "seconds": seconds,
                            "n_samples": len(samples), "min_seconds": min(samples),
                            "weight_bytes": K * N, "gbps": K * N / seconds / 1e9,
                            "isa": lb.get_isa()})
        except Exception as e:
            results.append({"method": kind, "status": "error", "error": describe_error(e)})
    return results


def _check_and_time(bench: Bench, M: int, repeats: int,
                    min_seconds: float) -> tuple[Any, list[float]]:
    calls = bench.calls(M)
    with bench.context():
        check = bench.check(M, calls[0]())   # a wrong result is an error row, not a timing
        return check, time_calls(calls, repeats, min_seconds)


def _timed(method: str, M: int, K: int, N: int, threads: int, cold: bool,
           repeats: int) -> tuple[float, list[float]]:
    """In this process: median seconds per call and the samples."""
    spec = METHODS[method]
    copies = cold_copies(int(spec.weight_itemsize * K * N)) if cold else 1
    samples = _check_and_time(spec.setup(K, N, threads, copies), M, repeats, MIN_SECONDS)[1]
    return statistics.median(samples), samples


def numpy_f32(M: int, K: int, N: int, threads: int, cold: bool,
              repeats: int = 10) -> tuple[float, list[float]]:
    return _timed("numpy_f32", M, K, N, threads, cold, repeats)


def lowbit_linear(M: int, K: int, N: int, threads: int, cold: bool,
                  repeats: int = 10) -> tuple[float, list[float]]:
    return _timed("lowbit_linear", M, K, N, threads, cold, repeats)


def lowbit_matmul_integer(M: int, K: int, N: int, threads: int, cold: bool,
                          repeats: int = 10) -> tuple[float, list[float]]:
    return _timed("lowbit_matmul_integer", M, K, N, threads, cold, repeats)


def torch_dynamic(M: int, K: int, N: int, threads: int, cold: bool,
                  repeats: int = 10) -> tuple[float, list[float]]:
    return _timed("torch_dynamic", M, K, N, threads, cold, repeats)


def ort_dynamic(M: int, K: int, N: int, threads: int, cold: bool,
                repeats: int = 10) -> tuple[float, list[float]]:
    return _timed("ort_dynamic", M, K, N, threads, cold, repeats)


def ort_matmul_integer(M: int, K: int, N: int, threads: int, cold: bool,
                       repeats: int = 10) -> tuple[float, list[float]]:
    return _timed("ort_matmul_integer", M, K, N, threads, cold, repeats)

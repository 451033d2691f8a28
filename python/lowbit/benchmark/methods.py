"""The benchmarked methods: one setup per peer, and the METHODS registry.

A setup builds a method's weights once for (K, N, threads) and returns a Bench that makes the
calls for any M. Peers (torch, onnxruntime + onnx) are imported inside their setups only. The
4-bit methods live in methods_int4 and join the same registry.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
from typing import Any

import numpy as np

from .data import (check_float, check_int, make_a, make_weight, make_x, quantize_per_channel,
                   weight_copy)
from .methods_int4 import INT4_METHODS, INT4_COMPARISONS
from .ort_models import float_linear_model, matmul_integer_model, ort_sessions
from .spec import Bench, Call, Method

def _setup_numpy_f32(K: int, N: int, threads: int, copies: int) -> Bench:
    # Threads were fixed by the environment before NumPy loaded (see runner.worker_env).
    w, _ = make_weight(K, N)
    transposed = [weight_copy(w, i).T for i in range(copies)]

    def calls(M: int) -> list[Call]:
        x = make_x(M, K)
        return [functools.partial(np.matmul, x, wt) for wt in transposed]

    return Bench(calls, lambda M, y: check_float(make_x(M, K), w, None, y))


def _import_lowbit(threads: int) -> Any:
    # Absolute, not relative: the harness may run as a standalone package (see __main__), and
    # the lowbit measured is whichever one the worker's sys.path finds.
    import lowbit as lb
    lb.set_num_threads(threads)
    return lb


def _setup_lowbit_linear(K: int, N: int, threads: int, copies: int) -> Bench:
    lb = _import_lowbit(threads)
    w, b = make_weight(K, N)
    packed = [lb.pack_weight(weight_copy(w, i)) for i in range(copies)]

    def calls(M: int) -> list[Call]:
        x = make_x(M, K)
        return [functools.partial(lb.linear, x, pw, b) for pw in packed]

    return Bench(calls, lambda M, y: check_float(make_x(M, K), w, b, y),
                 info={"isa": lb.get_isa()})


def _setup_lowbit_w8_weight_only(K: int, N: int, threads: int, copies: int) -> Bench:
    lb = _import_lowbit(threads)
    w, b = make_weight(K, N)
    packed = [lb.pack_weight(weight_copy(w, i), mode="weight_only") for i in range(copies)]

    def calls(M: int) -> list[Call]:
        x = make_x(M, K)
        return [functools.partial(lb.linear, x, pw, b) for pw in packed]

    return Bench(calls, lambda M, y: check_float(make_x(M, K), w, b, y),
                 info={"isa": lb.get_isa()})


def _setup_lowbit_matmul_integer(K: int, N: int, threads: int, copies: int) -> Bench:
    lb = _import_lowbit(threads)
    w, _ = make_weight(K, N)
    packed = [lb.pack_weight(weight_copy(w, i)) for i in range(copies)]
    q0 = np.asarray(packed[0].qtensor().data)   # lowbit's own int8 weight: the exact reference

    def calls(M: int) -> list[Call]:
        a = make_a(M, K)
        return [functools.partial(lb.matmul_integer, a, pb) for pb in packed]

    return Bench(calls, lambda M, c: check_int(make_a(M, K), q0, c), info={"isa": lb.get_isa()})


def _setup_torch_dynamic(K: int, N: int, threads: int, copies: int) -> Bench:
    import torch
    from torch import nn
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):   # only settable before any inter-op work
        torch.set_num_interop_threads(1)
    w, b = make_weight(K, N)
    models = []
    for i in range(copies):
        linear = nn.Linear(K, N)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight_copy(w, i)))
            linear.bias.copy_(torch.from_numpy(b))
        models.append(torch.ao.quantization.quantize_dynamic(
            nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8).eval())

    def calls(M: int) -> list[Call]:
        x = torch.from_numpy(make_x(M, K))
        return [functools.partial(model, x) for model in models]

    return Bench(calls, lambda M, y: check_float(make_x(M, K), w, b, y.numpy()),
                 context=torch.inference_mode,
                 info={"engine": str(torch.backends.quantized.engine)})


def _setup_ort_dynamic(K: int, N: int, threads: int, copies: int) -> Bench:
    w, b = make_weight(K, N)
    sessions, info = ort_sessions(lambda i: float_linear_model(weight_copy(w, i).T, b),
                                  copies, threads, quantize=True)

    def calls(M: int) -> list[Call]:
        feed = {"X": make_x(M, K)}
        return [functools.partial(s.run, None, feed) for s in sessions]

    return Bench(calls, lambda M, out: check_float(make_x(M, K), w, b, out[0]), info=info)


def _setup_ort_matmul_integer(K: int, N: int, threads: int, copies: int) -> Bench:
    w, _ = make_weight(K, N)
    q, _ = quantize_per_channel(w)
    sessions, info = ort_sessions(lambda i: matmul_integer_model(weight_copy(q, i).T),
                                  copies, threads, quantize=False)

    def calls(M: int) -> list[Call]:
        feed = {"A": make_a(M, K)}
        return [functools.partial(s.run, None, feed) for s in sessions]

    return Bench(calls, lambda M, out: check_int(make_a(M, K), q, out[0]), info=info)


# Registry order is the column order of the report tables.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("numpy_f32", (), 4, _setup_numpy_f32),
    Method("lowbit_linear", (), 1, _setup_lowbit_linear),
    Method("lowbit_matmul_integer", (), 1, _setup_lowbit_matmul_integer),
    Method("lowbit_w8_weight_only", (), 1, _setup_lowbit_w8_weight_only),
    Method("torch_dynamic", ("torch",), 1, _setup_torch_dynamic),
    Method("ort_dynamic", ("onnxruntime", "onnx"), 1, _setup_ort_dynamic),
    Method("ort_matmul_integer", ("onnxruntime", "onnx"), 1, _setup_ort_matmul_integer),
)}
METHODS.update(INT4_METHODS)
PEERS = ("torch_dynamic", "ort_dynamic")        # what lowbit_linear is compared against
# Ratio columns of the report: (lowbit method, the peers it is compared against).
# (Every lowbit method also gets a column against numpy_f32.)
COMPARISONS: tuple[tuple[str, tuple[str, ...]], ...] = (("lowbit_linear", PEERS),) + INT4_COMPARISONS


def missing_requirements(method: str) -> list[str]:
    return [name for name in METHODS[method].requires if importlib.util.find_spec(name) is None]


def method_available(method: str) -> bool:
    return not missing_requirements(method)

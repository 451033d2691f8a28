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
from .methods_half import HALF_COMPARISONS, HALF_METHODS
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


def _setup_lowbit_matmul_integer_plain_b(K: int, N: int, threads: int, copies: int) -> Bench:
    """The README's first call: B a plain int8 (K, N) NumPy array, packed (or read in place) by
    every call; the same int8 weight as lowbit_matmul_integer's, transposed and made contiguous."""
    lb = _import_lowbit(threads)
    w, _ = make_weight(K, N)
    q0 = np.asarray(lb.pack_weight(w).qtensor().data)
    plain = [np.ascontiguousarray(weight_copy(q0, i).T) for i in range(copies)]

    def calls(M: int) -> list[Call]:
        a = make_a(M, K)
        return [functools.partial(lb.matmul_integer, a, b) for b in plain]

    return Bench(calls, lambda M, c: check_int(make_a(M, K), q0, c), info={"isa": lb.get_isa()})


def _import_torch(threads: int) -> Any:
    import torch
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):   # only settable before any inter-op work
        torch.set_num_interop_threads(1)
    return torch


def _setup_torch_int_mm(K: int, N: int, threads: int, copies: int) -> Bench:
    """torch._int_mm(a8, b): int8 (M, K) x int8 (K, N) -> int32, nothing else timed. It takes no
    uint8, so lowbit's uint8 activations enter as a8 = a - 128 (converted once, untimed) and the
    check adds 128 * colsum(b) back: the same products, by the identity lowbit's zero points use.
    b is the (K, N) view of the (N, K) int8 weight lowbit packs (oneDNN's transposed-B form)."""
    torch = _import_torch(threads)
    w, _ = make_weight(K, N)
    q, _ = quantize_per_channel(w)
    weights = [torch.from_numpy(np.ascontiguousarray(weight_copy(q, i))).t() for i in range(copies)]
    colsum = 128 * q.astype(np.int64).sum(axis=1)

    def a8(M: int) -> Any:
        return torch.from_numpy((make_a(M, K).astype(np.int16) - 128).astype(np.int8))

    def calls(M: int) -> list[Call]:
        a = a8(M)
        return [functools.partial(torch._int_mm, a, b) for b in weights]

    def check(M: int, c: Any) -> str:
        return check_int(make_a(M, K), q, (c.numpy().astype(np.int64) + colsum).astype(np.int32))

    return Bench(calls, check, context=torch.inference_mode)


def _setup_torchao(compiled: bool, K: int, N: int, threads: int, copies: int) -> Bench:
    """torchao's Int8DynamicActivationInt8WeightConfig on an nn.Linear (per-token int8
    activations, per-channel int8 weights, float32 out); compiled: torch.compile(dynamic=False),
    one static graph per M, compiled by the first (check) call, before any timing."""
    torch = _import_torch(threads)
    from torch import nn
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    w, b = make_weight(K, N)
    models = []
    for i in range(copies):
        linear = nn.Linear(K, N)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight_copy(w, i)))
            linear.bias.copy_(torch.from_numpy(b))
        model = nn.Sequential(linear).eval()
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        if compiled:
            import torch._dynamo
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            model = torch.compile(model, dynamic=False)
        models.append(model)

    def calls(M: int) -> list[Call]:
        x = torch.from_numpy(make_x(M, K))
        return [functools.partial(model, x) for model in models]

    import torchao
    return Bench(calls, lambda M, y: check_float(make_x(M, K), w, b, y.numpy()),
                 context=torch.inference_mode, info={"torchao": torchao.__version__})


def _setup_torch_dynamic(K: int, N: int, threads: int, copies: int) -> Bench:
    torch = _import_torch(threads)
    from torch import nn
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
    Method("lowbit_matmul_integer_plain_b", (), 1, _setup_lowbit_matmul_integer_plain_b),
    Method("lowbit_w8_weight_only", (), 1, _setup_lowbit_w8_weight_only),
    Method("torch_dynamic", ("torch",), 1, _setup_torch_dynamic),
    Method("torchao_int8_dynamic", ("torch", "torchao"), 1,
           functools.partial(_setup_torchao, False)),
    Method("torchao_int8_dynamic_compiled", ("torch", "torchao"), 1,
           functools.partial(_setup_torchao, True)),
    Method("torch_int_mm", ("torch",), 1, _setup_torch_int_mm),
    Method("ort_dynamic", ("onnxruntime", "onnx"), 1, _setup_ort_dynamic),
    Method("ort_matmul_integer", ("onnxruntime", "onnx"), 1, _setup_ort_matmul_integer),
)}
METHODS.update(INT4_METHODS)
METHODS.update(HALF_METHODS)
PEERS = ("torch_dynamic", "ort_dynamic")        # what lowbit_linear is compared against
TORCHAO = ("torchao_int8_dynamic", "torchao_int8_dynamic_compiled")
# Ratio columns of the report: (lowbit method, the peers it is compared against: the best of
# them). A column appears when its methods are in the run.
COMPARISONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lowbit_linear", PEERS),
    ("lowbit_linear", ("ort_dynamic",)),
    ("lowbit_linear", TORCHAO),
    ("lowbit_matmul_integer", ("ort_matmul_integer",)),
    ("lowbit_matmul_integer", ("torch_int_mm",)),
    ("lowbit_matmul_integer_plain_b", ("torch_int_mm",)),
    ("lowbit_matmul_integer_plain_b", ("lowbit_matmul_integer",)),
) + INT4_COMPARISONS + HALF_COMPARISONS
# The methods that also get a ratio column against numpy_f32.
NUMPY_RATIOS = ("lowbit_linear",) + tuple(dict.fromkeys(p for p, _ in INT4_COMPARISONS))


def missing_requirements(method: str) -> list[str]:
    return [name for name in METHODS[method].requires if importlib.util.find_spec(name) is None]


def method_available(method: str) -> bool:
    return not missing_requirements(method)

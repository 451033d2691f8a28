"""The 4-bit weight methods: lowbit (w4a8, weight-only), PyTorch's int4 CPU kernel and ONNX
Runtime's MatMulNBits (float32 and int8 compute), each for group sizes 32 and 128.

Every method gets the same symmetric int4 weight (data.quantize_int4_groups), so they do the
same work on the same bytes: 4-bit values plus one scale per group.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np

from .data import (INT4_CHECK_TOLERANCE, check_float, make_weight, make_x, quantize_int4_groups,
                   weight_copy)
from .ort_models import matmul_nbits_model, nbits_sessions
from .spec import Bench, Call, Method

GROUPS = (32, 128)


def _check(K: int, N: int, w: np.ndarray, b: Any = None):
    return lambda M, y: check_float(make_x(M, K), w, b, np.asarray(y), INT4_CHECK_TOLERANCE)


def _int4_copies(K: int, N: int, group: int, copies: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    w, _ = make_weight(K, N)
    return w, [quantize_int4_groups(weight_copy(w, i), group) for i in range(copies)]


def _setup_lowbit(mode: str, group: int, K: int, N: int, threads: int, copies: int) -> Bench:
    import lowbit as lb
    lb.set_num_threads(threads)
    w, weights = _int4_copies(K, N, group, copies)
    packed = [lb.pack_weight(lb.QTensor(q, s, np.zeros(s.shape, np.int8), "int4", 1, group),
                             bits=4, mode=mode) for q, s in weights]

    def calls(M: int) -> list[Call]:
        x = make_x(M, K)
        return [functools.partial(lb.linear, x, pw) for pw in packed]

    return Bench(calls, _check(K, N, w), info={"isa": lb.get_isa()})


def _setup_torch_int4(group: int, K: int, N: int, threads: int, copies: int) -> Bench:
    """aten._weight_int4pack_mm_for_cpu: its fast path takes bfloat16 activations and
    scales (its float32 path is ~30x slower); the calls include the float32 <-> bfloat16 casts."""
    import torch
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    w, weights = _int4_copies(K, N, group, copies)
    packs = []
    for q, s in weights:
        u = torch.from_numpy(q.astype(np.int32) + 8)
        wp = torch.ops.aten._convert_weight_to_int4pack_for_cpu(u, 1)
        scale_zero = torch.stack([torch.from_numpy(s).t(), torch.zeros(s.shape[1], N)], dim=-1)
        packs.append((wp, scale_zero.to(torch.bfloat16).contiguous()))

    def run(x: Any, wp: Any, sz: Any) -> Any:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), wp, group, sz).float()

    def calls(M: int) -> list[Call]:
        x = torch.from_numpy(make_x(M, K))
        return [functools.partial(run, x, wp, sz) for wp, sz in packs]

    return Bench(calls, lambda M, y: _check(K, N, w)(M, y.numpy()), context=torch.inference_mode)


def _setup_ort_nbits(accuracy_level: int, group: int, K: int, N: int, threads: int,
                     copies: int) -> Bench:
    w, weights = _int4_copies(K, N, group, copies)
    sessions = nbits_sessions(lambda i: matmul_nbits_model(*weights[i], group, accuracy_level),
                              copies, threads)

    def calls(M: int) -> list[Call]:
        feed = {"X": make_x(M, K)}
        return [functools.partial(s.run, None, feed) for s in sessions]

    return Bench(calls, lambda M, out: _check(K, N, w)(M, out[0]),
                 info={"accuracy_level": accuracy_level})


def _methods() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for g in GROUPS:
        size = 0.5 + 4.0 / g   # 4-bit values + a 4-byte (lowbit, ONNX Runtime) scale per group
        for m in (
            Method(f"lowbit_w4a8_g{g}", (), size, functools.partial(_setup_lowbit, "w4a8", g)),
            Method(f"lowbit_w4_weight_only_g{g}", (), size,
                   functools.partial(_setup_lowbit, "weight_only", g)),
            # bfloat16 scale + zero per group: the same 4 bytes
            Method(f"torch_int4_g{g}", ("torch",), size, functools.partial(_setup_torch_int4, g)),
            Method(f"ort_nbits_f32_g{g}", ("onnxruntime", "onnx"), size,
                   functools.partial(_setup_ort_nbits, 0, g)),
            Method(f"ort_nbits_int8_g{g}", ("onnxruntime", "onnx"), size,
                   functools.partial(_setup_ort_nbits, 4, g)),
        ):
            out[m.name] = m
    return out


INT4_METHODS = _methods()
# w4a8 against every 4-bit peer; weight-only against the peers that also keep float activations.
INT4_COMPARISONS = tuple(
    comparison for g in GROUPS for comparison in (
        (f"lowbit_w4a8_g{g}", (f"torch_int4_g{g}", f"ort_nbits_f32_g{g}", f"ort_nbits_int8_g{g}")),
        (f"lowbit_w4_weight_only_g{g}", (f"torch_int4_g{g}", f"ort_nbits_f32_g{g}"))))

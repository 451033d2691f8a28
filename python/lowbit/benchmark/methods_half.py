"""The 16-bit float weight methods of the linear suite: lowbit's float16 / bfloat16 weight-only
linears (wf16f32, wbf16f32) and their peers, PyTorch's nn.Linear on a bfloat16 / float16 model
(the weights and the input in that type, as a user of `model.to(torch.bfloat16)` runs it).
Joined into methods.METHODS; NumPy float32 is the other peer."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .data import check_float, make_weight, make_x, weight_copy
from .spec import Bench, Call, Method


def _setup_lowbit_half(dtype: str, K: int, N: int, threads: int, copies: int) -> Bench:
    import lowbit as lb
    lb.set_num_threads(threads)
    w, b = make_weight(K, N)
    packed = [lb.pack_weight(weight_copy(w, i), dtype=dtype) for i in range(copies)]

    def calls(M: int) -> list[Call]:
        x = make_x(M, K)
        return [functools.partial(lb.linear, x, pw, b) for pw in packed]

    return Bench(calls, lambda M, y: check_float(make_x(M, K), w, b, y),
                 info={"isa": lb.get_isa()})


def _setup_torch_half_linear(dtype: str, K: int, N: int, threads: int, copies: int) -> Bench:
    import torch
    from torch import nn
    torch.set_num_threads(threads)
    tdtype = getattr(torch, dtype)
    w, b = make_weight(K, N)
    models = []
    for i in range(copies):
        linear = nn.Linear(K, N)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight_copy(w, i)))
            linear.bias.copy_(torch.from_numpy(b))
        models.append(linear.to(tdtype).eval())

    def calls(M: int) -> list[Call]:
        x = torch.from_numpy(make_x(M, K)).to(tdtype)
        return [functools.partial(model, x) for model in models]

    def check(M: int, y: Any) -> str:
        return check_float(make_x(M, K), w, b, y.float().numpy())

    return Bench(calls, check, context=torch.inference_mode,
                 info={"torch": torch.__version__})


HALF_METHODS: dict[str, Method] = {m.name: m for m in (
    Method("lowbit_f16_weight_only", (), 2, functools.partial(_setup_lowbit_half, "float16")),
    Method("lowbit_bf16_weight_only", (), 2, functools.partial(_setup_lowbit_half, "bfloat16")),
    Method("torch_bf16_linear", ("torch",), 2,
           functools.partial(_setup_torch_half_linear, "bfloat16")),
    Method("torch_f16_linear", ("torch",), 2,
           functools.partial(_setup_torch_half_linear, "float16")),
)}
# Each 16-bit weight-only linear against NumPy float32 and PyTorch's 16-bit nn.Linear.
HALF_COMPARISONS = (
    ("lowbit_f16_weight_only", ("numpy_f32",)),
    ("lowbit_bf16_weight_only", ("numpy_f32",)),
    ("lowbit_bf16_weight_only", ("torch_bf16_linear",)),
    ("lowbit_f16_weight_only", ("torch_f16_linear",)),
)

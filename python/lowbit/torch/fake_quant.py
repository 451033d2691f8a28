"""Fake quantization for QAT: lowbit's quantizers mirrored in PyTorch, value for value, with a
straight-through estimator (and an LSQ gradient for learnable scales).

Weight scales and zero points are not recomputed here: FakeQuantLinear takes them from
QuantConfig.quantize_weight (lowbit.quant.config), the rule post-training quantization uses. The activation rules (the
kernels' per-row quantizers) are written with the same float32 operations in the same order as
the NumPy ones, so the values a fake-quantized layer trains with are the values the converted
kernel computes with.
"""
from __future__ import annotations

from typing import Any

import torch

from .._core.checks import QTYPES

# The symmetric ranges of lowbit.qtensor (its module docstring and _SYMMETRIC_ZERO; the C++ rule
# lowbit::range_params): tests/test_range_params.py holds them to the same bits.
SYMMETRIC_MAX = {"int8": 127, "uint8": 127, "int4": 7, "uint4": 7, "int16": 32767, "uint16": 32767}
SYMMETRIC_ZERO = {"int8": 0, "uint8": 128, "int4": 0, "uint4": 8, "int16": 0, "uint16": 32768}


class FakeQuantize(torch.autograd.Function):
    """y = (clamp(round_half_even(x / s) + z, qmin, qmax) - z) * s.

    Backward (straight-through): dy/dx = 1 where round(x / s) + z lies inside [qmin, qmax],
    0 where it was clamped. dy/ds (LSQ, only when s requires grad) = round(x/s) - x/s inside,
    (q - z) outside, times `grad_scale`, summed over the elements sharing a scale. The zero
    point gets no gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                qmin: int, qmax: int, grad_scale: float) -> torch.Tensor:
        v = x / scale
        r = torch.round(v)
        unclamped = r + zero_point
        inside = (unclamped >= qmin) & (unclamped <= qmax)
        q = unclamped.clamp(qmin, qmax)
        ctx.save_for_backward(inside, v, r, q, zero_point)
        ctx.scale_shape = scale.shape
        ctx.grad_scale = grad_scale
        return (q - zero_point) * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        inside, v, r, q, zero_point = ctx.saved_tensors
        grad_x = grad * inside.to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_s = None
        if ctx.needs_input_grad[1]:
            d = torch.where(inside, r - v, q - zero_point)
            grad_s = (grad * d).sum_to_size(ctx.scale_shape) * ctx.grad_scale
        return grad_x, grad_s, None, None, None, None


def clamp_range(dtype: str, symmetric: bool) -> tuple[int, int]:
    """Symmetric weights use the restricted range around the zero point (as pack_weight's
    max|w| / 127 and / 7 scales do, so -128 / -8 never occur); otherwise the type's range."""
    _, lo, hi = QTYPES[dtype]
    if symmetric:
        z, m = SYMMETRIC_ZERO[dtype], SYMMETRIC_MAX[dtype]
        return z - m, z + m
    return lo, hi


def range_to_params(lo: torch.Tensor, hi: torch.Tensor, dtype: str, symmetric: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch twin of lowbit::range_params (lowbit.h; NumPy calls it through
    lowbit.qtensor._range_to_params): the same float32 operations in the same order, on torch
    tensors so that learned ranges keep their gradients (zero point as a float tensor).
    tests/test_range_params.py holds the two to the same bits."""
    _, qmin, qmax = QTYPES[dtype]
    if symmetric:
        scale = torch.maximum(lo.abs(), hi.abs()) / SYMMETRIC_MAX[dtype]
        zero = torch.full_like(scale, float(SYMMETRIC_ZERO[dtype]))
    else:
        lo = torch.clamp(lo, max=0.0)
        hi = torch.clamp(hi, min=0.0)
        levels = float(qmax - qmin)
        scale = (hi - lo) / levels
        # a range wider than float32 holds: the same two-division form the C++ rule takes
        scale = torch.where(torch.isfinite(scale), scale, hi / levels - lo / levels)
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero = torch.clamp(torch.round(qmin - lo / safe), qmin, qmax)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return scale, zero


def group_view(w: torch.Tensor, group: int) -> torch.Tensor:
    """(N, K) -> (N, G, group), zero-padding a short last group (zeros change no range)."""
    n, k = w.shape
    groups = -(-k // group)
    pad = groups * group - k
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(n, groups, group)


def fake_quantize_weight(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group: int,
                         qmin: int, qmax: int, grad_scale: float = 1.0) -> torch.Tensor:
    """w rounded per group (scale and zero point (N, G)) to integers in [qmin, qmax] and back."""
    g = group_view(w, group)
    y = FakeQuantize.apply(g, scale.unsqueeze(-1), zero.unsqueeze(-1), qmin, qmax, grad_scale)
    return y.reshape(w.shape[0], -1)[:, :w.shape[1]]


def quantize_weight_values(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group: int,
                           qmin: int, qmax: int) -> torch.Tensor:
    """The integer values fake_quantize_weight rounds to (for conversion), as float32."""
    g = group_view(w.detach(), group)
    q = quantized_values(g, scale.unsqueeze(-1), zero.unsqueeze(-1), qmin, qmax)
    return q.reshape(w.shape[0], -1)[:, :w.shape[1]]


def quantized_values(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int,
                     qmax: int) -> torch.Tensor:
    """clamp(round_half_even(x / scale) + zero, qmin, qmax) in float32: QuantizeLinear's
    integers (dividing by the scale), as float32 values."""
    return torch.clamp(torch.round(x / scale) + zero, qmin, qmax)


# How the kernels quantize activations per row at run time (QuantConfig.activation): the
# storage type and symmetry handed to the range rule. rows_uint8: DynamicQuantizeLinear per
# row (the 8-bit kernels); rows_int8_symmetric: max|row| / 127, values in [-127, 127] (W4A8).
ROW_ACTIVATIONS = {"rows_uint8": ("uint8", False), "rows_int8_symmetric": ("int8", True)}


def row_qparams(x: torch.Tensor, activation: str
                ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Scale and zero point (float32, shape (..., 1)) of each row of x along its last axis as
    the `activation` rule (ROW_ACTIVATIONS) computes them, and the integer range the row's
    values round to. Used by QAT's fake quantization and by the ONNX export."""
    dtype, symmetric = ROW_ACTIVATIONS[activation]
    if x.shape[-1]:
        lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    else:
        lo = hi = x.new_zeros(x.shape[:-1] + (1,))
    scale, zero = range_to_params(lo, hi, dtype, symmetric)
    qmin, qmax = clamp_range(dtype, symmetric)
    return scale, zero, qmin, qmax


def _fake_quantize_rows(x: torch.Tensor, activation: str) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    scale, zero, qmin, qmax = row_qparams(rows.detach(), activation)
    return FakeQuantize.apply(rows, scale, zero, qmin, qmax, 1.0).reshape(x.shape)


def fake_quantize_rows_dynamic(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit kernel's activations: DynamicQuantizeLinear (uint8) per row; the row's scale and
    zero point are constants for the gradient."""
    return _fake_quantize_rows(x, "rows_uint8")


def fake_quantize_rows_symmetric(x: torch.Tensor) -> torch.Tensor:
    """The W4A8 kernel's activations: int8 per row, scale max|x| / 127 (1 for a zero row),
    values in [-127, 127]."""
    return _fake_quantize_rows(x, "rows_int8_symmetric")


def fake_quantize_images_dynamic(x: torch.Tensor) -> torch.Tensor:
    """The convolution kernels' dynamic activations: DynamicQuantizeLinear (uint8) per image
    (over all of an image's channels and positions, x's first axis the batch); the image's
    scale and zero point are constants for the gradient."""
    images = x.reshape(x.shape[0], -1) if x.dim() else x.reshape(1, 1)
    scale, zero, qmin, qmax = row_qparams(images.detach(), "rows_uint8")
    return FakeQuantize.apply(images, scale, zero, qmin, qmax, 1.0).reshape(x.shape)

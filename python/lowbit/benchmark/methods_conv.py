"""The convolution suite: MobileNetV2-style layer shapes, their operands and references, the
per-method setups (lowbit, PyTorch float32 and quantized, ONNX Runtime QLinearConv /
ConvInteger / float Conv) and a whole small CNN.

A setup builds a method's weights once for (shape, threads) and returns a spec.Bench whose
calls(batch) makes the timed calls for one batch size (its untimed preparation, such as
quantizing the input or calibrating PyTorch's observers on it, happens there) and whose
check(batch, output) returns the row's correctness fields: `rel_err` (relative RMS error
against the float64 convolution of the float operands), `int_check` for the methods with an
integer result (against an exact int64 NumPy convolution of the same integer operands) and
`inexact` (True when either shows a result that is not what the operation should give: a
peer whose int8 kernels saturate on this CPU shows up here, its timing kept and marked).
Peers are imported inside their setups only, like methods.py's.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .data import FLOAT_CHECK_TOLERANCE, SEED
from .ort_models import (conv_float_model, conv_integer_model, conv_sessions,
                         qlinear_conv_model)
from .spec import Bench, Call, ConvMethod


# ----------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class ConvShape:
    """One 2-D convolution layer: C -> M channels on H x W, a k x k kernel, square stride and
    padding, `groups` groups (groups == C == M: depthwise). `id` names it in tables and on the
    command line; spec() is the geometry as text (what a worker is given)."""
    id: str
    C: int
    M: int
    H: int
    W: int
    k: int
    stride: int = 1
    pad: int = 0
    groups: int = 1

    def spec(self) -> str:
        return (f"{self.C}-{self.M}-{self.H}x{self.W}-k{self.k}-s{self.stride}-p{self.pad}"
                f"-g{self.groups}")

    @property
    def out_hw(self) -> tuple[int, int]:
        return ((self.H + 2 * self.pad - self.k) // self.stride + 1,
                (self.W + 2 * self.pad - self.k) // self.stride + 1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image."""
        oh, ow = self.out_hw
        return self.M * oh * ow * (self.C // self.groups) * self.k * self.k

    @property
    def kind(self) -> str:
        if self.groups == self.C == self.M and self.groups > 1:
            return f"depthwise {self.k}x{self.k}"
        return f"{self.k}x{self.k}" + (f", {self.groups} groups" if self.groups > 1 else "")

    def describe(self) -> str:
        return (f"{self.kind} s{self.stride}, {self.C}->{self.M} on {self.H}x{self.W}")


# MobileNetV2 layers (NCHW float32): the stem, depthwise 3x3 at strides 1 and 2, 1x1 expand and
# project, and one dense 3x3 (an extra k x k case).
CONV_SHAPES: tuple[ConvShape, ...] = (
    ConvShape("conv1_s2", 3, 32, 224, 224, 3, 2, 1, 1),
    ConvShape("dw144_s1", 144, 144, 56, 56, 3, 1, 1, 144),
    ConvShape("dw144_s2", 144, 144, 56, 56, 3, 2, 1, 144),
    ConvShape("dw576_s1", 576, 576, 14, 14, 3, 1, 1, 576),
    ConvShape("pw24_144", 24, 144, 56, 56, 1, 1, 0, 1),
    ConvShape("pw144_24", 144, 24, 56, 56, 1, 1, 0, 1),
    ConvShape("pw96_576", 96, 576, 14, 14, 1, 1, 0, 1),
    ConvShape("k3_32_32", 32, 32, 56, 56, 3, 1, 1, 1),
)
QUICK_CONV_SHAPES = ("conv1_s2", "dw144_s1", "pw24_144", "pw144_24")
_BY_ID = {s.id: s for s in CONV_SHAPES}
_SPEC = re.compile(r"^(\d+)-(\d+)-(\d+)x(\d+)-k(\d+)(?:-s(\d+))?(?:-p(\d+))?(?:-g(\d+))?$")


def conv_shape(text: str) -> ConvShape:
    """A built-in shape by id ("dw144_s1") or any geometry as C-M-HxW-kK[-sS][-pP][-gG]
    ("16-16-8x8-k3-s1-p1-g16"; stride 1, padding k // 2 and 1 group by default). A spec equal
    to a built-in shape's geometry gets its id."""
    text = text.strip()
    if text in _BY_ID:
        return _BY_ID[text]
    m = _SPEC.match(text.lower())
    if not m:
        raise ValueError(f"unknown conv shape {text!r}: a built-in id ({', '.join(_BY_ID)}) or "
                         "C-M-HxW-kK[-sS][-pP][-gG]")
    C, M, H, W, k = (int(v) for v in m.groups()[:5])
    stride = int(m.group(6) or 1)
    pad = int(m.group(7)) if m.group(7) is not None else k // 2
    groups = int(m.group(8) or 1)
    if min(C, M, H, W, k, stride, groups) < 1 or C % groups or M % groups:
        raise ValueError(f"bad conv shape {text!r}: sizes must be >= 1, C and M multiples of G")
    if H + 2 * pad < k or W + 2 * pad < k:
        raise ValueError(f"bad conv shape {text!r}: the kernel is larger than the padded input")
    for shape in CONV_SHAPES:
        if (shape.C, shape.M, shape.H, shape.W, shape.k, shape.stride, shape.pad,
                shape.groups) == (C, M, H, W, k, stride, pad, groups):
            return shape
    spec = f"{C}-{M}-{H}x{W}-k{k}-s{stride}-p{pad}-g{groups}"
    return ConvShape(spec, C, M, H, W, k, stride, pad, groups)


# ----------------------------------------------------------------------------- operands


def make_conv_weight(shape: ConvShape) -> tuple[np.ndarray, np.ndarray]:
    """Float32 (M, C / groups, k, k) weight (He-like scale) and (M,) bias, seeded by shape."""
    rng = np.random.default_rng([SEED, 3, shape.C, shape.M, shape.k, shape.groups])
    fan_in = shape.C // shape.groups * shape.k * shape.k
    w = rng.standard_normal((shape.M, shape.C // shape.groups, shape.k, shape.k),
                            dtype=np.float32) * np.float32(1.0 / math.sqrt(fan_in))
    b = rng.standard_normal(shape.M, dtype=np.float32) * np.float32(0.1)
    return w, b


def make_conv_x(shape: ConvShape, batch: int) -> np.ndarray:
    """Float32 NCHW input, seeded by shape and batch."""
    rng = np.random.default_rng([SEED, 4, batch, shape.C, shape.H, shape.W])
    return rng.standard_normal((batch, shape.C, shape.H, shape.W), dtype=np.float32)


def quantize_conv_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel: scale = max|w_m| / 127, q = round-half-even(w / scale)
    in [-127, 127]. The weight every integer method is given."""
    flat = w.reshape(w.shape[0], -1)
    scale = np.abs(flat).max(axis=1) / np.float32(127)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q), scale


def quantize_input_u8(x: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Asymmetric uint8 per tensor over the range of x and 0 (ONNX DynamicQuantizeLinear's
    rule): the already-quantized input of the ONNX Runtime integer methods."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = np.float32((hi - lo) / 255.0 if hi > lo else 1.0)
    zero = int(np.clip(np.rint(-lo / scale), 0, 255))
    q = np.clip(np.rint(x / scale) + zero, 0, 255).astype(np.uint8)
    return q, float(scale), zero


def output_qparams(y: np.ndarray) -> tuple[float, int]:
    """uint8 output scale and zero point covering the range of y (and 0)."""
    lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
    scale = float(np.float32((hi - lo) / 255.0 if hi > lo else 1.0))
    return scale, int(np.clip(np.rint(-lo / scale), 0, 255))


def conv_reference(x: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """float64 NCHW convolution of x (zero padding) with w, tap by tap (exact for integer
    operands: every partial sum here is far below 2**53)."""
    n = x.shape[0]
    s, p, g = shape.stride, shape.pad, shape.groups
    oh, ow = shape.out_hw
    xp = np.zeros((n, shape.C, shape.H + 2 * p, shape.W + 2 * p), np.float64)
    xp[:, :, p:p + shape.H, p:p + shape.W] = x
    wd = w.astype(np.float64)
    y = np.zeros((n, shape.M, oh, ow), np.float64)
    cg, mg = shape.C // g, shape.M // g
    for i in range(shape.k):
        for j in range(shape.k):
            patch = xp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
            if cg == 1 and mg == 1:   # depthwise
                y += patch * wd[:, 0, i, j].reshape(1, -1, 1, 1)
                continue
            for gi in range(g):
                part = np.tensordot(patch[:, gi * cg:(gi + 1) * cg], wd[gi * mg:(gi + 1) * mg, :, i, j],
                                    axes=([1], [1]))          # (n, oh, ow, mg)
                y[:, gi * mg:(gi + 1) * mg] += part.transpose(0, 3, 1, 2)
    return y


def float_reference(shape: ConvShape, batch: int) -> np.ndarray:
    w, b = make_conv_weight(shape)
    return conv_reference(make_conv_x(shape, batch), w, shape) + b.reshape(1, -1, 1, 1)


def rel_err(got: Any, ref: np.ndarray) -> float:
    """Relative RMS error of got against ref."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != ref.shape:
        raise RuntimeError(f"wrong result shape {got.shape}, expected {ref.shape}")
    if not np.all(np.isfinite(got)):
        raise RuntimeError("wrong result: not finite")
    return float(np.sqrt(np.mean((got - ref) ** 2) / max(float(np.mean(ref ** 2)), 1e-30)))


def float_check(ref: np.ndarray, got: Any, tolerance: float = FLOAT_CHECK_TOLERANCE
                ) -> dict[str, Any]:
    err = rel_err(got, ref)
    return {"check": f"rel_rms_err={err:.2g}", "rel_err": err, "int_check": None,
            "inexact": not err <= tolerance}


def exact_int_check(ref_acc: np.ndarray, got: Any) -> tuple[str, bool]:
    """int32 output against the int64 reference accumulator: (summary, exact)."""
    got = np.asarray(got)
    if got.dtype != np.int32:
        raise RuntimeError(f"wrong result dtype {got.dtype}, expected int32")
    if got.shape != ref_acc.shape:
        raise RuntimeError(f"wrong result shape {got.shape}, expected {ref_acc.shape}")
    diff = np.abs(got.astype(np.float64) - ref_acc)
    bad = int(np.count_nonzero(diff))
    if not bad:
        return "exact", True
    return f"{bad} of {diff.size} int32 values differ (max abs diff {diff.max():.0f})", False


def requantized_check(ref_real: np.ndarray, got: Any) -> tuple[str, bool]:
    """uint8 output against the exact real-valued requantization of the int64 accumulator
    (before rounding): rounding allows |diff| <= 1 (the peers' rounding rules and bias
    quantization differ); anything more is a wrong accumulator."""
    got = np.asarray(got)
    if got.shape != ref_real.shape:
        raise RuntimeError(f"wrong result shape {got.shape}, expected {ref_real.shape}")
    ref = np.clip(np.rint(ref_real), 0, 255)
    diff = np.abs(got.astype(np.float64) - ref)
    far = int(np.count_nonzero(diff > 1))
    off = int(np.count_nonzero(diff == 1))
    if far:
        return (f"{far} of {diff.size} uint8 values differ by more than 1 (max abs diff "
                f"{diff.max():.0f})", False)
    if off:
        return f"exact up to requantization rounding (±1 on {off} of {diff.size})", True
    return "exact", True


def _combine(err: float, int_note: str, int_ok: bool,
             tolerance: float = FLOAT_CHECK_TOLERANCE) -> dict[str, Any]:
    return {"check": f"rel_rms_err={err:.2g}; int: {int_note}", "rel_err": err,
            "int_check": int_note, "inexact": not (int_ok and err <= tolerance)}


def conv_params(shape: ConvShape) -> list[int]:
    """lowbit's geometry list: stride_h, stride_w, dilation_h, dilation_w, pads t, l, b, r."""
    s, p = shape.stride, shape.pad
    return [s, s, 1, 1, p, p, p, p]


# ----------------------------------------------------------------------------- lowbit


def _import_lowbit(threads: int) -> Any:
    import lowbit as lb   # absolute: see methods._import_lowbit
    lb.set_num_threads(threads)
    return lb


def lowbit_conv_api(lb: Any) -> str:
    """Which lowbit call lowbit_conv times: the layer once it exists, else the calls it wraps."""
    nn = getattr(lb, "nn", None)
    return "lowbit.nn.QuantizedConv2d" if hasattr(nn, "QuantizedConv2d") else "_C.conv_float"


def _setup_lowbit_conv(shape: ConvShape, threads: int) -> Bench:
    lb = _import_lowbit(threads)
    w, b = make_conv_weight(shape)
    api = lowbit_conv_api(lb)
    if api == "lowbit.nn.QuantizedConv2d":
        layer = lb.nn.QuantizedConv2d.from_float(w, b, stride=shape.stride, padding=shape.pad,
                                                 dilation=1, groups=shape.groups)
        run: Callable[[np.ndarray], Any] = layer
    else:
        from lowbit._core import _C
        q, scale = quantize_conv_weight(w)
        packed = _C.pack_conv(q, shape.groups, None)
        params = conv_params(shape)
        run = functools.partial(_conv_float, _C, packed, params, scale, b)

    def calls(batch: int) -> list[Call]:
        return [functools.partial(run, make_conv_x(shape, batch))]

    return Bench(calls, lambda batch, y: float_check(float_reference(shape, batch), y),
                 info={"isa": lb.get_isa(), "api": api})


def _conv_float(_C: Any, packed: Any, params: list[int], scale: np.ndarray, bias: np.ndarray,
                x: np.ndarray) -> np.ndarray:
    return _C.conv_float(x, packed, params, True, 1.0, 0, _C.QType.uint8, scale, bias,
                         -np.inf, np.inf)


def _lowbit_packed(shape: ConvShape, threads: int) -> tuple[Any, Any, np.ndarray, np.ndarray,
                                                             np.ndarray, Any, list[int]]:
    """What the lowbit integer methods share: (lowbit, its _C, the float bias, the int8 weight,
    its per-channel scales, the packed weight, the geometry list)."""
    lb = _import_lowbit(threads)
    from lowbit._core import _C
    w, b = make_conv_weight(shape)
    q, wscale = quantize_conv_weight(w)
    return lb, _C, b, q, wscale, _C.pack_conv(q, shape.groups, None), conv_params(shape)


def _setup_lowbit_conv_integer(shape: ConvShape, threads: int) -> Bench:
    """uint8 x int8 -> exact int32 on the pre-packed weight (ConvInteger's work, like
    ort_convinteger): the same quantized input and weight as the ONNX Runtime methods."""
    lb, _C, b, q, wscale, packed, params = _lowbit_packed(shape, threads)
    state: dict[int, tuple[np.ndarray, float, int]] = {}

    def calls(batch: int) -> list[Call]:
        xq, xs, xz = state[batch] = quantize_input_u8(make_conv_x(shape, batch))
        return [functools.partial(_C.conv_integer, xq, xz, packed, params)]

    def check(batch: int, acc: Any) -> dict[str, Any]:
        xq, xs, xz = state[batch]
        ref_acc = conv_reference(xq.astype(np.float64) - xz, q, shape)
        note, ok = exact_int_check(ref_acc, acc)
        y = np.asarray(acc, np.float64) * xs * wscale.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
        return _combine(rel_err(y, float_reference(shape, batch)), note, ok)

    return Bench(calls, check, info={"isa": lb.get_isa()})


def _qlinear_state(shape: ConvShape, batch: int, wscale: np.ndarray, b: np.ndarray
                   ) -> tuple[np.ndarray, float, int, float, int]:
    """The QLinearConv operands of ort_qlinearconv: uint8 input, (x scale, zero), and the uint8
    output's (scale, zero) over the float output's range."""
    xq, xs, xz = quantize_input_u8(make_conv_x(shape, batch))
    ys, yz = output_qparams(float_reference(shape, batch))
    return xq, xs, xz, ys, yz


def _setup_lowbit_qlinear_conv(shape: ConvShape, threads: int) -> Bench:
    """`_C.qlinear_conv` (what `lowbit.qlinear_conv` runs) on the pre-packed weight: the
    operands of ort_qlinearconv (uint8 NCHW in, int32 bias, uint8 NCHW out)."""
    lb, _C, b, q, wscale, packed, params = _lowbit_packed(shape, threads)
    state: dict[int, Any] = {}

    def calls(batch: int) -> list[Call]:
        xq, xs, xz, ys, yz = _qlinear_state(shape, batch, wscale, b)
        bias_q = np.rint(b.astype(np.float64) / (xs * wscale.astype(np.float64))).astype(np.int32)
        mult = (np.float32(xs) * wscale / np.float32(ys)).astype(np.float32)
        state[batch] = (xq, xz, yz, bias_q, mult)
        return [functools.partial(_C.qlinear_conv, xq, xz, packed, params, bias_q, mult, yz,
                                  _C.QType.uint8)]

    def check(batch: int, out: Any) -> dict[str, Any]:
        xq, xz, yz, bias_q, mult = state[batch]
        ys = output_qparams(float_reference(shape, batch))[0]
        acc = conv_reference(xq.astype(np.float64) - xz, q, shape) + bias_q.reshape(1, -1, 1, 1)
        note, ok = requantized_check(acc * mult.astype(np.float64).reshape(1, -1, 1, 1) + yz, out)
        y = (np.asarray(out, np.float64) - yz) * ys
        return _combine(rel_err(y, float_reference(shape, batch)), note, ok)

    return Bench(calls, check, info={"isa": lb.get_isa()})


def _setup_lowbit_conv_chain(shape: ConvShape, threads: int) -> Bench:
    """One layer of lowbit's integer chain (`_C.conv_float` with a uint8 input and an output
    scale, what a chained static `lowbit.torch.QuantizedConv2d` runs): uint8 NHWC in (the
    input of ort_qlinearconv, transposed beforehand), the float epilogue quantized with the
    output's (scale, zero) of ort_qlinearconv, uint8 NHWC out."""
    lb, _C, b, q, wscale, packed, params = _lowbit_packed(shape, threads)
    state: dict[int, Any] = {}

    def calls(batch: int) -> list[Call]:
        xq, xs, xz, ys, yz = _qlinear_state(shape, batch, wscale, b)
        x_nhwc = np.ascontiguousarray(xq.transpose(0, 2, 3, 1))
        state[batch] = (xq, xs, xz, ys, yz)
        return [functools.partial(_C.conv_float, x_nhwc, packed, params, False, xs, xz,
                                  _C.QType.uint8, wscale, b, -math.inf, math.inf, ys, yz,
                                  _C.QType.uint8)]

    def check(batch: int, out: Any) -> dict[str, Any]:
        xq, xs, xz, ys, yz = state[batch]
        acc = conv_reference(xq.astype(np.float64) - xz, q, shape)
        real = (acc * (np.float64(np.float32(xs)) * wscale.astype(np.float64)).reshape(1, -1, 1, 1)
                + b.astype(np.float64).reshape(1, -1, 1, 1)) / ys + yz
        got = np.asarray(out).transpose(0, 3, 1, 2)
        note, ok = requantized_check(real, got)
        y = (got.astype(np.float64) - yz) * ys
        return _combine(rel_err(y, float_reference(shape, batch)), note, ok)

    return Bench(calls, check, info={"isa": lb.get_isa()})


# ----------------------------------------------------------------------------- PyTorch


def _import_torch(threads: int) -> Any:
    import torch
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):   # only settable before any inter-op work
        torch.set_num_interop_threads(1)
    return torch


def _torch_conv(torch: Any, shape: ConvShape, w: np.ndarray, b: np.ndarray) -> Any:
    conv = torch.nn.Conv2d(shape.C, shape.M, shape.k, stride=shape.stride, padding=shape.pad,
                           groups=shape.groups)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(b))
    return conv.eval()


def _setup_torch_f32(shape: ConvShape, threads: int) -> Bench:
    torch = _import_torch(threads)
    w, b = make_conv_weight(shape)
    conv = _torch_conv(torch, shape, w, b)

    def calls(batch: int) -> list[Call]:
        return [functools.partial(conv, torch.from_numpy(make_conv_x(shape, batch)))]

    return Bench(calls, lambda batch, y: float_check(float_reference(shape, batch), y.numpy()),
                 context=torch.inference_mode,
                 info={"mkldnn": bool(torch.backends.mkldnn.is_available())})


def _torch_ao_model(torch: Any, shape: ConvShape, w: np.ndarray, b: np.ndarray,
                    x: np.ndarray) -> Any:
    """QuantStub -> Conv2d -> DeQuantStub, eager-mode static quantization with the x86
    engine's default qconfig, calibrated on x."""
    from torch.ao.quantization import DeQuantStub, QuantStub, convert, get_default_qconfig, prepare
    torch.backends.quantized.engine = "x86"

    class QuantConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant, self.conv, self.dequant = QuantStub(), _torch_conv(torch, shape, w, b), DeQuantStub()

        def forward(self, t: Any) -> Any:
            return self.dequant(self.conv(self.quant(t)))

    model = QuantConv().eval()
    model.qconfig = get_default_qconfig("x86")
    prepare(model, inplace=True)
    with torch.inference_mode():
        model(torch.from_numpy(x))
    convert(model, inplace=True)
    return model


def _torch_ao_int_reference(torch: Any, shape: ConvShape, model: Any, xq: Any) -> np.ndarray:
    """The quantized conv's output before rounding, from its integer operands (int64 exact)."""
    conv = model.conv
    wq = conv.weight()
    q = wq.int_repr().numpy().astype(np.float64)
    if wq.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        ws = wq.q_per_channel_scales().numpy().astype(np.float64)
        wz = wq.q_per_channel_zero_points().numpy().astype(np.float64)
    else:
        ws = np.full(shape.M, wq.q_scale(), np.float64)
        wz = np.full(shape.M, wq.q_zero_point(), np.float64)
    xs, xz = float(xq.q_scale()), int(xq.q_zero_point())
    acc = conv_reference(xq.int_repr().numpy().astype(np.float64) - xz,
                         q - wz.reshape(-1, 1, 1, 1), shape)
    bias = conv.bias()
    bias = np.zeros(shape.M) if bias is None else bias.detach().numpy().astype(np.float64)
    ys, yz = float(conv.scale), int(conv.zero_point)
    return ((acc * (xs * ws).reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)) / ys + yz)


def _setup_torch_ao(conv_only: bool, shape: ConvShape, threads: int) -> Bench:
    """conv_only False: the whole converted module (quantize, quantized conv, dequantize: float
    in and out); True: just its quantized conv on an input quantized beforehand (untimed)."""
    torch = _import_torch(threads)
    w, b = make_conv_weight(shape)
    state: dict[int, tuple[Any, Any]] = {}

    def calls(batch: int) -> list[Call]:
        x = make_conv_x(shape, batch)
        model = _torch_ao_model(torch, shape, w, b, x)
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            xq = model.quant(xt)
        state[batch] = (model, xq)
        return [functools.partial(model.conv, xq) if conv_only else functools.partial(model, xt)]

    def check(batch: int, y: Any) -> dict[str, Any]:
        model, xq = state[batch]
        ref = float_reference(shape, batch)
        if not conv_only:
            return float_check(ref, y.numpy())
        note, ok = requantized_check(_torch_ao_int_reference(torch, shape, model, xq),
                                     y.int_repr().numpy())
        return _combine(rel_err(y.dequantize().numpy(), ref), note, ok)

    return Bench(calls, check, context=torch.inference_mode,
                 info={"engine": "x86", "torch": torch.__version__})


# ----------------------------------------------------------------------------- ONNX Runtime


def _setup_ort_conv_f32(shape: ConvShape, threads: int) -> Bench:
    w, b = make_conv_weight(shape)
    session, info = conv_sessions(conv_float_model(w, b, shape), threads)

    def calls(batch: int) -> list[Call]:
        return [functools.partial(session.run, None, {"X": make_conv_x(shape, batch)})]

    return Bench(calls, lambda batch, out: float_check(float_reference(shape, batch), out[0]),
                 info=info)


def _setup_ort_convinteger(shape: ConvShape, threads: int) -> Bench:
    w, b = make_conv_weight(shape)
    q, wscale = quantize_conv_weight(w)
    state: dict[int, tuple[np.ndarray, float, int]] = {}
    sessions: dict[int, Any] = {}
    info: dict[str, Any] = {}

    def calls(batch: int) -> list[Call]:
        xq, xs, xz = state[batch] = quantize_input_u8(make_conv_x(shape, batch))
        # The input zero point is an initializer: one session per zero point (per batch here),
        # the previous one closed first (an idle session's pool must not compete for the cores).
        sessions.clear()
        sessions[batch], session_info = conv_sessions(conv_integer_model(q, xz, shape), threads)
        info.update(session_info)
        return [functools.partial(sessions[batch].run, None, {"X": xq})]

    def check(batch: int, out: Any) -> dict[str, Any]:
        xq, xs, xz = state[batch]
        note, ok = exact_int_check(conv_reference(xq.astype(np.float64) - xz, q, shape), out[0])
        y = np.asarray(out[0], np.float64) * xs * wscale.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
        return _combine(rel_err(y, float_reference(shape, batch)), note, ok)

    return Bench(calls, check, info=info)


def _setup_ort_qlinearconv(shape: ConvShape, threads: int) -> Bench:
    """QLinearConv: uint8 input (quantized beforehand, per tensor), int8 per-channel weight,
    int32 bias (bias / (x_scale * w_scale)), uint8 output over the float output's range."""
    w, b = make_conv_weight(shape)
    q, wscale = quantize_conv_weight(w)
    state: dict[int, Any] = {}
    info: dict[str, Any] = {}

    def calls(batch: int) -> list[Call]:
        state.clear()   # the previous batch's session (see _setup_ort_convinteger)
        xq, xs, xz = quantize_input_u8(make_conv_x(shape, batch))
        ys, yz = output_qparams(float_reference(shape, batch))
        bias_q = np.rint(b.astype(np.float64) / (xs * wscale.astype(np.float64))).astype(np.int32)
        session, session_info = conv_sessions(
            qlinear_conv_model(q, wscale, bias_q, xs, xz, ys, yz, shape), threads)
        info.update(session_info)
        state[batch] = (xq, xs, xz, ys, yz, bias_q, session)
        return [functools.partial(session.run, None, {"X": xq})]

    def check(batch: int, out: Any) -> dict[str, Any]:
        xq, xs, xz, ys, yz, bias_q, _ = state[batch]
        acc = conv_reference(xq.astype(np.float64) - xz, q, shape) + bias_q.reshape(1, -1, 1, 1)
        mult = (np.float32(xs) * wscale / np.float32(ys)).astype(np.float64)
        note, ok = requantized_check(acc * mult.reshape(1, -1, 1, 1) + yz, out[0])
        y = (np.asarray(out[0], np.float64) - yz) * ys
        return _combine(rel_err(y, float_reference(shape, batch)), note, ok)

    return Bench(calls, check, info=info)


# ----------------------------------------------------------------------------- whole model

DIGITS_MODEL = "digits_cnn"
MBV2_MODEL = "mbv2_blocks"
MODELS = (DIGITS_MODEL, MBV2_MODEL)
MODEL_INPUTS = {DIGITS_MODEL: (1, 8, 8),       # scikit-learn's 8x8 digits
                MBV2_MODEL: (3, 112, 112)}
MODEL_DESCRIPTIONS = {
    DIGITS_MODEL: "Conv2d(1, 16, 3, pad 1) + ReLU, Conv2d(16, 32, 3, pad 1) + ReLU, 2x2 max pool, "
                  "Linear(512, 10) on 1x8x8 inputs (scikit-learn digits' size)",
    MBV2_MODEL: "MobileNetV2's stem and first inverted-residual blocks on 3x112x112: Conv2d(3, 16, 3, "
                "stride 2) + BN + ReLU6, then blocks (expand 1x1 + BN + ReLU6, depthwise 3x3 + BN + "
                "ReLU6, project 1x1 + BN; a residual add where the shape allows) 16->24 s2, 24->24, "
                "24->32 s2, 32->32, then global average pool and Linear(32, 10)",
}


def _digits_cnn(torch: Any) -> Any:
    """Conv2d(1, 16, 3, pad 1) + ReLU, Conv2d(16, 32, 3, pad 1) + ReLU, 2x2 max pool, Linear
    (512 -> 10): seeded random weights (the timing and the error don't need trained ones)."""
    from torch import nn
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10)).eval()


def _mbv2_blocks(torch: Any) -> Any:
    """MODEL_DESCRIPTIONS[MBV2_MODEL], seeded random weights and BatchNorm statistics."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 6) -> None:
            super().__init__()
            h = c_in * expand
            self.body = nn.Sequential(
                nn.Conv2d(c_in, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                nn.Conv2d(h, h, 3, stride=stride, padding=1, groups=h, bias=False),
                nn.BatchNorm2d(h), nn.ReLU6(),
                nn.Conv2d(h, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
            self.residual = stride == 1 and c_in == c_out

        def forward(self, x: Any) -> Any:
            y = self.body(x)
            return x + y if self.residual else y

    torch.manual_seed(SEED)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                        nn.ReLU6(), Block(16, 24, 2), Block(24, 24, 1), Block(24, 32, 2),
                        Block(32, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _build_model(torch: Any, model: str) -> Any:
    if model == DIGITS_MODEL:
        return _digits_cnn(torch)
    if model == MBV2_MODEL:
        return _mbv2_blocks(torch)
    raise ValueError(f"unknown model {model!r}")


def make_model_x(model: str, batch: int, stream: int = 5) -> np.ndarray:
    rng = np.random.default_rng([SEED, stream, batch, MODELS.index(model)])
    if model == DIGITS_MODEL:
        return rng.random((batch,) + MODEL_INPUTS[model], dtype=np.float32)   # pixels in [0, 1)
    return rng.standard_normal((batch,) + MODEL_INPUTS[model], dtype=np.float32)


def _model_reference(torch: Any, model: str, batch: int) -> np.ndarray:
    with torch.inference_mode():
        net = _build_model(torch, model).double()
        return net(torch.from_numpy(make_model_x(model, batch)).double()).numpy()


def _setup_model(scheme: Optional[str], model: str, threads: int,
                 channels_last: bool = False) -> Bench:
    """scheme None: the float32 model; "dynamic": quantize_ with Int8DynamicConfig;
    "static" / "static_unchained": prepare with Int8StaticConfig, calibrated on 4 seeded
    batches of 8 (not the timed inputs), convert with integer_chain on / off. channels_last:
    the model (float: its parameters too) and the timed input in torch.channels_last memory."""
    torch = _import_torch(threads)
    net = _build_model(torch, model)
    info: dict[str, Any] = {}
    if scheme is not None:
        lb = _import_lowbit(threads)
        import lowbit.torch as lbt
        if not hasattr(lbt, "QuantizedConv2d"):
            raise ModuleNotFoundError("lowbit.torch.QuantizedConv2d does not exist yet: "
                                      "quantize_ would leave the convolutions float")
        if scheme == "dynamic":
            lbt.quantize_(net, lb.Int8DynamicConfig())
        else:
            if scheme == "static_unchained" and "integer_chain" not in inspect.signature(
                    lbt.convert).parameters:
                raise ModuleNotFoundError("lowbit.torch.convert has no integer_chain yet")
            lbt.prepare(net, lb.Int8StaticConfig())
            with torch.inference_mode():
                for i in range(4):
                    net(torch.from_numpy(make_model_x(model, 8, stream=100 + i)))
            kw = {"integer_chain": False} if scheme == "static_unchained" else {}
            summary = lbt.convert(net, **kw)
            info["chain_links"] = sum("uint8 to" in r.note for r in summary.replaced)
        info.update({"isa": lb.get_isa(), "lowbit_modules": sorted(
            {type(m).__name__ for m in net.modules() if type(m).__module__.startswith("lowbit")})})

    if channels_last:
        net = net.to(memory_format=torch.channels_last)

    def calls(batch: int) -> list[Call]:
        x = torch.from_numpy(make_model_x(model, batch))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return [functools.partial(net, x)]

    return Bench(calls, lambda batch, y: float_check(_model_reference(torch, model, batch),
                                                     y.contiguous().numpy()),
                 context=torch.inference_mode, info=info)


# ----------------------------------------------------------------------------- registry

# Registry order is the column order of the report tables.
CONV_METHODS: dict[str, ConvMethod] = {m.name: m for m in (
    ConvMethod("lowbit_conv", (), _setup_lowbit_conv),
    ConvMethod("lowbit_conv_integer", (), _setup_lowbit_conv_integer),
    ConvMethod("lowbit_qlinear_conv", (), _setup_lowbit_qlinear_conv),
    ConvMethod("lowbit_conv_chain", (), _setup_lowbit_conv_chain),
    ConvMethod("torch_f32_conv", ("torch",), _setup_torch_f32),
    ConvMethod("torch_ao_conv", ("torch",), functools.partial(_setup_torch_ao, False)),
    ConvMethod("torch_ao_qconv", ("torch",), functools.partial(_setup_torch_ao, True)),
    ConvMethod("ort_qlinearconv", ("onnxruntime", "onnx"), _setup_ort_qlinearconv),
    ConvMethod("ort_convinteger", ("onnxruntime", "onnx"), _setup_ort_convinteger),
    ConvMethod("ort_conv_f32", ("onnxruntime", "onnx"), _setup_ort_conv_f32),
)}
# The whole-model methods: their "shape" is a model name (MODELS).
MODEL_METHODS: dict[str, ConvMethod] = {m.name: m for m in (
    ConvMethod("torch_model_f32", ("torch",), functools.partial(_setup_model, None), model=True),
    ConvMethod("torch_model_f32_cl", ("torch",),
               functools.partial(_setup_model, None, channels_last=True), model=True),
    ConvMethod("lowbit_model_dynamic", ("torch",), functools.partial(_setup_model, "dynamic"),
               model=True),
    ConvMethod("lowbit_model_static", ("torch",), functools.partial(_setup_model, "static"),
               model=True),
    ConvMethod("lowbit_model_static_unchained", ("torch",),
               functools.partial(_setup_model, "static_unchained"), model=True),
    ConvMethod("lowbit_model_static_cl", ("torch",),
               functools.partial(_setup_model, "static", channels_last=True), model=True),
)}
ALL_CONV_METHODS: dict[str, ConvMethod] = {**CONV_METHODS, **MODEL_METHODS}

CONV_PEERS = ("torch_f32_conv", "torch_ao_conv", "torch_ao_qconv", "ort_qlinearconv",
              "ort_convinteger", "ort_conv_f32")
# The peers that, like lowbit_conv, take float32 in and give float32 out.
CONV_FLOAT_PEERS = ("torch_f32_conv", "torch_ao_conv", "ort_conv_f32")
# Ratio columns: (lowbit method, peers: the fastest of them), as methods.COMPARISONS.
CONV_COMPARISONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lowbit_conv", CONV_PEERS),
    ("lowbit_conv", CONV_FLOAT_PEERS),
    ("lowbit_conv_integer", ("ort_convinteger",)),
    ("lowbit_qlinear_conv", ("ort_qlinearconv", "torch_ao_qconv")),
    ("lowbit_conv_chain", ("ort_qlinearconv", "torch_ao_qconv")),
)
MODEL_COMPARISONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lowbit_model_dynamic", ("torch_model_f32",)),
    ("lowbit_model_static", ("torch_model_f32",)),
    ("lowbit_model_static", ("lowbit_model_static_unchained",)),
    ("lowbit_model_static_cl", ("torch_model_f32_cl",)),
    ("lowbit_model_static", ("torch_model_f32", "torch_model_f32_cl")),
)
CONV_TARGET = 1.5   # the target: lowbit_conv at least this much faster than every peer


def conv_shape_of(method: str, text: str) -> Any:
    """What a method's setup takes: a ConvShape, or the model name for a model method."""
    return text if ALL_CONV_METHODS[method].model else conv_shape(text)


def conv_missing_requirements(method: str) -> list[str]:
    import importlib.util
    return [name for name in ALL_CONV_METHODS[method].requires
            if importlib.util.find_spec(name) is None]


def shapes_of(texts: Sequence[str]) -> list[ConvShape]:
    return [conv_shape(t) for t in texts]


def fastest(rows: Sequence[Optional[dict[str, Any]]]) -> Optional[dict[str, Any]]:
    ok = [r for r in rows if r is not None and r.get("status") == "ok"]
    return min(ok, key=lambda r: r["seconds"]) if ok else None

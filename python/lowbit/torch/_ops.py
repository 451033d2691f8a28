"""lowbit's layer computations as PyTorch operators (torch.library, namespace `lowbit`).

One operator per kernel family, named as everywhere else in lowbit (docs/design.md):

    lowbit::linear_w8a8(x, packed, scale, bias, in_features, out_features, weight_type)
    lowbit::linear_w8a8_static(..., weight_type, input_scale, input_zero_point, input_type)
    lowbit::linear_w8f32(x, packed, scale, bias, in_features, out_features, weight_type)
    lowbit::linear_w4a8(x, packed, bias, in_features, out_features, group_size, symmetric)
    lowbit::linear_w4f32(x, packed, bias, in_features, out_features, group_size, symmetric)
    lowbit::linear_wf16f32(x, packed, bias, in_features, out_features)
    lowbit::linear_wbf16f32(x, packed, bias, in_features, out_features)
    lowbit::embedding(indices, qweight, scale, bits, embedding_dim, group_size)

`packed` is the weight's packed bytes (`PackedWeight.storage()`) in a uint8 tensor: the
operators take and return torch tensors, and the kernels read the tensors' memory directly
(lowbit._core._C's *_at entries take addresses; nothing goes through NumPy). Each operator has
a fake (meta) implementation, so torch.compile(fullgraph=True) and torch.export trace through
it, and an autograd formula that refuses (the layers are inference-only).

Numerics: x of dtype bfloat16 or float16 is widened to float32 (exactly), the float32 kernel
runs, and the float32 result is rounded once to x's dtype; float32 x is used as is. The
compiled graph calls the same implementation, so compiled output equals eager bit for bit.

Eager calls of the layers skip the dispatcher (about 1.7 us per call, more than the kernel at
small shapes): `eager(x)` says when the caller is not being traced, and the layer then calls
the operator's implementation directly (`LinearKernel.run`), which is what the dispatcher would
call. The operators' own CPU implementations check every tensor they are given (anyone can call
torch.ops.lowbit.*); `run` trusts the layer's private tensors, which the layer checked once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from .._core import _C

LIB = torch.library.Library("lowbit", "DEF")
FLOATS = (torch.float32, torch.bfloat16, torch.float16)
_F32 = torch.float32
_U8 = torch.uint8


# ---- shared checks and the float32 boundary ---------------------------------------------------

_compiling = torch.compiler.is_compiling
_tracing = torch._C._is_tracing
_modes = torch._C._len_torch_dispatch_stack


def eager(x: Any) -> bool:
    """True when x is a plain tensor and nothing traces the call (no torch.compile / export,
    no torch.jit.trace, no TorchDispatchMode such as FakeTensorMode or make_fx's proxy mode):
    then a layer may call the implementation directly. Four cheap flag reads."""
    return type(x) is torch.Tensor and not _compiling() and not _tracing() and _modes() == 0


def _tensor(t: Any, dtype: torch.dtype, numel: int, name: str) -> torch.Tensor:
    """t as a CPU tensor of `dtype` with `numel` elements, contiguous (copied if it is not), or
    an error naming the argument; what the operators' implementations ask of every tensor whose
    memory the kernels read."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{name} must be {dtype}, got {t.dtype}")
    if not t.is_cpu:
        raise ValueError(f"{name} must be on the CPU, got {t.device}")
    if t.numel() != numel:
        raise ValueError(f"{name} must have {numel} elements, got {t.numel()}")
    return t if t.is_contiguous() else t.contiguous()


def call(kernel: Callable[..., None], x: torch.Tensor, bias: Optional[torch.Tensor], k: int,
         n: int, weight: tuple[Any, ...]) -> torch.Tensor:
    """y = kernel(x, bias, weight) for x of shape (..., k) in float32, bfloat16 or float16 on
    the CPU (checked), bias None or float32 (n,) on the CPU (checked), `weight` the kernel's
    packed-weight arguments (addresses of memory the caller keeps alive, checked by the caller).
    The one implementation behind the operators and the layers' eager calls."""
    xf = x if x.dtype is _F32 else _widen(x)
    if not xf.is_contiguous():
        xf = xf.contiguous()
    shape = xf.shape
    if len(shape) == 0 or shape[-1] != k:
        raise ValueError(f"x must have shape (..., {k}), got {tuple(shape)}")
    if not xf.is_cpu:
        raise ValueError(f"x must be on the CPU, got {xf.device}")
    if bias is not None and not (bias.dtype is _F32 and bias.is_contiguous() and bias.is_cpu
                                 and bias.numel() == n):
        bias = _tensor(bias, _F32, n, "bias")
    y = _C.float_output((*shape[:-1], n))   # large outputs from lowbit's arena (no page faults)
    m = xf.numel() // k if k else y.numel() // max(n, 1)
    kernel(xf.data_ptr(), m, k, 0 if bias is None else bias.data_ptr(), y.data_ptr(), *weight)
    return y if x.dtype is _F32 else y.to(x.dtype)


def _widen(x: torch.Tensor) -> torch.Tensor:
    if x.dtype not in FLOATS:
        raise TypeError(f"x must be float32, bfloat16 or float16, got {x.dtype}")
    return x.to(_F32)


def _fake_linear(x: torch.Tensor, n: int) -> torch.Tensor:
    dtype = x.dtype if x.dtype in FLOATS else _F32
    return x.new_empty(x.shape[:-1] + (n,), dtype=dtype)


# ---- the linear families -------------------------------------------------------------------------
# Each family: its _C kernel, the operator's schema after x, and how the operator's arguments
# become the kernel's packed-weight arguments (checked: anyone may call torch.ops.lowbit.*).

W8_ARGS = ("Tensor x, Tensor packed, Tensor scale, Tensor? bias, int in_features, "
           "int out_features, int weight_type")
W4_ARGS = ("Tensor x, Tensor packed, Tensor? bias, int in_features, int out_features, "
           "int group_size, bool symmetric")
W16_ARGS = "Tensor x, Tensor packed, Tensor? bias, int in_features, int out_features"


def _w8_weight(packed: torch.Tensor, scale: torch.Tensor, k: int, n: int, weight_type: int
               ) -> tuple[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]]:
    """The w8 kernels' weight arguments, and the (possibly copied) tensors they point into."""
    nbytes = _C.packed_matrix_bytes(_C.ElemType(weight_type), k, n)
    packed = _tensor(packed, _U8, nbytes, "packed")
    scale = _tensor(scale, _F32, n, "scale")
    return (packed.data_ptr(), nbytes, n, weight_type, scale.data_ptr()), (packed, scale)


def _w8_op(kernel: Callable[..., None]) -> Callable[..., torch.Tensor]:
    def impl(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor,
             bias: Optional[torch.Tensor], in_features: int, out_features: int,
             weight_type: int) -> torch.Tensor:
        weight, alive = _w8_weight(packed, scale, in_features, out_features, weight_type)
        return call(kernel, x, bias, in_features, out_features, weight)
    return impl


def _w8a8_static_op(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor,
                    bias: Optional[torch.Tensor], in_features: int, out_features: int,
                    weight_type: int, input_scale: float, input_zero_point: int,
                    input_type: int) -> torch.Tensor:
    weight, alive = _w8_weight(packed, scale, in_features, out_features, weight_type)
    return call(_C.w8a8_static_linear_at, x, bias, in_features, out_features,
                weight + (input_scale, input_zero_point, input_type))


def _w4_op(kernel: Callable[..., None]) -> Callable[..., torch.Tensor]:
    def impl(x: torch.Tensor, packed: torch.Tensor, bias: Optional[torch.Tensor],
             in_features: int, out_features: int, group_size: int,
             symmetric: bool) -> torch.Tensor:
        # the size is checked against the layout by the kernel's view of the bytes
        packed = _tensor(packed, _U8, packed.numel(), "packed")
        return call(kernel, x, bias, in_features, out_features,
                    (packed.data_ptr(), packed.numel(), out_features, group_size, symmetric))
    return impl


def _w16_op(kernel: Callable[..., None]) -> Callable[..., torch.Tensor]:
    def impl(x: torch.Tensor, packed: torch.Tensor, bias: Optional[torch.Tensor],
             in_features: int, out_features: int) -> torch.Tensor:
        # the size is checked against the layout by the kernel's view of the bytes
        packed = _tensor(packed, _U8, packed.numel(), "packed")
        return call(kernel, x, bias, in_features, out_features,
                    (packed.data_ptr(), packed.numel(), out_features))
    return impl


@dataclass(frozen=True)
class LinearKernel:
    """One kernel family: `kernel` (the _C entry the layers' eager calls give to `call`) and
    `op` (torch.ops.lowbit.<name>, what traced calls record)."""

    name: str
    kernel: Callable[..., None]
    op: Any


def _register(name: str, args: str, kernel: Callable[..., None],
              impl: Callable[..., torch.Tensor]) -> LinearKernel:
    LIB.define(f"{name}({args}) -> Tensor")
    LIB.impl(name, impl, "CPU")
    torch.library.register_fake(f"lowbit::{name}",
                                lambda x, *rest: _fake_linear(x, _out_features(name, rest)),
                                lib=LIB)
    torch.library.register_autograd(f"lowbit::{name}", _no_backward(name),
                                    setup_context=_no_context, lib=LIB)
    return LinearKernel(name, kernel, getattr(torch.ops.lowbit, name).default)


def _out_features(name: str, rest: tuple[Any, ...]) -> int:
    # out_features follows in_features in every schema; w8 schemas have scale before bias
    return int(rest[4] if name.startswith("linear_w8") else rest[3])


def _no_context(ctx: Any, inputs: Any, output: Any) -> None:
    return None


def _no_backward(name: str) -> Callable[..., Any]:
    def backward(ctx: Any, *grads: Any) -> Any:
        raise RuntimeError(f"lowbit::{name} is inference-only and has no gradient (train with "
                           "lowbit.torch.prepare_qat and convert afterwards)")
    return backward


def _linear_kernels() -> dict[str, LinearKernel]:
    static_args = W8_ARGS + ", float input_scale, int input_zero_point, int input_type"
    kernels = [
        _register("linear_w8a8", W8_ARGS, _C.w8a8_linear_at, _w8_op(_C.w8a8_linear_at)),
        _register("linear_w8a8_static", static_args, _C.w8a8_static_linear_at, _w8a8_static_op),
        _register("linear_w8f32", W8_ARGS, _C.w8f32_linear_at, _w8_op(_C.w8f32_linear_at)),
        _register("linear_w4a8", W4_ARGS, _C.w4a8_linear_at, _w4_op(_C.w4a8_linear_at)),
        _register("linear_w4f32", W4_ARGS, _C.w4f32_linear_at, _w4_op(_C.w4f32_linear_at)),
        _register("linear_wf16f32", W16_ARGS, _C.wf16f32_linear_at,
                  _w16_op(_C.wf16f32_linear_at)),
        _register("linear_wbf16f32", W16_ARGS, _C.wbf16f32_linear_at,
                  _w16_op(_C.wbf16f32_linear_at)),
    ]
    return {k.name[len("linear_"):]: k for k in kernels}


# The linear kernels by family: lowbit.packed.FAMILIES' names, and "w8a8_static" for the
# static int8 layers (the w8a8 GEMM with a frozen activation scale).
LINEAR = _linear_kernels()


# ---- the embedding -----------------------------------------------------------------------------

_INDEX_TYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def split_nibbles(q: torch.Tensor) -> torch.Tensor:
    """uint8 (..., n) -> (..., n, 2): each byte's low nibble, then its high one (the element with
    the even index is the low nibble: lowbit._core.nibbles)."""
    return torch.stack((q & 0x0F, q >> 4), dim=-1)


def embedding_rows(q: torch.Tensor, s: torch.Tensor, bits: int, embedding_dim: int,
                   group_size: int, split: Callable[[torch.Tensor], torch.Tensor] = split_nibbles
                   ) -> torch.Tensor:
    """float32(values) * scale of gathered table rows `q` (..., stored width) with their scales
    `s` (..., groups): one scale per row, or per `group_size` values of a row (group_size 0: the
    row). 4-bit rows hold two values a byte, stored as u = v + 8 (`split` takes them apart; the
    ONNX export passes a spelling its exporters translate). lowbit.nn.QuantizedEmbedding's
    arithmetic: one rounding per value."""
    if bits == 4:
        values = split(q).flatten(-2).to(_F32) - 8.0
    else:
        values = (q.view(torch.int8) if q.dtype == _U8 else q).to(_F32)
    if s.shape[-1] == 1:
        return values * s
    return values * s.index_select(-1, _group_of(embedding_dim, group_size or embedding_dim))


def _group_of(dim: int, group_size: int) -> torch.Tensor:
    """The group of each of a row's `dim` values (int64): which scale multiplies it. A
    constant gather rather than repeat_interleave, which the TorchScript ONNX exporter gives
    wrong static shapes. Made anew from NumPy on every call (a few microseconds): a tensor
    kept from a call under torch.export's fake tensors would be one of them."""
    return torch.from_numpy(np.arange(dim, dtype=np.int64) // group_size)


def embedding_run(indices: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bits: int,
                  embedding_dim: int, group_size: int) -> torch.Tensor:
    """rows = float32(q[idx]) * scale[idx] (embedding_rows), with the indices checked."""
    if indices.dtype not in _INDEX_TYPES:
        raise TypeError(f"embedding indices must be integers, got {indices.dtype}")
    n = qweight.shape[0]
    flat = indices.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= n):
        bad = flat[(flat < 0) | (flat >= n)][0]
        raise IndexError(f"index {int(bad)} is out of range for {n} embeddings")
    q = embedding_rows(qweight.index_select(0, flat), scale.index_select(0, flat), bits,
                       embedding_dim, group_size)
    return q.reshape(indices.shape + (embedding_dim,))


def _embedding_checked(indices: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor,
                       bits: int, embedding_dim: int, group_size: int) -> torch.Tensor:
    if bits not in (8, 4, 16):
        raise ValueError(f"bits must be 8, 4 or 16, got {bits}")
    width = embedding_dim // 2 if bits == 4 else embedding_dim
    types = (torch.float16,) if bits == 16 else (torch.int8, _U8)
    if qweight.dim() != 2 or qweight.shape[1] != width or qweight.dtype not in types:
        raise ValueError(f"qweight must be (num_embeddings, {width}) "
                         f"{'float16' if bits == 16 else 'int8/uint8'}, got "
                         f"{qweight.dtype} {tuple(qweight.shape)}")
    if scale.dim() != 2 or scale.shape[0] != qweight.shape[0] or scale.dtype != _F32:
        raise ValueError("scale must be float32 (num_embeddings, groups)")
    return embedding_run(indices, qweight, scale, bits, embedding_dim, group_size)


def _embedding_fake(indices: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bits: int,
                    embedding_dim: int, group_size: int) -> torch.Tensor:
    return scale.new_empty(indices.shape + (embedding_dim,), dtype=_F32)


LIB.define("embedding(Tensor indices, Tensor qweight, Tensor scale, int bits, int embedding_dim, "
           "int group_size) -> Tensor")
LIB.impl("embedding", _embedding_checked, "CPU")
torch.library.register_fake("lowbit::embedding", _embedding_fake, lib=LIB)
EMBEDDING_OP = torch.ops.lowbit.embedding.default


# ---- the convolution -----------------------------------------------------------------------------
#
#   lowbit::conv_w8a8(x, packed, scale, bias, weight_shape, weight_type, params, dynamic,
#                     input_scale, input_zero_point, input_type, clamp_lo, clamp_hi, chain_out,
#                     channels_last)
#
# x is 4-D NCHW (the 1-D layers pass a height of 1): float32 / bfloat16 / float16, or uint8,
# an integer chain's activations (the previous static layer's output, already quantized with
# this layer's input_scale and input_zero_point, int8 ones shifted by 128; any strides, read
# as NHWC). weight_shape is (out_channels, in_channels / groups, groups, kernel_h, kernel_w);
# params the kernel's geometry (stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left,
# pad_bottom, pad_right). `packed` holds a PackedConvWeight's bytes (`storage()`), viewed in
# place by the kernel. chain_out: None (float output in x's dtype, float32 for uint8 x) or
# the next layer's (scale, zero point in the uint8 domain) as a float64 tensor of 2: then the
# output is uint8, (N, M, H_out, W_out) in channels_last memory (NHWC, as the kernels write it).
# A float x whose strides are channels_last's (like_channels_last) gives a channels_last float
# output, as torch's own conv does: the kernels read and write NHWC rows, so neither side is
# transposed; channels_last True (the layer's float conv had a channels_last weight, or the
# model was moved with .to(memory_format=torch.channels_last)) gives channels_last outputs for
# any input, as torch's conv does for such a weight; otherwise another float x gives a
# contiguous (NCHW) output. The chain keeps the model's layout:
# a uint8 output of a layer whose input was channels_last (or itself such a uint8 tensor) is
# the NHWC rows as an (N, H_out, W_out, M) contiguous tensor, and a layer given that returns a
# channels_last float output; otherwise the uint8 output is (N, M, H_out, W_out) in
# channels_last memory and the float output after it contiguous. chained_nhwc tells the two
# apart (the tensor only ever goes from one lowbit layer to the next).

CONV_ARGS = ("Tensor x, Tensor packed, Tensor scale, Tensor? bias, int[] weight_shape, "
             "int weight_type, int[] params, bool dynamic, float input_scale, "
             "int input_zero_point, int input_type, float clamp_lo, float clamp_hi, "
             "Tensor? chain_out, bool channels_last=False")


def chained_nhwc(x: torch.Tensor, in_channels: int) -> bool:
    """A uint8 chain input given as (N, H, W, C) contiguous rows (its producer ran on a
    channels_last input) rather than (N, C, H, W) in channels_last memory."""
    return (x.dim() == 4 and x.is_contiguous() and x.shape[3] == in_channels
            and not (x.shape[1] == in_channels and x.stride(1) == 1))


def conv_out_shape(x_shape: Any, weight_shape: Any, params: Any) -> tuple[int, ...]:
    """(N, M, H_out, W_out) of a 4-D convolution (ConvGeometry::out_height / out_width)."""
    n, _, h, w = x_shape
    m, _, _, kh, kw = weight_shape
    sh, sw, dh, dw, pt, pl, pb, pr = params
    return (n, m, (h + pt + pb - dh * (kh - 1) - 1) // sh + 1,
            (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)


def conv_run(x: torch.Tensor, view: Any, scale: np.ndarray, bias: Optional[torch.Tensor],
             params: Any, activation: tuple[Any, ...],
             chain_out: Optional[torch.Tensor] = None, channels_last: bool = False) -> torch.Tensor:
    """The float convolution on a 4-D x (float32, bfloat16 or float16; widened exactly, the
    result rounded once to x's dtype; or uint8, an integer chain's input): lowbit._C.conv_float
    with the weight `view` (a PackedConvWeight), the per-channel `scale` and `activation` =
    (dynamic, input_scale, input_zero_point, input_type, clamp_lo, clamp_hi); chain_out as the
    operator's; channels_last as the operator's. One implementation behind the operator and
    the layers' eager calls."""
    xf = x.detach()
    if not xf.is_cpu:
        raise ValueError(f"x must be on the CPU, got {xf.device}")
    if xf.dtype is not _U8 and xf.dtype is not _F32:
        xf = _widen(xf)               # keeps the memory format
    nhwc = input_nhwc(xf, view.group_channels * view.groups)
    # the kernels' NHWC rows: a chain's (N, C, H, W) channels_last uint8 or a channels_last
    # float tensor permuted (a view, no copy); an (N, H, W, C) hand-over and NCHW floats as
    # they are
    if nhwc != (xf.dtype is _U8):
        xf = xf.permute(0, 2, 3, 1)
    if not xf.is_contiguous():
        xf = xf.contiguous()
    b = None
    if bias is not None:
        b = bias.detach()
        if b.dtype is not _F32 or not b.is_cpu:
            raise TypeError(f"bias must be a CPU float32 tensor, got {b.dtype} on {b.device}")
        b = b.contiguous().numpy()
    dynamic, s, z, t, lo, hi = activation
    out_nhwc = nhwc or channels_last
    in_nhwc = nhwc and xf.dtype is not _U8   # a float input read as NHWC rows
    if chain_out is not None:
        out_scale, out_zero = (float(v) for v in chain_out.tolist())
        y = _C.conv_float(xf.numpy(), view, params, dynamic, s, z, _C.QType(t), scale, b, lo, hi,
                          out_scale, int(out_zero), _C.QType.uint8, nhwc=in_nhwc)
        return torch.from_numpy(y) if out_nhwc else torch.from_numpy(y).permute(0, 3, 1, 2)
    y = torch.from_numpy(_C.conv_float(xf.numpy(), view, params, dynamic, s, z,
                                       _C.QType(t), scale, b, lo, hi, nhwc=in_nhwc,
                                       out_nhwc=out_nhwc))
    if out_nhwc:
        y = y.permute(0, 3, 1, 2)     # (N, M, H, W) in channels_last memory
    return y if x.dtype is _F32 or x.dtype is _U8 else y.to(x.dtype)


def input_nhwc(x: torch.Tensor, in_channels: int) -> bool:
    """x holds NHWC rows in the layout that keeps a chain's layout: a uint8 chain hand-over as
    (N, H, W, C) (chained_nhwc), or a float tensor whose strides are channels_last's. Its
    output, float or uint8, is then NHWC too."""
    return chained_nhwc(x, in_channels) if x.dtype is _U8 else like_channels_last(x)


def like_channels_last(x: torch.Tensor) -> bool:
    """x's strides are channels_last's by the rule torch's conv uses to pick its output layout
    (c10's is_channels_last_strides_2d_s4): size-1 dimensions resolved the way torch resolves
    them, an ambiguous tensor counting as contiguous (NCHW)."""
    if x.dim() != 4:
        return False
    size, stride = x.shape, x.stride()
    if stride[1] == 0:
        return False
    low = 0
    for d in (1, 3, 2, 0):
        if size[d] == 0 or stride[d] < low or (d == 0 and low == stride[1]):
            return False
        low = stride[d] * (size[d] if size[d] > 1 else 1)
    return True


def conv_view(packed: torch.Tensor, weight_shape: Any, weight_type: int) -> Any:
    """A PackedConvWeight over a uint8 tensor's bytes (nothing copied; it checks the size)."""
    m, cg, groups, kh, kw = (int(v) for v in weight_shape)
    return _C.conv_weight_view(packed.numpy(), _C.ElemType(weight_type), m, cg, groups, kh, kw)


def _conv_checked(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor,
                  bias: Optional[torch.Tensor], weight_shape: list[int], weight_type: int,
                  params: list[int], dynamic: bool, input_scale: float, input_zero_point: int,
                  input_type: int, clamp_lo: float, clamp_hi: float,
                  chain_out: Optional[torch.Tensor], channels_last: bool = False) -> torch.Tensor:
    if len(weight_shape) != 5 or len(params) != 8:
        raise ValueError("weight_shape must have 5 values and params 8")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    packed = _tensor(packed, _U8, packed.numel(), "packed")
    scale = _tensor(scale, _F32, int(weight_shape[0]), "scale")
    if bias is not None:
        bias = _tensor(bias, _F32, int(weight_shape[0]), "bias")
    if chain_out is not None:
        chain_out = _tensor(chain_out, torch.float64, 2, "chain_out")
    view = conv_view(packed, weight_shape, weight_type)
    return conv_run(x, view, scale.numpy(), bias, list(params),
                    (dynamic, input_scale, input_zero_point, input_type, clamp_lo, clamp_hi),
                    chain_out, channels_last)


def _conv_fake(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor,
               bias: Optional[torch.Tensor], weight_shape: list[int], weight_type: int,
               params: list[int], dynamic: bool, input_scale: float, input_zero_point: int,
               input_type: int, clamp_lo: float, clamp_hi: float,
               chain_out: Optional[torch.Tensor], channels_last: bool = False) -> torch.Tensor:
    nhwc = input_nhwc(x, int(weight_shape[1]) * int(weight_shape[2]))
    chained = x.dtype is _U8 and nhwc   # an (N, H, W, C) hand-over
    shape = conv_out_shape((x.shape[0], x.shape[3], x.shape[1], x.shape[2]) if chained else x.shape,
                           weight_shape, params)
    nhwc = nhwc or channels_last
    if chain_out is not None:
        n, m, h, w = shape
        y = x.new_empty((n, h, w, m), dtype=_U8)
        return y if nhwc else y.permute(0, 3, 1, 2)
    dtype = x.dtype if x.dtype in FLOATS else _F32
    if nhwc:
        return x.new_empty(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    return x.new_empty(shape, dtype=dtype)


LIB.define(f"conv_w8a8({CONV_ARGS}) -> Tensor")
LIB.impl("conv_w8a8", _conv_checked, "CPU")
torch.library.register_fake("lowbit::conv_w8a8", _conv_fake, lib=LIB)
torch.library.register_autograd("lowbit::conv_w8a8", _no_backward("conv_w8a8"),
                                setup_context=_no_context, lib=LIB)
CONV_OP = torch.ops.lowbit.conv_w8a8.default

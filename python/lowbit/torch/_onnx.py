"""ONNX export of lowbit's PyTorch layers: `torch.onnx.export(model, args, path)` writes
standard quantized ONNX operators, with either exporter (dynamo=True, the default, and the
TorchScript one, dynamo=False), and no lowbit call is needed.

While an export runs (`torch.onnx.is_in_onnx_export()`), a lowbit layer's traced branch calls
`linear_graph` / `embedding_graph` instead of its kernel operator (torch.ops.lowbit.*, whose
`packed` argument is the kernels' private panel layout, meaningless to an ONNX runtime). They
compute the layer's arithmetic in torch ops on its canonical quantized weight
(`PackedWeight.qtensor()`, made constants of the graph: initializers) and insert, through
`onnx_node`, the quantized ONNX operators torch has no op for (MatMulInteger, QuantizeLinear,
DequantizeLinear, com.microsoft MatMulNBits). The exporters translate the torch ops into
ONNX ones themselves (round -> Round, clamp -> Clip, amin -> ReduceMin, ...), so one
description per family serves both exporters. What each family becomes (LINEAR_GRAPHS):

    w8a8         per-row DynamicQuantizeLinear written out (ReduceMin/ReduceMax, the range rule,
                 Div, Round, Add, Clip, Cast uint8), MatMulInteger with the weight's zero point
                 per column, the row zero point's term subtracted in int32 (ONNX Runtime takes
                 only a per-tensor a_zero_point), Cast, Mul by sa * sw, Add bias
    w8a8_static  QuantizeLinear with the calibrated scale and zero point, MatMulInteger, Cast,
                 Mul by s_x * sw, Add bias
    w8f32        DequantizeLinear (per output channel) of the int8 weight, MatMul, Add bias
    w4a8         the per-row symmetric int8 quantization written out, MatMulNBits (4-bit
                 blocks = lowbit's groups) on the integer rows, Mul by the row scale, Add bias
    w4f32        MatMulNBits, Add bias
    wf16f32      the float16 weight as a constant, Cast to float32, MatMul, Add bias
    wbf16f32     the bfloat16 weight widened to a float32 constant, MatMul, Add bias

MatMulNBits runs with accuracy_level 0 (float32 arithmetic on the dequantized weight): its
int8 mode (4) quantizes activations per block, not per row as lowbit does. It needs a block
size that is a power of two >= 16; a layer whose group is not (and is not one group for the
whole row) is exported as DequantizeLinear of its 4-bit values (one per byte, per group)
and MatMul, with a warning. Embeddings are Gather of the quantized rows (4-bit: the nibbles
split with Mod / Div by 16), Cast, and Mul by the gathered scales (per group: gathered once
more along the row).

The numerics against lowbit's kernels are in docs/conversion.md ("Exporting to ONNX").
"""
from __future__ import annotations

import contextlib
import json
import sys
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._core.nibbles import pack_nibbles
from . import fake_quant as fq
from ._ops import LIB, embedding_rows

_F32 = torch.float32
_I32 = torch.int32
MSFT = "com.microsoft"


def exporting() -> bool:
    """True while torch.onnx.export traces the model: the TorchScript exporter, or the dynamo
    exporter's first capture, non-strict torch.export. When that capture fails, the exporter
    tries strict torch.export (Dynamo), where is_in_onnx_export() reads False and the layers
    would record their kernel operators, which no ONNX translation knows: there the layer
    stops the capture instead (a graph break, an error under strict export), so that
    torch.onnx.export reports why the non-strict capture failed."""
    if torch.onnx.is_in_onnx_export():
        return True
    if torch.compiler.is_compiling() and _dynamo_exporter_running():
        torch._dynamo.graph_break(msg=STRICT_CAPTURE)
    return False


STRICT_CAPTURE = ("lowbit layers export to ONNX through torch.export's non-strict capture, the "
                  "first one torch.onnx.export tries; it failed for this model, and the first "
                  "error torch.onnx.export reports says why")


def _dynamo_exporter_running() -> bool:
    flags = sys.modules.get("torch.onnx._internal.exporter._flags")
    return bool(getattr(flags, "_is_onnx_exporting", False))


# ---- one ONNX node, for either exporter -------------------------------------------------------
# The dynamo exporter takes torch.onnx.ops.symbolic (an FX node it writes out as the ONNX node
# given). The TorchScript exporter does not know that operator, so under torch.jit.trace the
# node is lowbit::onnx_node, whose symbolic (registered with register_custom_op_symbolic the
# first time one is traced) writes the same ONNX node. Either way the torch-level value is a
# placeholder of the right shape and dtype (zeros), as torch.onnx.ops.symbolic's own is: only
# the graph is exported, never the traced values.

LIB.define("onnx_node(Tensor[] inputs, str node) -> Tensor")


def _placeholder(inputs: list[torch.Tensor], node: str) -> torch.Tensor:
    spec = json.loads(node)
    return torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"]))


LIB.impl("onnx_node", _placeholder, "CPU")
torch.library.register_fake("lowbit::onnx_node", _placeholder, lib=LIB)
_torchscript_registered = False


def onnx_node(op_type: str, inputs: Sequence[torch.Tensor], *, dtype: torch.dtype,
              shape: Sequence[Any], domain: str = "", anchor: Optional[torch.Tensor] = None,
              **attrs: Any) -> torch.Tensor:
    """The ONNX node `domain::op_type(*inputs, **attrs)` in the exported graph (one output of
    `dtype` and `shape`). `inputs` leave out only trailing optional inputs. A node whose
    inputs are all constants (a weight's DequantizeLinear) takes the layer's input as `anchor`:
    TorchScript's constant propagation, which runs before the symbolics, would otherwise
    evaluate the node and put its placeholder into the graph (the anchor is no input of the
    ONNX node)."""
    if torch.jit.is_tracing():
        _register_torchscript()
        spec = json.dumps({"op": op_type, "domain": domain, "attrs": attrs,
                           "inputs": len(inputs), "shape": [int(d) for d in shape],
                           "dtype": str(dtype)[len("torch."):]})
        tensors = list(inputs) if anchor is None else [*inputs, anchor]
        return torch.ops.lowbit.onnx_node(tensors, spec)
    if not hasattr(getattr(torch.onnx, "ops", None), "symbolic"):   # torch < 2.8
        raise RuntimeError(f"exporting lowbit layers with torch.onnx.export's dynamo exporter "
                           f"needs torch >= 2.8 (torch.onnx.ops.symbolic; this is torch "
                           f"{torch.__version__}): upgrade, or pass dynamo=False")
    return torch.onnx.ops.symbolic(f"{domain}::{op_type}" if domain else op_type, list(inputs),
                                   attrs, dtype=dtype, shape=list(shape),
                                   version=1 if domain else None)


_ATTR_KINDS = {int: "i", float: "f", str: "s"}


def _onnx_node_symbolic(g: Any, inputs: Any, spec: Any) -> Any:
    """lowbit::onnx_node for the TorchScript exporter: the ONNX node its spec names."""
    from torch.onnx import symbolic_helper
    node = json.loads(symbolic_helper._maybe_get_const(spec, "s"))
    attrs = {f"{k}_{_ATTR_KINDS[type(v[0] if isinstance(v, list) else v)]}": v
             for k, v in node["attrs"].items()}
    name = f"{node['domain']}::{node['op']}" if node["domain"] else node["op"]
    values = symbolic_helper._unpack_list(inputs)[:node["inputs"]]
    out = g.op(name, *values, **attrs)
    # ONNX shape inference does not know com.microsoft operators: give the output its dtype
    out.setType(values[0].type().with_dtype(getattr(torch, node["dtype"]))
                .with_sizes([None] * len(node["shape"])))
    return out


def _register_torchscript() -> None:
    global _torchscript_registered
    if not _torchscript_registered:
        torch.onnx.register_custom_op_symbolic("lowbit::onnx_node", _onnx_node_symbolic, 13)
        _torchscript_registered = True


@contextlib.contextmanager
def _constants_on_purpose() -> Iterator[None]:
    """The TorchScript tracer warns about every weight made a constant and every shape read as
    a Python number; here both are meant (the weights are constants of the graph; the shapes
    read are the layer's own widths, or placeholders' shapes the symbolic ignores)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


# ---- the linear families ----------------------------------------------------------------------

def _const(a: Any) -> torch.Tensor:
    """A constant of the exported graph (an initializer) holding a NumPy array."""
    return torch.from_numpy(np.ascontiguousarray(a))


def _out_shape(x: torch.Tensor, n: int) -> tuple[Any, ...]:
    return (*x.shape[:-1], n)


def _int8_gemm(q: torch.Tensor, qt: Any, a_zero: Optional[np.ndarray]) -> torch.Tensor:
    """MatMulInteger(q, W.T) in int32: the weight's zero point per column, `a_zero` (a
    per-tensor zero point of q) or none."""
    w, zw = qt.data, qt.zero_point.reshape(-1)
    inputs = [q, _const(w.T)]
    if a_zero is not None or zw.any():
        inputs.append(_const(np.zeros((), _INT8S[q.dtype]) if a_zero is None else a_zero))
    if zw.any():
        inputs.append(_const(zw))
    return onnx_node("MatMulInteger", inputs, dtype=_I32, shape=_out_shape(q, w.shape[0]))


_INT8S = {torch.uint8: np.uint8, torch.int8: np.int8}
_TORCH_INT8S = {np.dtype(v): k for k, v in _INT8S.items()}


def _plus_bias(y: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return y if bias is None else y + bias


def _int8_epilogue(acc: torch.Tensor, scale: torch.Tensor,
                   bias: Optional[torch.Tensor]) -> torch.Tensor:
    """The 8-bit kernels' epilogue fma(float32(acc), scale, bias) as Cast, Mul, Add (ONNX has
    no fma: two roundings instead of one, so the result may differ from the kernels' by about
    an ulp of the product). A float64 epilogue, rounded once, gave the kernels' bits but made
    int8 MiniLM 1.5x slower in ONNX Runtime (98 vs 67 ms at batch 32, one thread)."""
    return _plus_bias(acc.to(_F32) * scale, bias)


def _w8a8(layer: Any, x: torch.Tensor, qt: Any) -> torch.Tensor:
    # per row: the kernel's DynamicQuantizeLinear, written out (ONNX's is per tensor)
    sa, za, qmin, qmax = fq.row_qparams(x, "rows_uint8")
    q = fq.quantized_values(x, sa, za, qmin, qmax).to(torch.uint8)
    acc = _int8_gemm(q, qt, None)
    # (q - za) @ (W - zw).T = q @ (W - zw).T - za * colsum(W - zw), exact in int32 (ONNX
    # Runtime's MatMulInteger takes a per-tensor a_zero_point only)
    colsum = (qt.data.astype(np.int64) - qt.zero_point.reshape(-1, 1)).sum(axis=1)
    acc = acc - za.to(_I32) * _const(colsum.astype(np.int32))
    return _int8_epilogue(acc, sa * _const(qt.scale), layer.bias)


def _w8a8_static(layer: Any, x: torch.Tensor, qt: Any) -> torch.Tensor:
    scale = np.float32(layer.input_scale)
    zero = np.asarray(layer.input_zero_point).reshape(())
    q = onnx_node("QuantizeLinear", [x, _const(np.array(scale)), _const(zero)],
                  dtype=_TORCH_INT8S[zero.dtype], shape=tuple(x.shape))
    acc = _int8_gemm(q, qt, zero)
    return _int8_epilogue(acc, _const(scale * qt.scale), layer.bias)


def _w8f32(layer: Any, x: torch.Tensor, qt: Any) -> torch.Tensor:
    w = onnx_node("DequantizeLinear", [_const(qt.data.T), _const(qt.scale),
                                       _const(qt.zero_point)],
                  dtype=_F32, shape=qt.data.shape[::-1], axis=1, anchor=x)
    return _plus_bias(torch.matmul(x, w), layer.bias)


def nbits_block(group_size: int, in_features: int) -> Optional[int]:
    """The MatMulNBits block size that gives lowbit's groups (ONNX Runtime takes powers of two
    >= 16): the group itself, or, for one group per row, the power of two covering the row;
    None when there is none (the layer is then exported through DequantizeLinear)."""
    if group_size >= 16 and group_size & (group_size - 1) == 0:
        return group_size
    if group_size >= in_features:
        return max(16, 1 << (in_features - 1).bit_length())
    return None


def _int4_values(qt: Any, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The 4-bit weight as unsigned values u (uint8 (N, width): zero-point padded past K) and
    the zero points (uint8 (N, groups)); int4 is stored as u = q + 8 with zero point 8."""
    shift = 8 if qt.dtype == "int4" else 0
    u = (qt.data.astype(np.int16) + shift).astype(np.uint8)
    zero = (qt.zero_point.astype(np.int16) + shift).astype(np.uint8)
    n, k = u.shape
    padded = np.empty((n, width), np.uint8)
    padded[:, :k] = u
    padded[:, k:] = zero[:, -1:]
    return padded, zero


def _int4_matmul(layer: Any, a: torch.Tensor, qt: Any) -> torch.Tensor:
    """a @ W.T for the 4-bit weight `qt`: com.microsoft MatMulNBits where a block size gives
    lowbit's groups, else DequantizeLinear of the values (one per byte) and MatMul."""
    n, k = qt.data.shape
    block = nbits_block(qt.group_size, k)
    if block is None:
        return _int4_dequantized_matmul(layer, a, qt)
    blocks = -(-k // block)
    u, zero = _int4_values(qt, blocks * block)
    inputs = [a, _const(pack_nibbles(u).reshape(n, blocks, block // 2)),
              _const(qt.scale.reshape(-1))]
    if not qt.symmetric:
        pad = np.pad(zero, ((0, 0), (0, blocks % 2)))   # two zero points a byte, per row
        inputs.append(_const(pack_nibbles(pad).reshape(-1)))
    return onnx_node("MatMulNBits", inputs, domain=MSFT, dtype=_F32, shape=_out_shape(a, n),
                     K=k, N=n, bits=4, block_size=block, accuracy_level=0)


def _int4_dequantized_matmul(layer: Any, a: torch.Tensor, qt: Any) -> torch.Tensor:
    n, k = qt.data.shape
    g = qt.group_size
    groups = -(-k // g)
    warnings.warn(f"{layer._label()}: its group size {g} is no MatMulNBits block size (a power "
                  f"of two >= 16), so the ONNX graph dequantizes the 4-bit values (stored one "
                  f"per byte) with DequantizeLinear per group before a float MatMul",
                  UserWarning, stacklevel=2)
    u, zero = _int4_values(qt, groups * g)
    w = onnx_node("DequantizeLinear", [_const(u.reshape(n * groups, g)),
                                       _const(qt.scale.reshape(-1)), _const(zero.reshape(-1))],
                  dtype=_F32, shape=(n * groups, g), axis=0, anchor=a)
    return torch.matmul(a, w.reshape(n, groups * g)[:, :k].t())


def _w4a8(layer: Any, x: torch.Tensor, qt: Any) -> torch.Tensor:
    # the kernel's symmetric int8 rows, written out; the integer rows go into the 4-bit product
    # and the row scale comes last, as in the kernel's epilogue
    sa, za, qmin, qmax = fq.row_qparams(x, "rows_int8_symmetric")
    q = fq.quantized_values(x, sa, za, qmin, qmax)
    return _plus_bias(_int4_matmul(layer, q, qt) * sa, layer.bias)


def _w4f32(layer: Any, x: torch.Tensor, qt: Any) -> torch.Tensor:
    return _plus_bias(_int4_matmul(layer, x, qt), layer.bias)


def _w16f32(layer: Any, x: torch.Tensor, qt: Any) -> torch.Tensor:
    # float16: the values as a float16 constant (half the bytes), Cast to float32 (exact);
    # bfloat16: a float32 constant of the values widened exactly (NumPy has no bfloat16 array to
    # make the constant from, and the TorchScript tracer cannot record a dtype view)
    if qt.dtype == "float16":
        w = _const(qt.data.T.view(np.float16)).to(_F32)
    else:
        w = _const(qt.dequantize().T)
    return _plus_bias(torch.matmul(x, w), layer.bias)


# How each kernel family is written in ONNX (the families of lowbit/torch/_ops.py's LINEAR):
# f(layer, x float32, the canonical weight) -> x @ W.T + bias in float32.
LINEAR_GRAPHS: dict[str, Callable[[Any, torch.Tensor, Any], torch.Tensor]] = {
    "w8a8": _w8a8, "w8a8_static": _w8a8_static, "w8f32": _w8f32, "w4a8": _w4a8,
    "w4f32": _w4f32, "wf16f32": _w16f32, "wbf16f32": _w16f32}


def linear_graph(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """What a lowbit QuantizedLinear computes, in torch ops and ONNX nodes for the exporters:
    the family's graph (LINEAR_GRAPHS) on its canonical quantized weight, plus the bias; a
    bfloat16 / float16 x is widened first and the result rounded to its dtype, as the kernels'
    boundary does."""
    xf = x if x.dtype is _F32 else x.to(_F32)
    with _constants_on_purpose():
        y = LINEAR_GRAPHS[layer.family](layer, xf, layer.packed_weight().qtensor())
    return y if x.dtype is _F32 else y.to(x.dtype)


# ---- embeddings -------------------------------------------------------------------------------

def _split_nibbles(q: torch.Tensor) -> torch.Tensor:
    # the same values as _ops.split_nibbles; torchlib translates >> on uint8 into int8
    return torch.stack((q % 16, q // 16), dim=-1)


def embedding_graph(layer: Any, indices: torch.Tensor) -> torch.Tensor:
    """A lowbit QuantizedEmbedding's lookup for the exporters: Gather of the quantized rows
    and of their scales, then embedding_rows' arithmetic (float32 result)."""
    idx = indices if indices.dtype in (torch.int64, torch.int32) else indices.to(torch.int64)
    with _constants_on_purpose():
        return embedding_rows(F.embedding(idx, layer.qweight), F.embedding(idx, layer.scale),
                              layer.bits, layer.embedding_dim, layer.table.group_size or 0,
                              _split_nibbles)


# ---- convolutions -----------------------------------------------------------------------------

def conv_graph(layer: Any, x4: torch.Tensor, chain_out: Optional[torch.Tensor] = None
               ) -> torch.Tensor:
    """A lowbit conv layer (lowbit.torch.QuantizedConv2d / Conv1d, on its 4-D input) as standard
    ONNX: Pad with 0.0 (which quantizes to the zero point exactly, so the padded taps add 0 as
    in the kernels, and ConvInteger's own x_zero_point can stay per tensor), the activations
    quantized per image (dynamic: the kernels' DynamicQuantizeLinear per image written out, as
    the linear's per row; static: QuantizeLinear with the calibrated parameters), ConvInteger
    (int32, unpadded), for dynamic layers minus zero point x the filter's sum per channel
    (exact in int32), then the float epilogue (Cast, Mul, Add: about an ulp from the kernels'
    fma) and the fused activation (Relu / Clip). In an integer chain (lowbit.torch.chain) a
    uint8 x is the previous layer's QuantizeLinear output (Pad with the zero point, no
    QuantizeLinear here), and a layer with `chain_out` ends with the next layer's
    QuantizeLinear (uint8: int8 activations shifted by 128, as the kernels hand them over)."""
    qt = layer.qtensor()
    w4 = qt.data if qt.data.ndim == 4 else qt.data[:, :, None, :]
    zw = qt.zero_point.reshape(-1)
    sh, sw, dh, dw, top, left, bottom, right = (int(v) for v in layer._params)
    chained_in = x4.dtype == torch.uint8
    chain_in = layer.chain_qparams() if chained_in else None
    pad_value = float(chain_in[1]) if chain_in else 0.0
    xp = torch.nn.functional.pad(x4, (left, right, top, bottom), value=pad_value) \
        if top or left or bottom or right else x4
    n, m = x4.shape[0], w4.shape[0]
    out_shape = (n, m, (xp.shape[2] - dh * (w4.shape[2] - 1) - 1) // sh + 1,
                 (xp.shape[3] - dw * (w4.shape[3] - 1) - 1) // sw + 1)
    attrs = {"strides": [sh, sw], "dilations": [dh, dw], "group": int(layer.groups)}
    channel = (1, -1, 1, 1)
    if layer.input_scale is None:
        sa, za, qmin, qmax = fq.row_qparams(x4.reshape(n, -1), "rows_uint8")
        sa, za = sa.reshape(-1, 1, 1, 1), za.reshape(-1, 1, 1, 1)
        q = fq.quantized_values(xp, sa, za, qmin, qmax).to(torch.uint8)
        inputs = [q, _const(w4)] + ([_const(np.zeros((), np.uint8)), _const(zw)] if zw.any() else [])
        acc = onnx_node("ConvInteger", inputs, dtype=_I32, shape=out_shape, **attrs)
        filter_sum = (w4.astype(np.int64) - zw.reshape(-1, 1, 1, 1)).sum(axis=(1, 2, 3))
        acc = acc - za.to(_I32) * _const(filter_sum.astype(np.int32).reshape(channel))
        scale = sa * _const(qt.scale.reshape(channel))
    else:
        s = np.float32(layer.input_scale)
        zero = np.asarray(layer.input_zero_point).reshape(())
        if chain_in:
            q, zero = xp, np.asarray(chain_in[1], np.uint8).reshape(())
        else:
            q = onnx_node("QuantizeLinear", [xp, _const(np.array(s)), _const(zero)],
                          dtype=_TORCH_INT8S[zero.dtype], shape=tuple(xp.shape))
        inputs = [q, _const(w4), _const(zero)] + ([_const(zw)] if zw.any() else [])
        acc = onnx_node("ConvInteger", inputs, dtype=_I32, shape=out_shape, **attrs)
        scale = _const((s * qt.scale).astype(np.float32).reshape(channel))
    bias = None if layer.bias is None else layer.bias.reshape(channel)
    y = _int8_epilogue(acc, scale, bias)
    if layer.activation == "relu":
        y = torch.relu(y)
    elif layer.activation == "relu6":
        y = torch.clamp(y, 0.0, 6.0)
    if chain_out is None:
        return y
    # the values are the next layer's (a tensor it shares, so read in the graph, not here)
    out_scale = chain_out[0].to(torch.float32)
    out_zero = chain_out[1].to(torch.uint8)
    return onnx_node("QuantizeLinear", [y, out_scale, out_zero], dtype=torch.uint8,
                     shape=tuple(y.shape))

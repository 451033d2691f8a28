"""QuantizedLinear: a drop-in nn.Module for nn.Linear, computed by lowbit's kernels as torch
custom operators (lowbit/torch/_ops.py): the kernels read the input tensor's memory and write
the output tensor's, no NumPy in between and no copies of their own.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..nn.linear import QuantizedLinear as NumpyQuantizedLinear
from ..quant.config import QuantConfig
from ..io.format import decode_layer, encode_linear
from ..packed import PackedWeight
from .._core import _C
from ._guards import WeightInfo, layer_label, refuse_script
from ._ops import FLOATS, LINEAR, call, eager
from ._onnx import exporting as onnx_exporting, linear_graph
from ._kinds import lowbit_layer

FORMAT_KEY = "format"   # the state_dict entry describing a lowbit layer's format (JSON bytes)


def check_input(x: torch.Tensor, layer: Callable[[], str]) -> None:
    """The conditions under which a lowbit layer can take x: a float32, bfloat16 or float16
    tensor on the CPU. `layer` gives the layer's label (formatted only for an error)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer()} takes a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOATS:
        raise TypeError(f"{layer()} takes float32, bfloat16 or float16 inputs; got {x.dtype}")
    if x.device.type != "cpu":
        raise ValueError(f"{layer()} runs on the CPU; got an input on {x.device}")


def with_layer_name(e: Exception, label: str) -> Exception:
    """The same kind of error with the layer's label in front (the NumPy layer's own errors,
    e.g. a wrong input width or NaN in the input, cannot know which module they come from)."""
    if type(e) in (TypeError, ValueError, IndexError):
        return type(e)(f"{label}: {e}")
    return e


def encode_format(meta: dict[str, Any]) -> torch.Tensor:
    """A layer's format (bits, scheme, mode, group size, dtype, shape, ...) as a uint8 tensor
    of UTF-8 JSON: a state_dict entry that torch.save (weights_only loads too), safetensors and
    .to()/.clone() all take like any tensor."""
    raw = json.dumps(meta, sort_keys=True).encode("utf-8")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()


def decode_format(value: Any, key: str) -> dict[str, Any]:
    """The format dict of a state_dict's `format` entry, or ValueError naming the key."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{key!r} must be the uint8 tensor of JSON bytes a lowbit layer's "
                         f"state_dict holds, got {got}")
    try:
        meta = json.loads(bytes(value.tolist()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{key!r} is not valid lowbit format JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{key!r} is not valid lowbit format JSON (not an object)")
    return meta


def format_mismatch(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """'group_size: checkpoint 32, layer 40' for every field that differs."""
    return [f"{k}: checkpoint {got.get(k)!r}, layer {want.get(k)!r}"
            for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]


class _NoBackward(torch.autograd.Function):
    """Runs a lowbit kernel inside an autograd graph. The forward is the kernel itself; the
    backward raises, because a quantized, packed weight has no gradient to give. This lets a
    plain `model(x)` work when float layers before this one (a LayerNorm, say) make x require
    grad, as torch's quantized dynamic Linear does; but where that one only warns and leaves the
    earlier layers without gradients, asking this one for gradients fails loudly."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor],
                label: Callable[[], str]) -> torch.Tensor:
        ctx.label = label   # the layer's name, formatted only if backward is reached
        return compute(x)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> Any:
        raise RuntimeError(f"{ctx.label()} is inference-only and has no gradient: backward() "
                           "reached it because its input requires grad. Run the model under "
                           "torch.no_grad() or torch.inference_mode() when you do not need "
                           "gradients, or train with lowbit.torch.prepare_qat (fake "
                           "quantization) and convert afterwards")


def state_array(value: Any, key: str) -> np.ndarray:
    """A state_dict entry as a NumPy array (a view), or TypeError naming its key."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{key!r} must be a tensor, got {type(value).__name__}")
    try:
        return value.detach().cpu().numpy()
    except TypeError:
        raise TypeError(f"{key!r} has dtype {value.dtype}, which no lowbit layer stores") from None


def float_weight(linear: nn.Module, name: str = "") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A Linear-like module's weight and bias as float32 NumPy arrays (copies: the layer may
    change after conversion). bfloat16 and float16 weights are widened to float32, exactly."""
    label = f"layer {name!r}" if name else type(linear).__name__
    w = linear.weight
    assert isinstance(w, torch.Tensor)
    if w.dtype not in FLOATS:
        raise TypeError(f"{label}: weight dtype is {w.dtype}; lowbit quantizes float32, bfloat16 "
                        "and float16 weights")
    if w.device.type != "cpu":
        raise ValueError(f"{label}: weight is on {w.device}; lowbit layers run on the CPU")
    wn = w.detach().to(torch.float32).contiguous().numpy().copy()
    b = linear.bias
    assert b is None or isinstance(b, torch.Tensor)
    bn = None if b is None else b.detach().to(torch.float32).contiguous().numpy().copy()
    if not np.isfinite(wn).all() or (bn is not None and not np.isfinite(bn).all()):
        raise ValueError(f"{label}: weight or bias holds NaN or Inf")
    return wn, bn


def packed_buffer(pw: PackedWeight) -> torch.Tensor:
    """A torch-owned copy of a PackedWeight's packed bytes (uint8, 64-byte aligned: PyTorch's
    CPU allocator aligns to 64 bytes, which the kernels' view of the bytes checks)."""
    storage = pw.storage()
    t = torch.empty(storage.size, dtype=torch.uint8)
    if storage.size:
        t.numpy()[:] = storage
    return t


def apply_on_cpu(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor],
                 recurse: bool) -> Any:
    """nn.Module._apply for lowbit's packed layers (QuantizedLinear, the conv layers): another
    device raises (device_check), a dtype cast only changes what `.weight.dtype` reports. The
    packed tensors are attributes, which _apply leaves alone; the bias buffer (which
    share_memory_ gives new memory) is read from _buffers on every call."""
    dtype = device_check(module, fn, module._label)
    if dtype is not None:
        module.dtype = dtype
    nn.Module._apply(module, keep_layout(fn), recurse)
    return module


def write_quantized_state(module: nn.Module, destination: dict[str, Any], prefix: str,
                          keep_vars: bool, tensors: dict[str, np.ndarray],
                          fmt: dict[str, Any]) -> None:
    """_save_to_state_dict of lowbit's packed layers (QuantizedLinear, the conv layers):
    `qweight`, `scale`, `zero_point`, the module's own buffers (the bias), the rest of
    `tensors` (a static layer's input_scale / input_zero_point) and the `format` record. Copies:
    some arrays are the layer's own (a weight-only int8 weight, a static input scale), and
    editing a state_dict must not change the packed layer behind it."""
    for key in ("qweight", "scale", "zero_point"):
        destination[prefix + key] = torch.from_numpy(np.array(tensors.pop(key)))
    nn.Module._save_to_state_dict(module, destination, prefix, keep_vars)   # the bias buffer
    for key, value in tensors.items():
        destination[prefix + key] = torch.from_numpy(np.array(value))
    destination[prefix + FORMAT_KEY] = encode_format(fmt)


def device_check(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor],
                 label: Callable[[], str]) -> Optional[torch.dtype]:
    """What a `module._apply(fn)` (model.to, .cuda(), .half(), to_empty) asks of a lowbit
    layer: moving off the CPU raises RuntimeError (the kernels run on the CPU and the packed
    bytes are theirs); a floating dtype conversion is returned (the layer then takes and
    returns that dtype, computing in float32 as before); None for anything else."""
    try:
        probe = fn(torch.zeros(1))   # what the conversion does to a float32 CPU tensor
    except Exception as e:   # e.g. .cuda() in a CPU-only build: say what lowbit supports
        raise RuntimeError(f"{label()} runs on the CPU only and cannot be moved ({e})") from None
    if probe.device.type != "cpu":
        raise RuntimeError(f"{label()} runs on the CPU only: its weight is packed for lowbit's "
                           f"CPU kernels and cannot move to {probe.device} (keep the model on "
                           "the CPU, or convert the float model there)")
    return probe.dtype if probe.dtype != torch.float32 and probe.dtype.is_floating_point else None


def keep_layout(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """fn applied to a lowbit layer's own tensors only where it keeps their dtype and device
    (share_memory_, a CPU to CPU copy): the kernels read them as they are."""
    def apply(t: torch.Tensor) -> torch.Tensor:
        r = fn(t)
        return r if r.dtype == t.dtype and r.device == t.device else t
    return apply


@lowbit_layer
class QuantizedLinear(nn.Module):
    """Same call as nn.Linear: (..., in_features) -> (..., out_features), in the input's dtype
    (float32, bfloat16 or float16; the kernels compute in float32: a half-precision input is
    widened exactly and the result rounded once to its dtype).

    Computes with one torch custom operator per kernel family (`torch.ops.lowbit.linear_w8a8`,
    `linear_w8a8_static`, `linear_w8f32`, `linear_w4a8`, `linear_w4f32`, `linear_wf16f32`,
    `linear_wbf16f32`; lowbit/torch/_ops.py),
    so `torch.compile(model, fullgraph=True)`, `torch.export.export` and `torch.jit.trace` see
    the layer as one operator, with the same output as eager calls bit for bit. Eager calls
    run the operator's implementation without the dispatcher.

    The packed weight is a uint8 tensor attribute (`_packed`, with `_scale` and `_zero_point`;
    not buffers, not in the state_dict), so `copy.deepcopy`, pickle / `torch.save` of the module and
    `model.to("cpu")` keep working; moving to another device (`.to("cuda")`, `"meta"`) raises
    RuntimeError. `model.to(torch.bfloat16)` (or .half()) leaves the quantized weight and the
    float32 bias as they are and makes the layer return that dtype.
    `state_dict()` holds the canonical quantized weight, the tensors lowbit.save writes for
    the layer (`qweight`, `scale`, `zero_point`, `bias`, and for static layers `input_scale`,
    `input_zero_point`) plus `format` (the layer's bits, scheme, mode, group size and dtype as
    UTF-8 JSON in a uint8 tensor); `load_state_dict` checks them, refuses another format, and
    re-packs. Inference only: an input that requires grad (grad mode on) gives an output whose
    backward raises RuntimeError.

    `.weight` is a WeightInfo (shape, dtype, device cpu, dequantize()), not a tensor.
    torch.jit.script raises RuntimeError. Errors start with the layer's qualified name
    (`lowbit_name`, set by quantize_, convert and lowbit.load).

    Made by `from_float`, `lowbit.torch.quantize_`, `convert` or `lowbit.load`; the
    constructor takes an already built NumPy layer (its packed bytes are copied into the
    module; the NumPy layer is not kept).

    Parameters
    ----------
    layer
        The lowbit.nn.QuantizedLinear to compute like.
    config
        The config's description (`QuantConfig.describe()`), shown by summaries.
    name
        The module's qualified name in its model, for errors (None: not in a model yet).
    dtype
        The dtype `.weight.dtype` reports (the float model's: float32, bfloat16 or float16);
        outputs always take the input's dtype.

    Raises
    ------
    None
        The NumPy layer was checked when it was made.
    """

    bias: Optional[torch.Tensor]
    _packed: torch.Tensor
    _scale: torch.Tensor
    _zero_point: torch.Tensor

    def __init__(self, layer: NumpyQuantizedLinear, config: str = "",
                 name: Optional[str] = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features = layer.in_features
        self.out_features = layer.out_features
        self.config = config
        # the qualified name in the model (quantize_, convert and lowbit.load set it), for errors
        self.lowbit_name = name
        self.dtype = dtype
        bias = None if layer.bias is None else torch.from_numpy(layer.bias.copy())
        self.register_buffer("bias", bias)
        self._take(layer)

    def _take(self, layer: NumpyQuantizedLinear) -> None:
        """Holds the NumPy layer's packed weight (copied into buffers) and its activation
        parameters, and picks the kernel."""
        pw = layer.weight
        assert isinstance(pw, PackedWeight)
        # Plain tensor attributes, not buffers: frameworks treat non-persistent buffers as
        # re-creatable (transformers' from_pretrained replaces every one by torch.empty_like
        # after loading), and these bytes are the weight. deepcopy, pickle and torch.save copy
        # them with the module; tracers see them as constants.
        self._packed = packed_buffer(pw)
        self._scale = torch.from_numpy(pw.scale.copy())
        self._zero_point = torch.from_numpy(pw.zero_point.copy())
        self._layout = pw.layout()
        self.scheme = layer.scheme
        self.bits = pw.bits
        self.input_scale = layer.input_scale          # static layers: NumPy scalars
        self.input_zero_point = layer.input_zero_point
        family = "w8a8_static" if layer.scheme == "static" else pw.family
        self.family = family
        lay = self._layout
        if self.bits == 4:
            self._constants: tuple[Any, ...] = (int(lay["group_size"]), bool(lay["symmetric"]))
        elif self.bits == 16:
            self._constants = ()   # the family names the 16-bit type; no scales
        else:
            etype = _C.ElemType.uint8 if lay["dtype"] == "uint8" else _C.ElemType.int8
            self._constants = (int(etype),)
            if layer.input_scale is not None:
                zp = layer.input_zero_point
                assert zp is not None
                in_type = _C.QType.int8 if zp.dtype == np.int8 else _C.QType.uint8
                self._constants += (float(np.float32(layer.input_scale)), int(zp.reshape(())),
                                    int(in_type))
        self._refresh()

    def _refresh(self) -> None:
        """The kernel of eager calls with this module's packed tensors bound (`_bound`, a
        lowbit._core._C.BoundLinear that holds them and reads the bias from `_buffers`), the
        kernel's packed-weight arguments for the general path (`_weight`: addresses into the
        packed tensors), and NumPy views of them (`_host`: packed_weight() reads them, also
        while a tracer runs the module on fake tensors); made again whenever the packed
        tensors are replaced (_take, unpickling and deepcopy)."""
        self._kernel = LINEAR[self.family]
        self._host = (self._packed.numpy(), self._scale.numpy(), self._zero_point.numpy())
        packed = self._packed
        consts = self._constants
        if self.bits in (4, 16):
            self._weight: tuple[Any, ...] = (packed.data_ptr(), packed.numel(),
                                             self.out_features, *consts)
            wtype, static = 0, (0.0, 0, 0)
        else:
            wtype = consts[0]
            self._weight = (packed.data_ptr(), packed.numel(), self.out_features, wtype,
                            self._scale.data_ptr(), *consts[1:])
            static = consts[1:] if len(consts) > 1 else (0.0, 0, 0)
        self._bound = _C.BoundLinear(_C.BoundFamily.__members__[self.family], packed,
                                     self.in_features, self.out_features, wtype, self._scale,
                                     self._layout["group_size"] or 0,
                                     self._layout["symmetric"], *static, self._buffers)

    def __getstate__(self) -> dict[str, Any]:
        # the bound kernel holds addresses: a copy or an unpickled module binds its own buffers
        state = self.__dict__.copy()
        for key in ("_bound", "_weight", "_kernel", "_host"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._refresh()

    def _op_args(self) -> tuple[Any, ...]:
        """The kernel operator's arguments after x (its schema, lowbit/torch/_ops.py): this
        module's tensors, then plain Python numbers (`_constants`), which tracers record as
        constants."""
        if self.bits in (4, 16):
            return (self._packed, self.bias, self.in_features, self.out_features,
                    *self._constants)
        return (self._packed, self._scale, self.bias, self.in_features, self.out_features,
                *self._constants)

    def packed_weight(self) -> PackedWeight:
        """The PackedWeight over this module's packed bytes (nothing copied).

        Returns
        -------
        PackedWeight
            Sharing memory with the `_packed` buffer (keep the module alive while using it).

        Raises
        ------
        None
        """
        return PackedWeight.from_storage(*self._host, self._layout)

    @property
    def layer(self) -> NumpyQuantizedLinear:
        """The NumPy layer computing like this module (`numpy_layer()`)."""
        return self.numpy_layer()

    @property
    def weight(self) -> WeightInfo:
        """Not a tensor: a WeightInfo with the shape (out_features, in_features), dtype
        (the float model's, what the layer returns for inputs of it) and device (cpu) that code
        written for nn.Linear reads; `.weight.dequantize()` gives a float32 copy of the
        quantized weight."""
        return WeightInfo(self._label, (self.out_features, self.in_features),
                          self.dequantized_weight, self.dtype)

    @weight.setter
    def weight(self, value: Any) -> None:
        raise AttributeError(f"{self._label()}: .weight cannot be assigned: the weight is "
                             "quantized and packed (tied weights cannot be re-tied after "
                             "conversion; assign before quantize_)")

    def __prepare_scriptable__(self) -> nn.Module:
        raise refuse_script(self._label())

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
               ) -> "QuantizedLinear":
        return apply_on_cpu(self, fn, recurse)

    @classmethod
    def from_float(cls, linear: nn.Linear, config: Optional[QuantConfig] = None, *,
                   input_qparams: Optional[tuple[Any, Any]] = None) -> "QuantizedLinear":
        """Quantizes an nn.Linear as `config` says (default Int8DynamicConfig). Int8StaticConfig
        takes `input_qparams=(scale, zero_point)` (or use prepare/convert).

        Parameters
        ----------
        linear
            An nn.Linear on the CPU with a float32, bfloat16 or float16 weight (copied; half
            precision is widened to float32 exactly before quantizing).
        config
            A lowbit config (None: Int8DynamicConfig()).
        input_qparams
            (scale, zero_point) of the activations: Int8StaticConfig only.

        Returns
        -------
        QuantizedLinear
            Reporting the weight's dtype as its `.weight.dtype`.

        Raises
        ------
        TypeError
            linear is not an nn.Linear; its weight is not float32/bfloat16/float16; config is
            not a lowbit config.
        ValueError
            The weight is not on the CPU, or weight or bias holds NaN/Inf; a shape the
            config's kernels cannot take; Int8StaticConfig without input_qparams (and an
            observer that saw no data), or input_qparams for another config (see
            lowbit.nn.QuantizedLinear.from_config).
        """
        from ..quant.config import Int8DynamicConfig
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_float takes an nn.Linear, got {type(linear).__name__}")
        cfg = Int8DynamicConfig() if config is None else config
        w, b = float_weight(linear)
        layer = NumpyQuantizedLinear.from_config(w, b, cfg, input_qparams=input_qparams)
        return cls(layer, cfg.describe(), dtype=linear.weight.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes held: the quantized weight (packed, with scales and zero points) + bias."""
        return int(self._packed.numel() + self._scale.nbytes + self._zero_point.nbytes
                   + (0 if self.bias is None else self.bias.nbytes))

    @property
    def hidden_nbytes(self) -> int:
        """Bytes held outside parameters() and buffers(): the packed weight with its scales
        and zero points (tensor attributes of the module)."""
        return int(self._packed.numel() + self._scale.nbytes + self._zero_point.nbytes)

    def numpy_layer(self) -> NumpyQuantizedLinear:
        """The NumPy layer with this module's weight (shared, not copied) and current bias (for
        saving, and for NumPy callers).

        Returns
        -------
        lowbit.nn.QuantizedLinear
            Over the same packed bytes; it reads this module's memory, so keep the module
            alive and unchanged while using it.

        Raises
        ------
        TypeError, ValueError
            A bias buffer someone replaced by one of another dtype (TypeError), shape or with
            NaN/Inf (ValueError).
        """
        bias = None if self.bias is None else self.bias.detach().cpu().numpy()
        return NumpyQuantizedLinear(self.packed_weight(), bias, input_scale=self.input_scale,
                                   input_zero_point=self.input_zero_point)

    def dequantized_weight(self) -> torch.Tensor:
        """A float32 (out_features, in_features) copy of the weight the layer computes with.

        Returns
        -------
        torch.Tensor
            float32 (out_features, in_features), a new tensor.

        Raises
        ------
        None
            The packed weight was checked when the layer was made.
        """
        return torch.from_numpy(self.packed_weight().dequantize())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x @ W.T + bias, by the layer's lowbit kernel (`family`).

        Parameters
        ----------
        x
            A CPU float32, bfloat16 or float16 tensor of shape (..., in_features).

        Returns
        -------
        torch.Tensor
            float32 (..., out_features). When x requires grad (grad mode on), its backward
            raises RuntimeError: the layer is inference-only.

        Raises
        ------
        TypeError
            x is not a tensor, or not float32 (the message starts with the layer's name).
        ValueError
            x is not on the CPU; x's last dimension is not in_features; NaN/Inf in x.
        """
        if eager(x):
            try:
                if not (x.requires_grad and torch.is_grad_enabled()):
                    # None unless float32, contiguous, of the right width (then the general path)
                    y = self._bound(x)   # reads the bias from self._buffers
                    if y is not None:
                        return y
                if x.requires_grad and torch.is_grad_enabled():
                    # autograd records this call: the output carries a backward that refuses,
                    # rather than no graph at all (which would silently drop the earlier
                    # layers' gradients)
                    out = _NoBackward.apply(x, self._run, self._label)
                    assert isinstance(out, torch.Tensor)
                    return out
                return self._run(x)
            except (TypeError, ValueError) as e:
                check_input(x, self._label)   # the layer's own words for a wrong input
                raise with_layer_name(e, self._label()) from None
        # traced (torch.compile, torch.export, torch.jit.trace, a dispatch mode): the operator
        check_input(x, self._label)
        if not torch.jit.is_tracing() and (x.dim() == 0 or x.shape[-1] != self.in_features):
            raise ValueError(f"{self._label()}: x must have shape (..., {self.in_features}), "
                             f"got {tuple(x.shape)}")
        if onnx_exporting():   # standard quantized ONNX operators instead (lowbit/torch/_onnx.py)
            return linear_graph(self, x)
        return self._kernel.op(x, *self._op_args())

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return call(self._kernel.kernel, x.detach(), self.bias, self.in_features,
                    self.out_features, self._weight)

    # ---- state_dict ---------------------------------------------------------------------------
    # The packed bytes are a private, non-persistent buffer (their layout is the kernels', not
    # a file format): the state_dict holds the canonical quantized weight instead, which
    # lowbit.save writes too, and loading one re-packs it.

    def _quantized_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The quantized tensors (unprefixed, without the bias: that is the buffer) and the
        layer's metadata, as lowbit.save encodes them."""
        tensors: dict[str, np.ndarray] = {}
        meta = encode_linear("", self.numpy_layer(), tensors)
        tensors.pop("bias", None)
        return tensors, meta

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str,
                            keep_vars: bool) -> None:
        tensors, meta = self._quantized_state()
        # bits, scheme, mode, group size, dtype: the tensors alone cannot tell two group sizes
        # with the same number of groups apart (32 and 40 for 96 inputs)
        write_quantized_state(self, destination, prefix, keep_vars, tensors, _format_of(meta))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # All or nothing for this layer: the quantized tensors are checked and re-packed before
        # nn.Module loads the bias, and a failure leaves weight and bias as they were.
        errors = len(error_msgs)
        expected, meta = self._quantized_state()
        new = self._restore_weight(state_dict, prefix, expected, meta, strict, missing_keys,
                                   error_msgs)
        if len(error_msgs) > errors:
            return
        # nn.Module loads the bias and flags unknown keys; it must not see the quantized keys,
        # which it would call unexpected
        own = {prefix + key for key in expected} | {prefix + FORMAT_KEY}
        super()._load_from_state_dict({k: v for k, v in state_dict.items() if k not in own},
                                      prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if new is None or len(error_msgs) > errors:
            return
        self._take(new)   # the re-packed weight (the bias buffer is nn.Module's, loaded above)

    def _restore_weight(self, state_dict: dict[str, Any], prefix: str,
                        expected: dict[str, np.ndarray], meta: dict[str, Any], strict: bool,
                        missing_keys: list[str], error_msgs: list[str]
                        ) -> Optional[NumpyQuantizedLinear]:
        """The layer (without bias) the state_dict's quantized tensors make, checked against
        this one's (`expected`, `meta`); None if the state_dict has none of them or they do
        not fit (the reasons then go to error_msgs)."""
        given: dict[str, np.ndarray] = {}
        problems: list[str] = []
        format_key = prefix + FORMAT_KEY
        if format_key in state_dict:
            try:
                differ = format_mismatch(_format_of(meta),
                                         decode_format(state_dict[format_key], format_key))
            except ValueError as e:
                differ = [str(e)]
            if differ:
                problems.append(f"format mismatch for {format_key}: the checkpoint's layer was "
                                f"made with another config than {self._label()} ("
                                + "; ".join(differ) + ")")
        elif strict and any(prefix + key in state_dict for key in expected):
            missing_keys.append(format_key)
        for key, want in expected.items():
            name = prefix + key
            if name not in state_dict:
                if strict:
                    missing_keys.append(name)
                continue
            try:
                got = state_array(state_dict[name], name)
            except TypeError as e:
                problems.append(f"{e} ({self._label()})")
                continue
            if got.dtype != want.dtype or got.shape != want.shape:
                problems.append(self._mismatch(name, key, got, want, meta))
                continue
            given[key] = got
        if not given and not problems:
            return None
        if not problems and len(given) < len(expected):
            problems.append(f"{self._label()} at {prefix[:-1]!r}: the state_dict has "
                            f"{sorted(given)} but not {sorted(set(expected) - set(given))}; "
                            "its weight can only be replaced as a whole")
        if not problems:
            meta["bias"] = False   # the bias is the buffer's, loaded by nn.Module
            try:
                layer = decode_layer("", meta, given)   # lowbit.load's checks and re-packing
                assert isinstance(layer, NumpyQuantizedLinear)
                return layer
            except (KeyError, TypeError, ValueError) as e:
                problems.append(f"{self._label()} at {prefix[:-1]!r} cannot take this state: "
                                f"{e}")
        error_msgs.extend(problems)
        return None

    def _mismatch(self, name: str, key: str, got: np.ndarray, want: np.ndarray,
                  meta: dict[str, Any]) -> str:
        layout = ""
        if key == "qweight":
            layout = f" ({meta['dtype']} values{', two per byte' if meta['nibbles'] else ''})"
        elif key in ("scale", "zero_point") and meta.get("group_size"):
            layout = f" (one per group of {meta['group_size']} inputs)"
        return (f"size or dtype mismatch for {name}: the checkpoint has {got.dtype} "
                f"{tuple(got.shape)}, {self._label()} stores {want.dtype} {tuple(want.shape)}"
                f"{layout}; was the checkpoint made with another config (bits, group size, "
                "scheme) or shape?")

    def _label(self) -> str:
        return layer_label("QuantizedLinear", getattr(self, "lowbit_name", None),
                           self.extra_repr())

    def extra_repr(self) -> str:
        lay = self._layout
        detail = f", group_size={lay['group_size']}, mode={lay['mode']}" if self.bits == 4 else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, bits={self.bits}, scheme={self.scheme}{detail}")


def _format_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The fields of a layer's lowbit.save metadata that its state_dict must match (the bias is
    nn.Module's business: its key is there or not)."""
    return {"format": "lowbit", **{k: v for k, v in meta.items() if k != "bias"}}

"""QuantizedConv2d / QuantizedConv1d: drop-in nn.Modules for nn.Conv2d / nn.Conv1d (padding
mode "zeros"), computed by lowbit's integer convolution kernels as the torch custom operator
`lowbit::conv_w8a8` (lowbit/torch/_ops.py). The arithmetic is lowbit.nn.QuantizedConv2d's
(uint8 activations per image or per tensor, int8 weights per output channel, exact int32
sums, the float epilogue of docs/numeric_contract.md); these modules hold its packed weight
in a torch tensor."""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .._core import _C
from .._core.checks import check_bool
from ..io.format import decode_layer, encode_conv
from ..nn.conv import QuantizedConv1d as NumpyQuantizedConv1d
from ..nn.conv import QuantizedConv2d as NumpyQuantizedConv2d
from ..quant.config import Int8DynamicConfig, QuantConfig
from ..qtensor import QTensor
from ._guards import WeightInfo, layer_label, refuse_script
from ._kinds import lowbit_layer
from ._onnx import conv_graph, exporting as onnx_exporting
from ._ops import CONV_OP, chained_nhwc, conv_run, conv_view, eager, like_channels_last
from .layers import (FORMAT_KEY, _NoBackward, apply_on_cpu, check_input, decode_format,
                     format_mismatch, state_array, with_layer_name, write_quantized_state)


def conv_float_weight(conv: nn.Module, name: str = "") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """An nn.Conv's weight and bias as float32 NumPy copies (bfloat16 / float16 widened
    exactly), or an error naming the layer."""
    from .layers import float_weight
    return float_weight(conv, name)


def conv_geometry(conv: nn.Module) -> dict[str, Any]:
    """The keyword arguments of lowbit.nn's conv layers for an nn.Conv1d / nn.Conv2d."""
    padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    return {"stride": tuple(conv.stride), "padding": padding, "dilation": tuple(conv.dilation),
            "groups": int(conv.groups)}


def conv_skip_reason(module: nn.Module) -> Optional[str]:
    """Why an nn.Conv1d / nn.Conv2d cannot become a lowbit layer whatever the config."""
    if not isinstance(module, (nn.Conv1d, nn.Conv2d)) or isinstance(
            module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        return f"a {type(module).__name__}: lowbit converts nn.Conv1d and nn.Conv2d"
    if module.padding_mode != "zeros":
        return (f"padding_mode={module.padding_mode!r}: lowbit's convolution kernels pad with "
                "the input's zero point only (padding_mode='zeros')")
    return None


@lowbit_layer
class QuantizedConv2d(nn.Module):
    """Same call as nn.Conv2d: (N, C, H, W) (or unbatched (C, H, W)) -> (N, M, H_out, W_out), in
    the input's dtype (float32, bfloat16 or float16; computed in float32: a half-precision
    input is widened exactly and the result rounded once).

    One torch custom operator (`torch.ops.lowbit.conv_w8a8`, with a fake implementation), so
    torch.compile(fullgraph=True) and torch.export trace it as one node with the same output
    as eager calls. The packed weight is a uint8 tensor attribute (`_packed`, with `_scale`),
    so deepcopy, pickle / torch.save and `.to("cpu")` work; another device raises
    RuntimeError. `state_dict()` holds the quantized weight (`qweight` (M, C / groups, k...),
    `scale`, `zero_point`), `bias`, static layers' `input_scale` / `input_zero_point`, and
    `format` (JSON bytes: dtype, geometry, activation); `load_state_dict` checks and re-packs.
    Inference only (backward raises). `.weight` is a WeightInfo.

    Made by `from_float`, `lowbit.torch.quantize_`, `convert` or `lowbit.load`.

    Parameters
    ----------
    layer
        The lowbit.nn.QuantizedConv2d (or Conv1d, for QuantizedConv1d) to compute like (its
        packed bytes are copied).
    config
        The config's description, shown by summaries.
    name
        The module's qualified name, for errors.
    dtype
        The dtype `.weight.dtype` reports (the float model's).
    channels_last
        Return float outputs in torch.channels_last memory for any input, as nn.Conv2d does
        for a channels_last weight (2-D layers only; the `channels_last` attribute, also set
        and cleared by `.to(memory_format=...)`). A channels_last input gives a channels_last
        output either way. The values never depend on it.

    Raises
    ------
    TypeError
        layer is not a NumPy conv layer of this module's rank; channels_last is not a bool.
    """

    numpy_type: type[NumpyQuantizedConv2d] = NumpyQuantizedConv2d
    bias: Optional[torch.Tensor]
    _packed: torch.Tensor
    _scale: torch.Tensor

    def __init__(self, layer: NumpyQuantizedConv2d, config: str = "", name: Optional[str] = None,
                 dtype: torch.dtype = torch.float32, channels_last: bool = False) -> None:
        super().__init__()
        if type(layer) is not self.numpy_type:
            raise TypeError(f"{type(self).__name__} takes a lowbit.nn.{self.numpy_type.__name__}, "
                            f"got {type(layer).__name__}")
        self.config = config
        self.lowbit_name = name
        self.dtype = dtype
        self.padding_mode = "zeros"
        # Float outputs in channels_last memory for any input, as nn.Conv2d gives for a
        # channels_last weight (conversions pass the conv's layout; .to(memory_format=...)
        # sets it later).
        self.channels_last = check_bool(channels_last, "channels_last") and self.numpy_type.spatial == 2
        self.fused_modules: tuple[str, ...] = tuple(layer.fused_modules)
        bias = None if layer.bias is None else torch.from_numpy(layer.bias.copy())
        self.register_buffer("bias", bias)
        self._take(layer)

    def _take(self, layer: NumpyQuantizedConv2d) -> None:
        storage = layer.packed.storage()
        packed = torch.empty(storage.size, dtype=torch.uint8)
        if storage.size:
            packed.numpy()[:] = storage
        self._packed = packed
        self._scale = torch.from_numpy(layer.scale.copy())
        self.in_channels = layer.in_channels
        self.out_channels = layer.out_channels
        self.kernel_size = layer.kernel_size
        self.stride = layer.stride
        self.padding = layer.padding
        self.pads = layer.pads
        self.dilation = layer.dilation
        self.groups = layer.groups
        self.weight_dtype = layer.weight_dtype
        self.bits = layer.bits
        self.scheme = layer.scheme
        self.activation = layer.activation
        self.input_scale = layer.input_scale
        self.input_zero_point = layer.input_zero_point
        self._params = list(layer._params)
        m, cg = layer.out_channels, layer.in_channels // layer.groups
        kh, kw = (1, *layer.kernel_size) if layer.spatial == 1 else layer.kernel_size
        storage_type = _storage(layer.weight_dtype)
        self._weight_shape = [m, cg, layer.groups, kh, kw]
        self._weight_type = int(_C.ElemType.uint8 if storage_type == np.uint8 else _C.ElemType.int8)
        from ..nn.conv import ACTIVATIONS
        lo, hi = ACTIVATIONS[layer.activation]
        if layer.scheme == "static":
            zp = layer.input_zero_point
            assert zp is not None and layer.input_scale is not None
            in_type = _C.QType.int8 if zp.dtype == np.int8 else _C.QType.uint8
            self._activation: tuple[Any, ...] = (False, float(np.float32(layer.input_scale)),
                                                 int(zp), int(in_type), lo, hi)
        else:
            self._activation = (True, 1.0, 0, int(_C.QType.uint8), lo, hi)
        chain_in = self.__dict__.get("_chain_in")
        if chain_in is not None:
            # the previous layer holds this very tensor: a load_state_dict that changes this
            # layer's input parameters changes what it quantizes to as well
            qparams = self.chain_qparams()
            if qparams is None:
                raise ValueError(f"{self._label()} is the second layer of an integer chain; it "
                                 "cannot become dynamic (lowbit.torch.chain(model, False) "
                                 "first)")
            chain_in.copy_(torch.tensor(qparams, dtype=torch.float64))
        self._refresh()

    def _refresh(self) -> None:
        """The kernel's view of this module's packed tensor (made again whenever the tensors
        are replaced: _take, unpickling, deepcopy)."""
        self._view = conv_view(self._packed, self._weight_shape, self._weight_type)
        self._scale_np = self._scale.numpy()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_view", "_scale_np"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("channels_last", False)   # pickled before the setting existed
        super().__setstate__(state)
        self._refresh()

    # ---- conversion ---------------------------------------------------------------------------
    @classmethod
    def from_float(cls, conv: nn.Module, config: Optional[QuantConfig] = None, *,
                   input_qparams: Optional[tuple[Any, Any]] = None,
                   activation: Optional[str] = None) -> "QuantizedConv2d":
        """Quantizes an nn.Conv2d (QuantizedConv1d: an nn.Conv1d) as `config` says (default
        Int8DynamicConfig).

        Parameters
        ----------
        conv
            The float module (padding_mode "zeros", on the CPU, float32 / bfloat16 / float16
            weight).
        config
            A lowbit config with a convolution kernel.
        input_qparams
            (scale, zero_point) of the activations: Int8StaticConfig only.
        activation
            None, "relu" or "relu6", fused as a clamp.

        Returns
        -------
        QuantizedConv2d (or QuantizedConv1d)

        Raises
        ------
        TypeError
            conv is not the matching nn.Conv; a weight dtype lowbit does not quantize; a
            config that is not lowbit's.
        ValueError
            Another padding_mode; NaN/Inf weights; a shape or config the kernels cannot take
            (lowbit.nn.QuantizedConv2d.from_config).
        """
        want = nn.Conv1d if cls.numpy_type.spatial == 1 else nn.Conv2d
        if not isinstance(conv, want):
            raise TypeError(f"{cls.__name__}.from_float takes an {want.__name__}, got "
                            f"{type(conv).__name__}")
        reason = conv_skip_reason(conv)
        if reason:
            raise ValueError(reason)
        cfg = Int8DynamicConfig() if config is None else config
        w, b = conv_float_weight(conv)
        layer = cls.numpy_type.from_config(w, b, cfg, input_qparams=input_qparams,
                                           activation=activation, **conv_geometry(conv))
        return cls(layer, cfg.describe_conv(), dtype=conv.weight.dtype,
                   channels_last=like_channels_last(conv.weight))

    # ---- what it holds ----------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return int(self._packed.numel() + self._scale.nbytes + 4 * self.out_channels
                   + (0 if self.bias is None else self.bias.nbytes))

    @property
    def hidden_nbytes(self) -> int:
        """Bytes held outside parameters() and buffers(): the packed weight and its scales."""
        return int(self._packed.numel() + self._scale.nbytes + 4 * self.out_channels)

    def qtensor(self) -> QTensor:
        """The quantized weight (per output channel), unpacked from this module's bytes.

        Returns
        -------
        lowbit.QTensor
            (out_channels, in_channels / groups, kernel...) of the layer's weight dtype, axis 0.

        Raises
        ------
        Nothing: the bytes were checked when the module was built or loaded.
        """
        storage = _storage(self.weight_dtype)
        data = self._view.unpack()
        if self.numpy_type.spatial == 1:
            data = data[:, :, 0, :]
        return QTensor(np.ascontiguousarray(data.view(storage)), self._scale_np.copy(),
                       self._view.zero_points().astype(storage), self.weight_dtype, 0, None)

    def numpy_layer(self) -> NumpyQuantizedConv2d:
        """The NumPy layer computing like this module (a re-packed copy of its weight, with the
        current bias).

        Returns
        -------
        lowbit.nn.QuantizedConv2d (or QuantizedConv1d)

        Raises
        ------
        TypeError, ValueError
            A bias buffer someone replaced by one of another dtype or shape, or with NaN/Inf.
        """
        bias = None if self.bias is None else self.bias.detach().cpu().numpy()
        layer = self.numpy_type(self.qtensor(), bias, stride=self.stride, padding=self.pads,
                                dilation=self.dilation, groups=self.groups,
                                input_scale=self.input_scale,
                                input_zero_point=self.input_zero_point,
                                activation=self.activation)
        layer.fused_modules = tuple(self.__dict__.get("fused_modules", ()))
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        """A float32 copy of the weight the layer computes with.

        Returns
        -------
        torch.Tensor
            float32 (out_channels, in_channels / groups, kernel...): (q - zero) * scale.

        Raises
        ------
        Nothing: the bytes were checked when the module was built or loaded.
        """
        qt = self.qtensor()
        shape = (-1,) + (1,) * (qt.data.ndim - 1)
        w = (qt.data.astype(np.float32) - qt.zero_point.astype(np.float32).reshape(shape)) \
            * qt.scale.reshape(shape)
        return torch.from_numpy(np.ascontiguousarray(w, np.float32))

    @property
    def weight(self) -> WeightInfo:
        """A WeightInfo (shape, dtype, device; `.dequantize()`), not a tensor."""
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        return WeightInfo(self._label, shape, self.dequantized_weight, self.dtype)

    @weight.setter
    def weight(self, value: Any) -> None:
        raise AttributeError(f"{self._label()}: .weight cannot be assigned: the weight is "
                             "quantized and packed")

    def __prepare_scriptable__(self) -> nn.Module:
        raise refuse_script(self._label())

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
               ) -> "QuantizedConv2d":
        apply_on_cpu(self, fn, recurse)
        if self.numpy_type.spatial == 2:
            # .to(memory_format=...) as nn.Conv2d takes it: what fn makes of a 4-D tensor in
            # each layout (a dtype or copy conversion keeps both, leaving the setting alone)
            plain = fn(torch.zeros((1, 2, 2, 2)))
            last = fn(torch.zeros((1, 2, 2, 2)).contiguous(memory_format=torch.channels_last))
            if like_channels_last(plain):
                self.channels_last = True
            elif last.is_contiguous():
                self.channels_last = False
        return self

    # ---- computing ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution (see the class).

        Parameters
        ----------
        x
            A CPU float32, bfloat16 or float16 tensor (N, C, spatial...) or unbatched.

        Returns
        -------
        torch.Tensor
            x's dtype, (N, M, out...). When x requires grad, backward raises RuntimeError.

        Raises
        ------
        TypeError
            x is not a float tensor (the message names the layer).
        ValueError
            x on another device, of another rank or channel count; a kernel larger than the
            padded input; NaN/Inf in x.
        """
        chain_in = self.__dict__.get("_chain_in")
        n = self.numpy_type.spatial
        chained = chain_in is not None and isinstance(x, torch.Tensor) and x.dtype is torch.uint8
        if chained:
            if x.device.type != "cpu":
                raise ValueError(f"{self._label()} runs on the CPU; got an input on {x.device}")
        else:
            check_input(x, self._label)
        chain_out = self.__dict__.get("_chain_out")
        if chain_out is not None and x.dtype is not torch.float32 and x.dtype is not torch.uint8:
            chain_out = None   # a half-precision model: the next layer rounds its float input
        if n == 2 and chained and chained_nhwc(x, self.in_channels):
            pass   # the previous layer's NHWC rows (it ran on a channels_last input)
        elif x.dim() not in (n + 1, n + 2) or x.shape[-n - 1] != self.in_channels:
            raise ValueError(f"{self._label()}: x must have shape (N, {self.in_channels}, "
                             f"{'H, W' if n == 2 else 'L'}) or be unbatched, got "
                             f"{tuple(x.shape)}")
        unbatched = x.dim() == n + 1
        x4 = x.unsqueeze(0) if unbatched else x
        if n == 1:
            x4 = x4.unsqueeze(2)
            if not chained and not x4.is_contiguous():
                x4 = x4.contiguous()   # (N, C, 1, L): never read as channels_last
        if onnx_exporting():   # standard quantized ONNX operators (lowbit/torch/_onnx.py)
            y = conv_graph(self, x4, chain_out)
        elif eager(x):
            try:
                if x.requires_grad and torch.is_grad_enabled():
                    y = _NoBackward.apply(x4, self._run, self._label)
                else:
                    y = self._run(x4, chain_out)
            except (TypeError, ValueError) as e:
                raise with_layer_name(e, self._label()) from None
        else:
            y = CONV_OP(x4, self._packed, self._scale, self.bias, self._weight_shape,
                        self._weight_type, self._params, *self._activation, chain_out,
                        self.channels_last)
        if n == 1:
            y = y.squeeze(2)
        return y.squeeze(0) if unbatched else y

    def _run(self, x4: torch.Tensor, chain_out: Optional[torch.Tensor] = None) -> torch.Tensor:
        return conv_run(x4, self._view, self._scale_np, self.bias, self._params,
                        self._activation, chain_out, self.channels_last)

    # ---- the integer chain (lowbit.torch.chain) ---------------------------------------------
    def chain_qparams(self) -> Optional[tuple[float, int]]:
        """The input quantization an integer chain's previous layer writes for this layer.

        Returns
        -------
        tuple of (float, int) or None
            A static layer's input scale and zero point in the uint8 domain (an int8 zero point
            shifted by 128, since the chain hands over uint8); None for a dynamic layer, which
            quantizes each input itself and so cannot be chained into.

        Raises
        ------
        Nothing: every layer answers.
        """
        if self._activation[0]:
            return None
        _, scale, zero, qtype, _, _ = self._activation
        return float(scale), int(zero) + (128 if qtype == int(_C.QType.int8) else 0)

    # ---- state_dict ---------------------------------------------------------------------------
    def _quantized_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors: dict[str, np.ndarray] = {}
        meta = encode_conv("", self.numpy_layer(), tensors)
        tensors.pop("bias", None)
        return tensors, meta

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str,
                            keep_vars: bool) -> None:
        tensors, meta = self._quantized_state()
        write_quantized_state(self, destination, prefix, keep_vars, tensors, _conv_format(meta))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # all or nothing: the quantized tensors are checked and re-packed before the bias loads
        errors = len(error_msgs)
        expected, meta = self._quantized_state()
        keys = [prefix + k for k in expected]
        present = [k for k in keys if k in state_dict]
        new = None
        format_key = prefix + FORMAT_KEY
        if format_key in state_dict:
            try:
                differ = format_mismatch(_conv_format(meta),
                                         decode_format(state_dict[format_key], format_key))
            except ValueError as e:
                differ = [str(e)]
            if differ:
                error_msgs.append(f"format mismatch for {format_key}: the checkpoint's layer "
                                  f"differs from {self._label()} (" + "; ".join(differ) + ")")
        elif strict and present:
            missing_keys.append(format_key)
        if strict:
            missing_keys.extend(k for k in keys if k not in state_dict)
        if present and len(error_msgs) == errors:
            if len(present) < len(keys):
                error_msgs.append(f"{self._label()} at {prefix[:-1]!r}: the state_dict has "
                                  f"{sorted(present)} but not all of {sorted(keys)}; its weight "
                                  "can only be replaced as a whole")
            else:
                given = {}
                for key, want in expected.items():
                    got = state_array(state_dict[prefix + key], prefix + key)
                    if got.dtype != want.dtype or got.shape != want.shape:
                        error_msgs.append(
                            f"size or dtype mismatch for {prefix + key}: the checkpoint has "
                            f"{got.dtype} {tuple(got.shape)}, {self._label()} stores "
                            f"{want.dtype} {tuple(want.shape)}")
                    given[key] = got
                if len(error_msgs) == errors:
                    meta["bias"] = False
                    try:
                        new = decode_layer("", meta, given)
                    except (KeyError, TypeError, ValueError) as e:
                        error_msgs.append(f"{self._label()} at {prefix[:-1]!r} cannot take this "
                                          f"state: {e}")
        if len(error_msgs) > errors:
            return
        own = set(keys) | {format_key}
        super()._load_from_state_dict({k: v for k, v in state_dict.items() if k not in own},
                                      prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if new is not None and len(error_msgs) == errors:
            self._take(new)

    def _label(self) -> str:
        return layer_label(type(self).__name__, getattr(self, "lowbit_name", None),
                           self.extra_repr())

    def extra_repr(self) -> str:
        act = f", activation={self.activation}" if self.activation else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, pads={self.pads}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}, "
                f"weight={self.weight_dtype}, scheme={self.scheme}{act}"
                f"{', channels_last=True' if self.channels_last else ''}{self._chain_repr()}")

    def _chain_repr(self) -> str:
        links = [f"{key}={self.__dict__[key]!r}" for key in ("chain_from", "chain_to")
                 if key in self.__dict__]
        return "".join(", " + link for link in links)


@lowbit_layer
class QuantizedConv1d(QuantizedConv2d):
    """Same call as nn.Conv1d: (N, C, L) (or unbatched (C, L)) -> (N, M, L_out);
    QuantizedConv2d's computation with a height of 1 (`torch.ops.lowbit.conv_w8a8` on the
    4-D view).

    Parameters
    ----------
    layer, config, name, dtype
        As QuantizedConv2d, with a lowbit.nn.QuantizedConv1d.
    channels_last
        Ignored: a 1-D layer's output is always contiguous (3-D tensors have no
        channels_last).

    Raises
    ------
    TypeError
        layer is not a lowbit.nn.QuantizedConv1d.
    """

    numpy_type = NumpyQuantizedConv1d


def _storage(dtype: str) -> Any:
    from .._core.checks import QTYPES
    return QTYPES[dtype][0]


def _conv_format(meta: dict[str, Any]) -> dict[str, Any]:
    return {"format": "lowbit", **{k: v for k, v in meta.items() if k not in ("bias", "fused")}}


CONV_MODULES = {1: QuantizedConv1d, 2: QuantizedConv2d}


def quantized_conv_class(conv: nn.Module) -> type[QuantizedConv2d]:
    """The lowbit module for an nn.Conv1d / nn.Conv2d."""
    return QuantizedConv1d if isinstance(conv, nn.Conv1d) else QuantizedConv2d

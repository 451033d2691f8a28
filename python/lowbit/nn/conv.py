"""The NumPy quantized convolutions (lowbit.nn.QuantizedConv2d, QuantizedConv1d): float32 NCHW
in and out, int8 (or int4-valued) weights per output channel, uint8 activations per image (or
a calibrated per-tensor scale), the exact integer convolution of lowbit's conv kernels
(lowbit._core._C.conv_float) and a float epilogue in one documented order
(docs/numeric_contract.md):

    y[n, m, ...] = clamp(fma(float(acc), x_scale * w_scale[m], bias[m]), lo, hi)

with acc the exact int32 sum over the filter of (x_q - x_zero) * (w_q - w_zero[m]) and
(lo, hi) the fused activation: none (-inf, inf), "relu" (0, inf) or "relu6" (0, 6). Its
config (lowbit.quant.config) says how a float weight becomes one (`conv_plan`,
`quantize_conv_weight`, `conv_activation`)."""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import numpy as np

from .._core import _C
from .._core.checks import (NARROW_QTYPES, QTYPES, float_array, require_finite, scales,
                            zero_points)
from ..quant.config import Int8DynamicConfig, QuantConfig, check_config
from ..qtensor import QTensor
from .linear import _input_qparams

# The fused activations a convolution's epilogue applies, as its clamp bounds.
ACTIVATIONS: dict[Optional[str], tuple[float, float]] = {
    None: (-math.inf, math.inf), "relu": (0.0, math.inf), "relu6": (0.0, 6.0)}

Padding = Union[int, str, tuple[int, ...]]


def _ints(value: Any, n: int, name: str, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of n ints, each >= minimum, as a tuple of n ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        values: tuple[Any, ...] = (int(value),) * n
    elif isinstance(value, (tuple, list)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value):
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if len(values) != n:
        raise ValueError(f"{name} must have {n} value(s), got {len(values)}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {values}")
    return values


def resolve_padding(padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...],
                    dilation: tuple[int, ...]) -> tuple[int, ...]:
    """nn.Conv's padding as explicit ONNX pads (begin..., end...): an int or one int per spatial
    axis (both sides), 2 * spatial ints (ONNX order), "valid" (none) or "same" (stride 1 only,
    as torch: total dilation * (kernel - 1), the smaller half first)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * n)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' needs stride 1 (as in torch.nn.Conv2d)")
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple(t // 2 for t in total) + tuple(t - t // 2 for t in total)
        raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 * n:
        return _ints(padding, 2 * n, "padding", 0)
    one = _ints(padding, n, "padding", 0)
    return one + one


class QuantizedConv2d:
    """A 2-D convolution, float32 (N, C, H, W) in and (N, M, H_out, W_out) out (an unbatched
    (C, H, W) input gives (M, H_out, W_out)), computed by lowbit's integer conv kernels: the
    input quantized to uint8 per image ("dynamic") or with a frozen per-tensor scale and zero
    point ("static"), the exact int32 convolution (im2col onto the int8 GEMM per group;
    depthwise convolutions on direct per-ISA kernels), then the float epilogue of the module
    docstring. Usually made by `from_config` / `from_float` or lowbit.torch's conversions.

    Parameters
    ----------
    weight
        A QTensor of shape (out_channels, in_channels / groups, kH, kW) with dtype int8,
        uint8, int4 or uint4 (4-bit values one per byte), per output channel (axis 0) or per
        tensor.
    bias
        None, or float32 (out_channels,) (copied).
    stride, dilation
        An int or one int >= 1 per spatial axis.
    padding
        An int or one int per spatial axis (both sides), 2 * spatial ints (begin..., end...,
        as ONNX's pads), "valid" or "same" (stride 1). Padded taps read the input's zero point
        (they add nothing).
    groups
        Channel groups (in_channels and out_channels divisible by it); in_channels =
        weight.shape[1] * groups.
    input_scale, input_zero_point
        Both or neither: the frozen activation scale and zero point of a static layer (as
        lowbit.nn.QuantizedLinear).
    activation
        None, "relu" or "relu6": fused into the epilogue as a clamp.

    Raises
    ------
    TypeError
        weight is not a QTensor; bias not float32 data; a geometry argument that is not an
        int (or tuple of ints).
    ValueError
        A weight of another rank, type or layout, scales not finite and > 0, zero points out of
        range; negative padding, stride or dilation below 1, groups < 1 or out_channels not
        divisible by groups; 'same' with a stride; an unknown activation; only one of
        input_scale / input_zero_point; a bias of another shape or with NaN/Inf.
    """

    spatial = 2
    kind = "Conv2d"

    def __init__(self, weight: QTensor, bias: Any = None, *, stride: Any = 1,
                 padding: Padding = 0, dilation: Any = 1, groups: int = 1,
                 input_scale: Any = None, input_zero_point: Any = None,
                 activation: Optional[str] = None) -> None:
        n = self.spatial
        if not isinstance(weight, QTensor):
            raise TypeError(f"weight must be a lowbit QTensor, got {type(weight).__name__}")
        if weight.dtype not in NARROW_QTYPES or weight.group_size is not None \
                or weight.axis not in (0, None):
            raise ValueError(f"weight must be an int8/uint8/int4/uint4 QTensor per output channel "
                             f"(axis=0) or per tensor, got dtype {weight.dtype!r}, axis "
                             f"{weight.axis}, group_size {weight.group_size}")
        storage, lo, hi = QTYPES[weight.dtype]
        data = np.asarray(weight.data)
        if data.ndim != 2 + n or data.dtype != storage:
            raise ValueError(f"weight must be {storage.__name__} of rank {2 + n} (out_channels, "
                             f"in_channels / groups, kernel...), got {data.dtype} of shape "
                             f"{data.shape}")
        if min(data.shape) < 1:
            raise ValueError(f"weight has an empty dimension: {data.shape}")
        if data.min() < lo or data.max() > hi:
            raise ValueError(f"weight values lie outside the {weight.dtype} range [{lo}, {hi}]")
        m = data.shape[0]
        s = scales(weight.scale, "weight scale")
        z = zero_points(weight.zero_point, lo, hi, "weight zero_point")
        if s.size not in (1, m) or z.size != s.size:
            raise ValueError(f"weight scale and zero_point must have 1 or {m} values (one per "
                             f"output channel), got {s.size} and {z.size}")
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
            raise TypeError(f"groups must be an int, got {groups!r}")
        groups = int(groups)
        if groups < 1 or m % groups:
            raise ValueError(f"groups={groups} must be >= 1 and divide out_channels={m}")
        self.kernel_size = tuple(int(k) for k in data.shape[2:])
        self.stride = _ints(stride, n, "stride", 1)
        self.dilation = _ints(dilation, n, "dilation", 1)
        self.padding = padding
        self.pads = resolve_padding(padding, self.kernel_size, self.stride, self.dilation)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be None, 'relu' or 'relu6', got {activation!r}")
        self.activation = activation
        self.groups = groups
        self.weight_dtype = weight.dtype
        self.scale = np.ascontiguousarray(np.broadcast_to(s.reshape(-1), (m,)), np.float32)
        zm = np.ascontiguousarray(np.broadcast_to(z.reshape(-1), (m,)), np.int32)
        w4 = data if n == 2 else data[:, :, None, :]
        self.packed = _C.pack_conv(np.ascontiguousarray(w4), groups, zm)
        if (input_scale is None) != (input_zero_point is None):
            raise ValueError("give both input_scale and input_zero_point, or neither")
        self.input_scale: Optional[np.ndarray] = None
        self.input_zero_point: Optional[np.ndarray] = None
        self.scheme = "dynamic"
        if input_scale is not None:
            self.input_scale, self.input_zero_point = _input_qparams(input_scale,
                                                                     input_zero_point)
            self.scheme = "static"
        self.bias: Optional[np.ndarray] = None
        if bias is not None:
            b = np.array(float_array(bias, "bias"), dtype=np.float32, copy=True)
            require_finite(b, "bias")
            if b.shape != (m,):
                raise ValueError(f"bias must have shape ({m},), got {b.shape}")
            self.bias = b
        # Names of the float modules (BatchNorm, ReLU) lowbit.torch's conversions fused into this
        # layer: lowbit.save records them, lowbit.load puts nn.Identity there in a skeleton.
        self.fused_modules: tuple[str, ...] = ()
        # the kernel's geometry: (stride_h, stride_w, dil_h, dil_w, top, left, bottom, right)
        if n == 2:
            self._params = [*self.stride, *self.dilation, *self.pads]
        else:
            self._params = [1, self.stride[0], 1, self.dilation[0], 0, self.pads[0], 0,
                            self.pads[1]]

    # ---- construction from float weights ----------------------------------------------------
    @classmethod
    def from_config(cls, weight: Any, bias: Any = None, config: Optional[QuantConfig] = None,
                    *, stride: Any = 1, padding: Padding = 0, dilation: Any = 1,
                    groups: int = 1, input_qparams: Optional[tuple[Any, Any]] = None,
                    activation: Optional[str] = None) -> "QuantizedConv2d":
        """Quantizes a float32 (out_channels, in_channels / groups, kernel...) weight as
        `config` says (default Int8DynamicConfig: int8 per output channel, uint8 activations
        per image). Int8StaticConfig needs `input_qparams=(scale, zero_point)` or a config
        whose observer has observed calibration data.

        Parameters
        ----------
        weight
            The float32 NumPy weight, of rank 4 (Conv2d) or 3 (Conv1d).
        bias
            None, or float32 (out_channels,).
        config
            A lowbit config (None: Int8DynamicConfig()); weight-only configs have no
            convolution kernel.
        stride, padding, dilation, groups, activation
            As the class.
        input_qparams
            (scale, zero_point) of the activations: Int8StaticConfig only.

        Returns
        -------
        QuantizedConv2d (or QuantizedConv1d)

        Raises
        ------
        TypeError
            config is not a lowbit config; weight or bias not float32.
        ValueError
            A weight that is not a NumPy array of the layer's rank; a shape the config cannot
            take (lowbit.quant.plan.UnsupportedLayer: a weight-only config, a filter past the
            exact int32 depth); NaN/Inf; a static config without calibration; bad geometry
            (see the class).
        """
        cfg = check_config(Int8DynamicConfig() if config is None else config)
        if not isinstance(weight, np.ndarray) or weight.ndim != 2 + cls.spatial:
            raise ValueError(f"weight must be a {2 + cls.spatial}-D NumPy array (out_channels, "
                             "in_channels / groups, kernel...)")
        w = float_array(weight, "weight")
        require_finite(w, "weight")
        m = w.shape[0]
        plan = cfg.conv_plan(m, int(np.prod(w.shape[1:])))
        if cfg.calibrated and input_qparams is None:
            if not cfg.observer.observed:
                raise ValueError("Int8StaticConfig needs calibrated activation parameters: "
                                 "pass input_qparams=(scale, zero_point) or a config whose "
                                 "observer has observed data")
            input_qparams = cfg.observer.calculate_qparams()
        flat = cfg.quantize_conv_weight(np.ascontiguousarray(w.reshape(m, -1)), plan)
        qt = QTensor(flat.data.reshape(w.shape), flat.scale, flat.zero_point, flat.dtype,
                     flat.axis, None)
        return cls.from_quantized(qt, bias, cfg, stride=stride, padding=padding,
                                  dilation=dilation, groups=groups,
                                  input_qparams=input_qparams, activation=activation)

    @classmethod
    def from_float(cls, weight: Any, bias: Any = None, *, stride: Any = 1,
                   padding: Padding = 0, dilation: Any = 1, groups: int = 1,
                   config: Optional[QuantConfig] = None,
                   activation: Optional[str] = None) -> "QuantizedConv2d":
        """`from_config` with the config as a keyword (default Int8DynamicConfig).

        Parameters
        ----------
        weight, bias, stride, padding, dilation, groups, config, activation
            As `from_config`.

        Returns
        -------
        QuantizedConv2d (or QuantizedConv1d)

        Raises
        ------
        TypeError, ValueError
            As `from_config`.
        """
        return cls.from_config(weight, bias, config, stride=stride, padding=padding,
                               dilation=dilation, groups=groups, activation=activation)

    @classmethod
    def from_quantized(cls, weight: QTensor, bias: Any, config: QuantConfig, *,
                       stride: Any = 1, padding: Padding = 0, dilation: Any = 1,
                       groups: int = 1, input_qparams: Optional[tuple[Any, Any]] = None,
                       activation: Optional[str] = None) -> "QuantizedConv2d":
        """The layer `config` builds around an already quantized weight (`quantize_conv_weight`'s,
        or the values a QAT layer learned to round to).

        Parameters
        ----------
        weight
            The quantized weight (see the class).
        bias, stride, padding, dilation, groups, activation
            As the class.
        config
            A lowbit config with a convolution kernel.
        input_qparams
            (scale, zero_point): required for Int8StaticConfig, refused otherwise.

        Returns
        -------
        QuantizedConv2d (or QuantizedConv1d)

        Raises
        ------
        TypeError, ValueError
            config is not a lowbit config or has no convolution kernel; input_qparams missing
            for a static config or given for another; the class's errors.
        """
        cfg = check_config(config)
        cfg.conv_plan(1, 1)   # a config without convolution kernels refuses here
        if cfg.calibrated != (input_qparams is not None):
            raise ValueError(f"input_qparams=(scale, zero_point) are required for "
                             f"{type(cfg).__name__}" if cfg.calibrated else
                             "input_qparams=(scale, zero_point) apply to calibrated (static) "
                             "configs only")
        iq = (None, None) if input_qparams is None else input_qparams
        return cls(weight, bias, stride=stride, padding=padding, dilation=dilation,
                   groups=groups, input_scale=iq[0], input_zero_point=iq[1],
                   activation=activation)

    # ---- what the layer holds ---------------------------------------------------------------
    @property
    def out_channels(self) -> int:
        return int(self.packed.out_channels)

    @property
    def in_channels(self) -> int:
        return int(self.packed.group_channels * self.groups)

    @property
    def bits(self) -> int:
        return 4 if self.weight_dtype in ("int4", "uint4") else 8

    @property
    def weight_nbytes(self) -> int:
        """Bytes the layer holds for its weight (packed values, scales and zero points)."""
        return int(self.packed.nbytes + self.scale.nbytes + 4 * self.out_channels)

    @property
    def nbytes(self) -> int:
        return self.weight_nbytes + (0 if self.bias is None else int(self.bias.nbytes))

    def qtensor(self) -> QTensor:
        """The quantized weight back from the packed one (per output channel, axis 0).

        Returns
        -------
        QTensor
            (out_channels, in_channels / groups, kernel...) of the layer's weight dtype.

        Raises
        ------
        None
        """
        storage = QTYPES[self.weight_dtype][0]
        data = self.packed.unpack()
        if self.spatial == 1:
            data = data[:, :, 0, :]
        zero = self.packed.zero_points().astype(storage)
        return QTensor(np.ascontiguousarray(data.view(storage)), self.scale.copy(), zero,
                       self.weight_dtype, 0, None)

    def dequantized_weight(self) -> np.ndarray:
        """The float32 weight the layer computes with ((q - zero) * scale per channel).

        Returns
        -------
        numpy.ndarray
            float32 (out_channels, in_channels / groups, kernel...).

        Raises
        ------
        None
        """
        qt = self.qtensor()
        shape = (-1,) + (1,) * (qt.data.ndim - 1)
        return ((qt.data.astype(np.float32) - qt.zero_point.astype(np.float32).reshape(shape))
                * qt.scale.reshape(shape)).astype(np.float32)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output's shape for an input of `input_shape` (batched or not).

        Parameters
        ----------
        input_shape
            (N, C, spatial...) or (C, spatial...).

        Returns
        -------
        tuple of int

        Raises
        ------
        None
            The shape is not checked here (`compute` checks it).
        """
        spatial = input_shape[-self.spatial:]
        n = self.spatial
        out = tuple((size + self.pads[i] + self.pads[n + i] - self.dilation[i]
                     * (self.kernel_size[i] - 1) - 1) // self.stride[i] + 1
                    for i, size in enumerate(spatial))
        return tuple(input_shape[:-n - 1]) + (self.out_channels,) + out

    # ---- computing --------------------------------------------------------------------------
    def compute(self, x: Any, bias: Optional[np.ndarray]) -> np.ndarray:
        """The layer's computation with an explicit bias (the PyTorch wrapper passes its own
        buffer).

        Parameters
        ----------
        x
            float32 (or float16) (N, C, spatial...) or unbatched (C, spatial...).
        bias
            None, or float32 (out_channels,), used instead of the layer's own.

        Returns
        -------
        numpy.ndarray
            float32 (N, M, out...) (unbatched: (M, out...)).

        Raises
        ------
        TypeError
            x or bias is not float32/float16 data.
        ValueError
            x of another rank or channel count; a kernel larger than the padded input; NaN/Inf
            in x or bias; a bias of another shape.
        """
        n = self.spatial
        xa = float_array(x, "x")
        unbatched = xa.ndim == n + 1
        if unbatched:
            xa = xa[None]
        if xa.ndim != n + 2:
            raise ValueError(f"x must be {n + 2}-D (N, C, {'H, W' if n == 2 else 'L'}) or "
                             f"{n + 1}-D unbatched, got shape {xa.shape}")
        if xa.shape[1] != self.in_channels:
            raise ValueError(f"x has {xa.shape[1]} channels; the layer takes "
                             f"{self.in_channels}")
        if bias is not None:
            bias = float_array(bias, "bias")
            if bias.shape != (self.out_channels,):
                raise ValueError(f"bias must have shape ({self.out_channels},), got "
                                 f"{bias.shape}")
        x4 = np.ascontiguousarray(xa if n == 2 else xa[:, :, None, :])
        lo, hi = ACTIVATIONS[self.activation]
        if self.scheme == "static":
            assert self.input_scale is not None and self.input_zero_point is not None
            zp = self.input_zero_point
            in_type = _C.QType.int8 if zp.dtype == np.int8 else _C.QType.uint8
            y = _C.conv_float(x4, self.packed, self._params, False, float(self.input_scale),
                              int(zp), in_type, self.scale, bias, lo, hi)
        else:
            y = _C.conv_float(x4, self.packed, self._params, True, 1.0, 0, _C.QType.uint8,
                              self.scale, bias, lo, hi)
        if n == 1:
            y = y[:, :, 0, :]
        return y[0] if unbatched else y

    def __call__(self, x: Any) -> np.ndarray:
        """The convolution (see the class).

        Parameters
        ----------
        x
            float32 (or float16) (N, C, spatial...) or unbatched (C, spatial...).

        Returns
        -------
        numpy.ndarray
            float32 (N, M, out...).

        Raises
        ------
        TypeError, ValueError
            As `compute`.
        """
        return self.compute(x, self.bias)

    def geometry(self) -> dict[str, Any]:
        """The convolution's attributes as plain values (what lowbit.save records).

        Returns
        -------
        dict
            ``stride``, ``pads`` (ONNX order: all begins, then all ends) and ``dilation`` as
            lists of ints, ``groups`` an int, ``activation`` None, "relu" or "relu6".

        Raises
        ------
        Nothing: the attributes were checked when the layer was built.
        """
        return {"stride": list(self.stride), "pads": list(self.pads),
                "dilation": list(self.dilation), "groups": self.groups,
                "activation": self.activation}

    def __repr__(self) -> str:
        act = f", activation={self.activation!r}" if self.activation else ""
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, pads={self.pads}, "
                f"dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
                f"weight={self.weight_dtype}, scheme={self.scheme!r}{act})")


class QuantizedConv1d(QuantizedConv2d):
    """A 1-D convolution, float32 (N, C, L) in and (N, M, L_out) out (unbatched (C, L) too):
    QuantizedConv2d's computation with a height of 1. Weight (out_channels, in_channels /
    groups, k); stride, padding and dilation an int or a 1-tuple (padding also (left, right),
    "valid" or "same").

    Parameters
    ----------
    weight, bias, stride, padding, dilation, groups, input_scale, input_zero_point, activation
        As QuantizedConv2d, for one spatial axis.

    Raises
    ------
    TypeError, ValueError
        As QuantizedConv2d.
    """

    spatial = 1
    kind = "Conv1d"


CONV_TYPES = (QuantizedConv2d, QuantizedConv1d)


def conv_class(spatial: int) -> type[QuantizedConv2d]:
    """The NumPy conv layer class of 1 or 2 spatial axes."""
    return QuantizedConv1d if spatial == 1 else QuantizedConv2d


__all__ = ["QuantizedConv2d", "QuantizedConv1d", "ACTIVATIONS", "resolve_padding"]

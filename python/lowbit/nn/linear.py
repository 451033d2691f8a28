"""The NumPy quantized linear layer (lowbit.nn.QuantizedLinear); its config (lowbit.quant.config)
says how a float weight becomes one."""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from .._core.checks import float_array, require_finite, scales, zero_points
from ..quant.config import Int8DynamicConfig, QuantConfig, check_config
from ..packed import FAMILY_SCHEMES, PackedWeight, pack_weight
from ..packed_ops import linear, linear_static
from ..qtensor import QTensor

SCHEMES = ("dynamic", "static", "weight_only")


class QuantizedLinear:
    """y = x @ W.T + b, float32 in and out. What the layer stores decides how it computes
    (`scheme`):

    - an 8-bit PackedWeight: "dynamic" (int8 activations per row, the fused `lowbit.linear`
      kernel) or, with input_scale/input_zero_point, "static" (activations quantized per tensor
      with those frozen parameters: `lowbit.packed_ops.linear_static`);
    - a 4-bit PackedWeight: "dynamic" (mode "w4a8") or "weight_only" (mode "weight_only");
    - an 8-bit PackedWeight of mode "weight_only" (or an int8 QTensor, per tensor or per output
      channel, which is packed so): "weight_only" (float32 activations against int8 weights).

    Usually made by `from_config` or `from_float` (or `lowbit.quantize_weights`).

    Parameters
    ----------
    weight
        A PackedWeight, or a 2-D int8/uint8 QTensor per tensor or per output channel (axis 0).
    bias
        None, or float32 of shape (out_features,) (copied).
    input_scale, input_zero_point
        Both or neither: the frozen activation scale (one value, finite and > 0) and zero
        point (one int8 or uint8 value; a Python int is uint8) of a static layer.

    Raises
    ------
    TypeError
        weight is neither a PackedWeight nor a QTensor; bias is not float32/float16 data; an
        input scale or zero point that is not numeric.
    ValueError
        A QTensor of another type or layout; only one of input_scale / input_zero_point, or
        either for a weight that is not an 8-bit dynamic one; an input scale or zero point
        that is not one value, not finite and > 0 or out of range; a bias of another shape
        or with NaN/Inf.
    """

    def __init__(self, weight: Union[PackedWeight, QTensor], bias: Optional[np.ndarray] = None,
                 *, input_scale: Any = None, input_zero_point: Any = None) -> None:
        self.input_scale: Optional[np.ndarray] = None
        self.input_zero_point: Optional[np.ndarray] = None
        if isinstance(weight, QTensor):
            if weight.dtype not in ("int8", "uint8") or weight.data.ndim != 2 \
                    or weight.group_size is not None or weight.axis not in (0, None):
                raise ValueError("a weight-only QuantizedLinear takes a 2-D int8/uint8 QTensor, "
                                 "per tensor or per output channel (axis=0)")
            weight = pack_weight(weight, bits=8, mode="weight_only")
            self.scheme = "weight_only"
        elif isinstance(weight, PackedWeight):
            self.scheme = FAMILY_SCHEMES[weight.family]
            if weight.family == "w8a8" and input_scale is not None:
                self.scheme = "static"   # the same kernels' static form (frozen input scale)
        else:
            raise TypeError(f"weight must be a PackedWeight or a QTensor, got "
                            f"{type(weight).__name__}")
        if (input_scale is None) != (input_zero_point is None):
            raise ValueError("give both input_scale and input_zero_point, or neither")
        if input_scale is not None:
            if self.scheme != "static":
                raise ValueError("input_scale/input_zero_point apply to 8-bit packed weights "
                                 "(static activation quantization) only")
            self.input_scale, self.input_zero_point = _input_qparams(input_scale,
                                                                     input_zero_point)
        self.weight = weight
        self.bias: Optional[np.ndarray] = None
        if bias is not None:
            b = np.array(float_array(bias, "bias"), dtype=np.float32, copy=True)
            require_finite(b, "bias")
            if b.shape != (self.out_features,):
                raise ValueError(f"bias must have shape ({self.out_features},), got {b.shape}")
            self.bias = b

    @classmethod
    def from_float(cls, weight: Any, bias: Any = None, *, symmetric: bool = True, bits: int = 8,
                   group_size: Optional[int] = None, mode: Optional[str] = None
                   ) -> "QuantizedLinear":
        """Quantizes a float32 (out_features, in_features) weight (and keeps a float32 bias);
        bits, group_size, symmetric and mode are those of `lowbit.pack_weight`.

        Parameters
        ----------
        weight
            The float32 (out_features, in_features) weight.
        bias
            None, or float32 (out_features,).
        symmetric, bits, group_size, mode
            As in `lowbit.pack_weight`.

        Returns
        -------
        QuantizedLinear

        Raises
        ------
        TypeError, ValueError
            As `lowbit.pack_weight`; a bias that is not float32 data (TypeError), of another
            shape or with NaN/Inf (ValueError).
        """
        b = None if bias is None else float_array(bias, "bias")
        return cls(pack_weight(weight, bits=bits, group_size=group_size, symmetric=symmetric,
                               mode=mode), b)

    @classmethod
    def from_config(cls, weight: Any, bias: Any = None, config: Optional[QuantConfig] = None,
                    *, input_qparams: Optional[tuple[Any, Any]] = None) -> "QuantizedLinear":
        """Quantizes a float32 (out_features, in_features) weight as `config` says (default
        Int8DynamicConfig). A 4-bit group size larger than in_features becomes in_features;
        shapes the kernels cannot take raise ValueError (lowbit.quant.plan.UnsupportedLayer).

        Int8StaticConfig needs the activation parameters: `input_qparams=(scale, zero_point)`,
        or a config whose `observer` has already observed calibration data.

        Parameters
        ----------
        weight
            A float32 (out_features, in_features) NumPy array.
        bias
            None, or float32 (out_features,).
        config
            A lowbit config (None: Int8DynamicConfig()).
        input_qparams
            (scale, zero_point) of the activations: Int8StaticConfig only.

        Returns
        -------
        QuantizedLinear

        Raises
        ------
        TypeError
            config is not a lowbit config; weight or bias is not float32.
        ValueError
            weight is not a 2-D NumPy array; a shape the config's kernels cannot take
            (lowbit.quant.plan.UnsupportedLayer, a ValueError); NaN/Inf in weight or bias;
            Int8StaticConfig without input_qparams and with an observer that saw no data;
            input_qparams for another config, or bad ones (see the class).
        """
        cfg = check_config(Int8DynamicConfig() if config is None else config)
        if not isinstance(weight, np.ndarray) or weight.ndim != 2:
            raise ValueError("weight must be a 2-D NumPy array (out_features, in_features)")
        w = float_array(weight, "weight")
        plan = cfg.plan(w.shape[0], w.shape[1])
        b = None if bias is None else float_array(bias, "bias")
        if cfg.calibrated and input_qparams is None:
            if not cfg.observer.observed:
                raise ValueError("Int8StaticConfig needs calibrated activation parameters: "
                                 "pass input_qparams=(scale, zero_point) or a config whose "
                                 "observer has observed data")
            input_qparams = cfg.observer.calculate_qparams()
        return cls.from_quantized(cfg.quantize_weight(w, plan), b, cfg,
                                  input_qparams=input_qparams)

    @classmethod
    def from_quantized(cls, weight: QTensor, bias: Any, config: QuantConfig, *,
                       input_qparams: Optional[tuple[Any, Any]] = None) -> "QuantizedLinear":
        """The layer `config` builds around an already quantized weight: `config.quantize_weight`'s
        (from_config) or the values a QAT layer learned to round to (lowbit.torch.convert).
        input_qparams=(scale, zero_point): required for Int8StaticConfig, refused otherwise.

        Parameters
        ----------
        weight
            The quantized (out_features, in_features) weight, in the layout the config's
            `quantize_weight` gives.
        bias
            None, or float32 (out_features,).
        config
            A lowbit config.
        input_qparams
            (scale, zero_point) of the activations, for Int8StaticConfig.

        Returns
        -------
        QuantizedLinear

        Raises
        ------
        TypeError
            config is not a lowbit config; bias is not float32.
        ValueError
            input_qparams missing for Int8StaticConfig or given for another config; a weight
            the config cannot pack (see `lowbit.pack_weight`); bad input_qparams or bias (see
            the class).
        """
        cfg = check_config(config)
        b = None if bias is None else float_array(bias, "bias")
        if cfg.calibrated != (input_qparams is not None):
            raise ValueError(f"input_qparams=(scale, zero_point) are required for "
                             f"{type(cfg).__name__}" if cfg.calibrated else
                             "input_qparams=(scale, zero_point) apply to calibrated (static) "
                             "configs only")
        if input_qparams is not None:
            return cls(cfg.pack(weight), b, input_scale=input_qparams[0],
                       input_zero_point=input_qparams[1])
        return cls(cfg.pack(weight), b)

    @property
    def bits(self) -> int:
        return self.weight.bits

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def weight_nbytes(self) -> int:
        """Bytes the layer holds for its weight (packed data + scales and zero points)."""
        return int(self.weight.nbytes)

    @property
    def nbytes(self) -> int:
        return self.weight_nbytes + (0 if self.bias is None else int(self.bias.nbytes))

    def dequantized_weight(self) -> np.ndarray:
        """The float32 weight the layer computes with (`PackedWeight.dequantize`).

        Returns
        -------
        numpy.ndarray
            float32 (out_features, in_features).

        Raises
        ------
        None
            The packed weight was checked when the layer was made.
        """
        return self.weight.dequantize()

    def compute(self, x: Any, bias: Optional[np.ndarray]) -> np.ndarray:
        """The layer's computation with an explicit bias (the PyTorch wrapper passes its own
        buffer, which a user may have replaced).

        Parameters
        ----------
        x
            float32 (or float16) input of shape (..., in_features).
        bias
            None, or float32 (out_features,), used instead of the layer's own.

        Returns
        -------
        numpy.ndarray
            float32 (..., out_features).

        Raises
        ------
        TypeError
            x or bias is not float32/float16 data.
        ValueError
            x's last axis is not in_features; a bias of another shape; NaN/Inf in x or bias.
        """
        assert isinstance(self.weight, PackedWeight)
        if self.scheme == "static":
            assert self.input_scale is not None and self.input_zero_point is not None
            return linear_static(x, self.weight, self.input_scale, self.input_zero_point, bias)
        return linear(x, self.weight, bias)

    def __call__(self, x: Any) -> np.ndarray:
        """y = x @ W.T + b, as the layer's scheme computes it.

        Parameters
        ----------
        x
            float32 (or float16) input of shape (..., in_features).

        Returns
        -------
        numpy.ndarray
            float32 (..., out_features).

        Raises
        ------
        TypeError, ValueError
            As `compute`.
        """
        return self.compute(x, self.bias)

    def __repr__(self) -> str:
        w = self.weight
        extra = (f", bits=4, group_size={w.group_size}, mode={w.mode!r}"
                 if isinstance(w, PackedWeight) and w.bits == 4 else f", scheme={self.scheme!r}")
        return (f"QuantizedLinear(in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}{extra})")


def _input_qparams(scale: Any, zero_point: Any) -> tuple[np.ndarray, np.ndarray]:
    s = scales(scale, "input_scale")
    if s.size != 1:
        raise ValueError("input_scale must be a single value (static activations are per tensor)")
    zp = np.asarray(zero_point)
    dtype = zp.dtype if zp.dtype in (np.int8, np.uint8) else np.dtype(np.uint8)
    info = np.iinfo(dtype)
    z = zero_points(zp, info.min, info.max, "input_zero_point")
    if z.size != 1:
        raise ValueError("input_zero_point must be a single value")
    return s.reshape(()).copy(), z.reshape(()).astype(dtype)


__all__ = ["QuantizedLinear", "SCHEMES"]

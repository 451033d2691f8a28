"""NumPy drop-in layers."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._checks import float_array
from .ops import linear
from .packed import PackedWeight, pack_weight


class QuantizedLinear:
    """y = x @ W.T + b in one kernel call (float32 in, float32 out), with an int8 per-channel
    weight and int8 dynamic per-row activations, or a 4-bit per-group weight (bits=4) computed
    as "w4a8" (int8 dynamic activations) or "weight_only" (float32 activations)."""

    def __init__(self, weight: PackedWeight, bias: Optional[np.ndarray] = None) -> None:
        self.weight = weight
        self.bias = None if bias is None else np.array(bias, dtype=np.float32, copy=True)
        if self.bias is not None and self.bias.shape != (weight.out_features,):
            raise ValueError(f"bias must have shape ({weight.out_features},), got {self.bias.shape}")

    @classmethod
    def from_float(cls, weight: Any, bias: Any = None, *, symmetric: bool = True, bits: int = 8,
                   group_size: Optional[int] = None, mode: Optional[str] = None
                   ) -> "QuantizedLinear":
        """Quantizes a float32 (out_features, in_features) weight (and keeps a float32 bias);
        bits, group_size, symmetric and mode are those of `lowbit.pack_weight`."""
        b = None if bias is None else float_array(bias, "bias")
        return cls(pack_weight(weight, bits=bits, group_size=group_size, symmetric=symmetric,
                               mode=mode), b)

    @property
    def bits(self) -> int:
        return self.weight.bits

    @property
    def in_features(self) -> int:
        return self.weight.in_features

    @property
    def out_features(self) -> int:
        return self.weight.out_features

    @property
    def weight_nbytes(self) -> int:
        """Bytes the layer holds for its weight (packed data + scales and zero points)."""
        return self.weight.nbytes

    def dequantized_weight(self) -> np.ndarray:
        return self.weight.dequantize()

    def __call__(self, x: Any) -> np.ndarray:
        return linear(x, self.weight, self.bias)

    def __repr__(self) -> str:
        extra = (f", bits=4, group_size={self.weight.group_size}, mode={self.weight.mode!r}"
                 if self.weight.bits == 4 else "")
        return (f"QuantizedLinear(in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}{extra})")

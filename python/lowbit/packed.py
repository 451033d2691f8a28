"""PackedWeight: a weight quantized and packed once for the GEMM kernels."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from . import _C

if TYPE_CHECKING:
    from .qtensor import QTensor


class PackedWeight:
    """An (out_features, in_features) weight as int8 per output channel, packed once into the
    kernels' panel layout (the same layout on every ISA path, so a PackedWeight works under any
    `use_isa`). Holds only the packed bytes, the column sums that fold zero points into the
    epilogue, and the per-channel scales; `qtensor()` rebuilds the canonical int8 weight."""

    def __init__(self, packed: Any, scale: np.ndarray, zero_point: np.ndarray, dtype: str) -> None:
        self._packed = packed
        self.scale = scale
        self.scale.setflags(write=False)
        self.zero_point = zero_point
        self.zero_point.setflags(write=False)
        self.dtype = dtype
        self.bits = 8
        self.in_features = int(packed.rows)
        self.out_features = int(packed.cols)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def symmetric(self) -> bool:
        return bool(self._packed.symmetric)

    @property
    def nbytes(self) -> int:
        """Bytes held: packed panels (padded to the kernel tile) + column data + scales."""
        return int(self._packed.nbytes) + self.scale.nbytes

    def qtensor(self) -> "QTensor":
        from .qtensor import QTensor
        data = self._packed.unpack(True)
        return QTensor(data, self.scale.copy(), self.zero_point.copy(), self.dtype, 0, None)

    def dequantize(self) -> np.ndarray:
        return self.qtensor().dequantize()

    def __repr__(self) -> str:
        return (f"PackedWeight(out_features={self.out_features}, in_features={self.in_features}, "
                f"bits=8, dtype={self.dtype}, symmetric={self.symmetric})")


def pack_weight(w: Any, bits: int = 8, group_size: Optional[int] = None,
                symmetric: bool = True) -> PackedWeight:
    """Quantizes (if float) and packs an (out_features, in_features) weight.

    A float32 weight is quantized per output channel to int8 (symmetric by default: zero point 0,
    values in [-127, 127]; symmetric=False gives a zero point per channel). A QTensor must be
    int8/uint8, per tensor or per channel along axis 0.
    """
    from .qtensor import QTensor, quantize
    if bits != 8:
        raise ValueError(f"bits={bits} is not supported yet; pack_weight packs 8-bit weights")
    if group_size is not None:
        raise ValueError("group_size applies to 4-bit weights; 8-bit weights are per channel")
    if isinstance(w, QTensor):
        qt = w
        if qt.dtype not in ("int8", "uint8"):
            raise ValueError(f"pack_weight takes an int8/uint8 QTensor, got {qt.dtype}")
        if qt.group_size is not None or qt.axis not in (None, 0):
            raise ValueError("pack_weight takes a per-tensor or per-output-channel (axis=0) QTensor")
    else:
        if not isinstance(w, np.ndarray):
            raise TypeError(f"weight must be a NumPy float32 array or a QTensor, got {type(w).__name__}")
        if w.ndim != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {w.shape}")
        qt = quantize(w, "int8", symmetric=symmetric, axis=0)
    if qt.data.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {qt.data.shape}")
    n = qt.data.shape[0]
    scale = np.ascontiguousarray(np.broadcast_to(qt.scale, (n,)), dtype=np.float32)
    zero = np.ascontiguousarray(np.broadcast_to(qt.zero_point, (n,)))
    data = np.ascontiguousarray(qt.data)
    packed = _C.pack_matrix(data, True, zero.astype(np.int32))
    return PackedWeight(packed, scale, zero.copy(), qt.dtype)

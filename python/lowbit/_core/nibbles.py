"""Two 4-bit values per byte, the element with the even index in the low nibble (the order the
design fixes for int4 and the one ONNX uses), for files and embedding tables."""
from __future__ import annotations

import numpy as np


def pack_nibbles(u: np.ndarray) -> np.ndarray:
    """u: uint8 values in [0, 15], even last dimension -> uint8 with half the last dimension."""
    if u.shape[-1] % 2:
        raise ValueError(f"nibble packing needs an even last dimension, got {u.shape}")
    u = u.astype(np.uint8, copy=False)
    return np.ascontiguousarray(u[..., 0::2] | (u[..., 1::2] << np.uint8(4)))


def unpack_nibbles(b: np.ndarray) -> np.ndarray:
    """Inverse of pack_nibbles: uint8 (..., n) -> uint8 (..., 2n) values in [0, 15]."""
    out = np.empty(b.shape[:-1] + (2 * b.shape[-1],), np.uint8)
    out[..., 0::2] = b & np.uint8(0x0F)
    out[..., 1::2] = b >> np.uint8(4)
    return out

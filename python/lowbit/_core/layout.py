"""Maps ONNX scale shapes (per-tensor, per-axis, blocked) onto the (outer, axis, inner) view the
kernels walk."""
from __future__ import annotations

import math
from typing import NamedTuple

from . import _C
from .checks import normalize_axis

PER_TENSOR, PER_AXIS, BLOCKED = _C.ScaleMode.per_tensor, _C.ScaleMode.per_axis, _C.ScaleMode.blocked


class Layout(NamedTuple):
    outer: int
    axis: int
    inner: int
    mode: _C.ScaleMode
    block: int


def scale_layout(shape: tuple[int, ...], scale_shape: tuple[int, ...], axis: int,
                 block_size: int) -> Layout:
    """Validates the scale's shape against the data's and returns the kernel layout."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 0:
        raise ValueError(f"block_size must be a non-negative int, got {block_size!r}")
    size = math.prod(shape)
    if block_size == 0 and (len(scale_shape) == 0 or scale_shape == (1,) and len(shape) == 0):
        return Layout(1, size, 1, PER_TENSOR, 0)
    if len(shape) == 0:
        raise ValueError("a 0-d input takes a scalar scale")
    ax = normalize_axis(axis, len(shape))
    outer, dim, inner = math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])
    if block_size == 0:
        if len(scale_shape) != 1 or scale_shape[0] != dim:
            raise ValueError(f"per-axis scale must be 1-D with {dim} values (x.shape[{ax}]), "
                             f"got shape {scale_shape}")
        return Layout(outer, dim, inner, PER_AXIS, 0)
    blocks = -(-dim // block_size)
    expected = shape[:ax] + (blocks,) + shape[ax + 1:]
    if tuple(scale_shape) != expected:
        raise ValueError(f"blocked scale must have shape {expected} (ceil({dim}/{block_size}) "
                         f"blocks along axis {ax}), got {scale_shape}")
    # A block longer than the axis is one block: pass the axis length, so any Python int works
    # (a block_size beyond int64 would not even reach the kernels).
    return Layout(outer, dim, inner, BLOCKED, min(block_size, max(dim, 1)))

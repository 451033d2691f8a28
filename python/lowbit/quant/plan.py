"""Which linear shapes a config can convert, and the group size it ends up with. Shared by the
NumPy conversion and the PyTorch one, so both skip (or refuse) the same layers for the same
reasons."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .._core import _C
from .._core.checks import group_for_axis
from .config import QuantConfig


class UnsupportedLayer(ValueError):
    """A layer this config cannot quantize; the message says why."""


@dataclass(frozen=True)
class LayerPlan:
    group_size: Optional[int]   # the 4-bit group size actually used (None for 8-bit)
    note: str = ""              # set when the config's request had to be adjusted


def plan_linear(config: QuantConfig, out_features: int, in_features: int) -> LayerPlan:
    """Raises UnsupportedLayer for shapes the config's kernels cannot take."""
    if out_features == 0 or in_features == 0:
        raise UnsupportedLayer(f"empty weight ({out_features} x {in_features})")
    if config.bits == 8:
        if config.scheme == "weight_only":
            return LayerPlan(None)
        limit = (_C.LINEAR_MAX_DEPTH if config.symmetric else _C.LINEAR_MAX_DEPTH_ASYMMETRIC)
        if in_features > limit:
            raise UnsupportedLayer(
                f"in_features={in_features} exceeds the exact int32 depth limit {limit} of the "
                f"int8 kernels ({'symmetric' if config.symmetric else 'asymmetric'} weights)")
        return LayerPlan(None)
    if in_features % 2:
        raise UnsupportedLayer(f"in_features={in_features} is odd; 4-bit weights store two "
                               "values per byte and need an even in_features")
    g = config.group_size
    assert g is not None
    used = group_for_axis(g, in_features)
    if used != g:
        return LayerPlan(used, f"group_size {g} > in_features {in_features}: "
                               f"one group of {in_features} per row")
    return LayerPlan(g)

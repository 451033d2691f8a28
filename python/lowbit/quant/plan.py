"""The answer of a config's `plan` (lowbit.quant.config): which linear shapes a config can
convert, and the group size it ends up with. The NumPy conversion and the PyTorch one both ask
the config, so both skip (or refuse) the same layers for the same reasons."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


class UnsupportedLayer(ValueError):
    """A layer this config cannot quantize; the message says why."""


@dataclass(frozen=True)
class LayerPlan:
    group_size: Optional[int]   # the 4-bit group size actually used (None for 8-bit)
    note: str = ""              # set when the config's request had to be adjusted

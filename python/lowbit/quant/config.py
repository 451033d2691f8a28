"""Quantization configs: what a converted linear layer stores and how it computes.

Plain dataclasses with no PyTorch dependency, shared by the NumPy layers
(`lowbit.nn.QuantizedLinear.from_config`, `lowbit.quantize_weights`) and the PyTorch conversion
(`lowbit.torch.quantize_`, `prepare`, `prepare_qat`). docs/conversion.md has the arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import fnmatch
from collections.abc import Mapping
from typing import ClassVar, Optional, Union

from .._core import _C
from .._core.checks import check_bool
from .observers import MinMaxObserver, Observer


def _check_group_size(group_size: int) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int, got {type(group_size).__name__}")
    if group_size <= 0 or group_size % 2:
        raise ValueError(f"group_size must be a positive even number, got {group_size}")
    if group_size > _C.INT4_MAX_GROUP_SIZE:
        raise ValueError(f"group_size must be at most {_C.INT4_MAX_GROUP_SIZE}, got {group_size}")


def _check_bool(value: object, name: str) -> None:
    check_bool(value, name)


def _clip_note(clip_search: bool) -> str:
    return ", MSE clip search" if clip_search else ""


@dataclass(frozen=True)
class Int8DynamicConfig:
    """int8 weights per output channel, activations quantized per row at run time (uint8,
    DynamicQuantizeLinear per row) inside the fused `lowbit.linear` kernel.

    clip_search=True (this and the other non-static configs) picks each weight channel's (or
    4-bit group's) range by least squared quantization error over clipping ratios instead of
    the full max|w| range (`lowbit.quantize(..., clip_search=True)`)."""

    symmetric: bool = True
    clip_search: bool = False

    bits: ClassVar[int] = 8
    scheme: ClassVar[str] = "dynamic"
    mode: ClassVar[Optional[str]] = None
    group_size: ClassVar[Optional[int]] = None

    def __post_init__(self) -> None:
        _check_bool(self.symmetric, "symmetric")
        _check_bool(self.clip_search, "clip_search")

    def describe(self) -> str:
        return ("int8 dynamic (int8 weights per channel, uint8 activations per row"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True)
class Int8WeightOnlyConfig:
    """int8 weights per output channel, float32 activations: the layer keeps the packed int8
    weight (4x smaller than float32) and its kernel FMAs float32 activations against weights
    converted to float32 in registers, k in order, then scales each channel (no activation
    rounding: the float product with the dequantized weight, up to float32 summation order).
    Fastest where the weight's bytes dominate (small batches); a large batch runs at float32
    GEMM speed."""

    symmetric: bool = True
    clip_search: bool = False

    bits: ClassVar[int] = 8
    scheme: ClassVar[str] = "weight_only"
    mode: ClassVar[Optional[str]] = None
    group_size: ClassVar[Optional[int]] = None

    def __post_init__(self) -> None:
        _check_bool(self.symmetric, "symmetric")
        _check_bool(self.clip_search, "clip_search")

    def describe(self) -> str:
        return ("int8 weight-only (int8 weights per channel, float32 activations"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True)
class Int4WeightOnlyConfig:
    """4-bit weights per group of `group_size` input features, float32 activations:
    `pack_weight(bits=4, mode="weight_only")` (nibbles dequantized in registers)."""

    group_size: int = 128
    symmetric: bool = True
    clip_search: bool = False

    bits: ClassVar[int] = 4
    scheme: ClassVar[str] = "weight_only"
    mode: ClassVar[Optional[str]] = "weight_only"

    def __post_init__(self) -> None:
        _check_group_size(self.group_size)
        _check_bool(self.symmetric, "symmetric")
        _check_bool(self.clip_search, "clip_search")

    def describe(self) -> str:
        kind = "int4" if self.symmetric else "uint4 asymmetric"
        return (f"{kind} weight-only (groups of {self.group_size}, float32 activations"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True)
class Int4DynamicConfig:
    """W4A8: 4-bit weights per group, activations quantized to int8 per row (symmetric) at run
    time: `pack_weight(bits=4, mode="w4a8")`."""

    group_size: int = 128
    symmetric: bool = True
    clip_search: bool = False

    bits: ClassVar[int] = 4
    scheme: ClassVar[str] = "dynamic"
    mode: ClassVar[Optional[str]] = "w4a8"

    def __post_init__(self) -> None:
        _check_group_size(self.group_size)
        _check_bool(self.symmetric, "symmetric")
        _check_bool(self.clip_search, "clip_search")

    def describe(self) -> str:
        kind = "int4" if self.symmetric else "uint4 asymmetric"
        return (f"{kind} W4A8 (groups of {self.group_size}, int8 activations per row"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True, eq=False)
class Int8StaticConfig:
    """int8 weights per output channel; activations quantized per tensor with a scale and zero
    point frozen after calibration (`prepare` -> run data -> `convert`).

    `observer` is a template: every layer gets a fresh `observer.clone()`; it must be per tensor
    (axis=None) and produce 8-bit parameters (uint8 asymmetric by default). `weight_observer`
    (per channel along axis 0, int8/uint8) picks the weight ranges; None uses
    `pack_weight`'s max|w| / 127 per channel (symmetric) or the full range (symmetric=False)."""

    observer: Observer = field(default_factory=MinMaxObserver)
    weight_observer: Optional[Observer] = None
    symmetric: bool = True

    bits: ClassVar[int] = 8
    scheme: ClassVar[str] = "static"
    mode: ClassVar[Optional[str]] = None
    group_size: ClassVar[Optional[int]] = None

    def __post_init__(self) -> None:
        _check_bool(self.symmetric, "symmetric")
        if not isinstance(self.observer, Observer):
            raise TypeError("observer must be a lowbit.observers.Observer instance (a template "
                            f"cloned per layer), got {type(self.observer).__name__}")
        if self.observer.axis is not None:
            raise ValueError("the activation observer must be per tensor (axis=None): a static "
                             "int8 GEMM takes one activation scale and zero point")
        if self.observer.dtype not in ("uint8", "int8"):
            raise ValueError(f"the activation observer must produce uint8 or int8 parameters, "
                             f"got {self.observer.dtype}")
        wo = self.weight_observer
        if wo is not None:
            if not isinstance(wo, Observer):
                raise TypeError("weight_observer must be an Observer or None")
            if wo.axis not in (0, None) or wo.dtype not in ("int8", "uint8"):
                raise ValueError("weight_observer must be per output channel (axis=0) or per "
                                 "tensor, with dtype int8 or uint8")

    def describe(self) -> str:
        return (f"int8 static (int8 weights per channel, {self.observer.dtype} activations per "
                f"tensor, {type(self.observer).__name__})")


QuantConfig = Union[Int8DynamicConfig, Int8WeightOnlyConfig, Int4WeightOnlyConfig,
                    Int4DynamicConfig, Int8StaticConfig]
CONFIG_TYPES = (Int8DynamicConfig, Int8WeightOnlyConfig, Int4WeightOnlyConfig, Int4DynamicConfig,
                Int8StaticConfig)


def check_config(config: object, name: str = "config") -> QuantConfig:
    if not isinstance(config, CONFIG_TYPES):
        raise TypeError(f"{name} must be one of {', '.join(t.__name__ for t in CONFIG_TYPES)}; "
                        f"got {type(config).__name__}")
    return config


# A config for every layer, or a dict of fnmatch patterns (layer names) -> config (None: keep
# the layer float), the first matching pattern winning: what the conversions take.
ConfigSpec = Union[QuantConfig, Mapping[str, Optional[QuantConfig]]]


def config_for(name: str, spec: ConfigSpec) -> tuple[Optional[QuantConfig], str]:
    """The config a layer gets: `spec` itself, or, for a dict of fnmatch patterns, the value of
    the first pattern (in the dict's order) that matches the name (None: keep float). The
    second value is the reason when there is no config."""
    if not isinstance(spec, Mapping):
        return check_config(spec), ""
    for pattern, cfg in spec.items():
        if fnmatch.fnmatchcase(name, pattern):
            if cfg is None:
                return None, f"pattern {pattern!r} maps it to None (kept float)"
            return check_config(cfg, f"config for pattern {pattern!r}"), ""
    return None, "no pattern matched"

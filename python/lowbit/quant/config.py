"""Quantization configs: what a converted linear layer stores and how it computes.

Each config is a frozen dataclass derived from `QuantConfig` and owns its behaviour (as
torchao's configs do): which shapes it takes (`plan`), how it quantizes a float weight
(`weight_format`, `quantize_weight`), how it packs the quantized weight for its kernels
(`pack`), whether its layer needs calibrated activation parameters (`calibrated`), and its
`describe()` line. Code outside the configs asks them instead of switching on bits, scheme or
mode strings, so a new format is one new config class plus its kernels. Shared by the NumPy
layers (`lowbit.nn.QuantizedLinear.from_config`, `lowbit.quantize_weights`) and the PyTorch
conversion (`lowbit.torch.quantize_`, `prepare`, `prepare_qat`); no PyTorch dependency.
docs/conversion.md has the arithmetic.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Optional, Union

import numpy as np

from .._core import _C
from .._core.checks import check_bool, group_for_axis
from .._core.halfs import round_to_half
from ..ops import quantize_linear
from ..packed import PackedWeight, pack_weight
from ..qtensor import QTensor, quantize
from .observers import MinMaxObserver, Observer
from .plan import LayerPlan, UnsupportedLayer


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


class QuantConfig:
    """Base of lowbit's quantization configs (a config says how one linear layer is quantized
    and computed). Subclasses are frozen dataclasses that set the class attributes and may
    override the methods; the defaults here are the 8-bit per-channel ones.

    Class attributes: `bits` (of the weight), `scheme` ("dynamic", "weight_only", "static"),
    `mode` (the PackedWeight mode its kernels run), `calibrated` (True: the layer needs frozen
    activation parameters, from an observer or given), `format_version` (of the config's own
    fields, for files that record them).

    Raises
    ------
    None
        The base takes no arguments; each config checks its own fields when it is made.
    """

    bits: ClassVar[int] = 8
    scheme: ClassVar[str] = "dynamic"
    mode: ClassVar[Optional[str]] = None
    calibrated: ClassVar[bool] = False
    # How the kernels quantize activations: "float" (not at all: weight-only), "rows_uint8"
    # (DynamicQuantizeLinear per row), "rows_int8_symmetric" (int8 per row, zero point 0) or
    # "static" (a frozen per-tensor scale and zero point from calibration). QAT simulates it.
    activation: ClassVar[str] = "rows_uint8"
    format_version: ClassVar[int] = 1
    clip_search: ClassVar[bool] = False   # a field of the configs that offer the search
    # The config's name where a name must stand for it (a Hugging Face quantization_config's
    # "format"): CONFIGS_BY_NAME below is built from these.
    name: ClassVar[str] = ""
    # every config has a `symmetric` field

    def __post_init__(self) -> None:
        """The checks every config shares (its dataclass __init__ runs them): bool flags."""
        _check_bool(self.symmetric, "symmetric")  # type: ignore[attr-defined]
        if "clip_search" in getattr(self, "__dataclass_fields__", {}):
            _check_bool(self.clip_search, "clip_search")

    def describe(self) -> str:  # pragma: no cover - every config overrides it
        """One line saying what the config does, for conversion summaries and reports.

        Returns
        -------
        str

        Raises
        ------
        NotImplementedError
            On the base class; every config overrides it.
        """
        raise NotImplementedError

    def plan(self, out_features: int, in_features: int) -> LayerPlan:
        """Which shapes the config's kernels take: raises UnsupportedLayer (with the reason)
        for one they cannot; the LayerPlan says the group size actually used.

        Parameters
        ----------
        out_features, in_features
            The linear layer's weight shape.

        Returns
        -------
        LayerPlan
            8-bit: group_size None.

        Raises
        ------
        UnsupportedLayer
            (a ValueError) An empty weight, or in_features past the exact int32 depth limit
            of the int8 kernels (lower for asymmetric weights).
        """
        if out_features == 0 or in_features == 0:
            raise UnsupportedLayer(f"empty weight ({out_features} x {in_features})")
        limit = (_C.LINEAR_MAX_DEPTH if self.symmetric else _C.LINEAR_MAX_DEPTH_ASYMMETRIC)
        if in_features > limit:
            raise UnsupportedLayer(
                f"in_features={in_features} exceeds the exact int32 depth limit {limit} of the "
                f"int8 kernels ({'symmetric' if self.symmetric else 'asymmetric'} weights)")
        return LayerPlan(None)

    def weight_format(self) -> tuple[str, bool]:
        """The quantized type of the config's weights and whether they are symmetric.

        Returns
        -------
        tuple of (str, bool)
            ("int8", symmetric) for the 8-bit configs.

        Raises
        ------
        None
            It reads the config's fields.
        """
        return "int8", self.symmetric

    def quantize_weight(self, w: np.ndarray, plan: LayerPlan) -> QTensor:
        """The quantized weight post-training quantization stores, from a float32
        (out_features, in_features) weight: the one rule every conversion uses
        (QuantizedLinear.from_config, and QAT's FakeQuantLinear, whose forward rounds to these
        values and whose convert packs them), so PTQ and QAT cannot drift apart. 8-bit: per
        output channel (max|w| / 127, or the full range with a zero point).

        Parameters
        ----------
        w
            The float32 (out_features, in_features) weight.
        plan
            What `plan` returned for w's shape (its group size, for 4-bit configs).

        Returns
        -------
        QTensor
            The quantized weight, in the layout `pack` takes.

        Raises
        ------
        TypeError
            w is not float32.
        ValueError
            NaN/Inf in w.
        """
        dtype, symmetric = self.weight_format()
        return quantize(w, dtype, symmetric=symmetric, axis=0, clip_search=self.clip_search)

    # How the convolution kernels quantize a conv layer's input under this config
    # (lowbit.nn.QuantizedConv2d): "images_uint8" (per image, DynamicQuantizeLinear's rule over
    # the whole image), "static" (the calibrated per-tensor scale and zero point), or None (the
    # config has no convolution kernel: conv_plan refuses).
    conv_activation: ClassVar[Optional[str]] = "images_uint8"

    def conv_plan(self, out_channels: int, fan_in: int) -> LayerPlan:
        """Which convolutions the config's kernels take (fan_in = in_channels / groups *
        kernel elements, the depth of each output's exact int32 sum): raises UnsupportedLayer
        with the reason for one they cannot.

        Parameters
        ----------
        out_channels, fan_in
            The convolution weight's output channels and the size of one output channel's
            filter.

        Returns
        -------
        LayerPlan
            group_size None (convolution weights are per output channel).

        Raises
        ------
        UnsupportedLayer
            (a ValueError) An empty weight, a fan_in past the exact int32 depth limit of the
            int8 kernels (lower for asymmetric weights), or a config without convolution
            kernels.
        """
        if self.conv_activation is None:
            raise UnsupportedLayer(f"{type(self).__name__} has no convolution kernel: "
                                   "convolutions run with int8 activations (use "
                                   "Int8DynamicConfig, Int4DynamicConfig or Int8StaticConfig)")
        if out_channels == 0 or fan_in == 0:
            raise UnsupportedLayer(f"empty weight ({out_channels} x {fan_in})")
        symmetric = self.weight_format()[1]
        limit = (_C.LINEAR_MAX_DEPTH if symmetric else _C.LINEAR_MAX_DEPTH_ASYMMETRIC)
        if fan_in > limit:
            raise UnsupportedLayer(
                f"the filter size (in_channels / groups x kernel elements = {fan_in}) exceeds "
                f"the exact int32 depth limit {limit} of the int8 kernels "
                f"({'symmetric' if symmetric else 'asymmetric'} weights)")
        return LayerPlan(None)

    def describe_conv(self) -> str:
        """One line saying what the config does to a convolution, e.g. "int8 conv (int8
        weights per output channel, uint8 activations per image)".

        Returns
        -------
        str

        Raises
        ------
        None
            It reads the config's fields.
        """
        dtype, symmetric = self.weight_format()
        if self.conv_activation == "static":
            act = f"{self.observer.dtype} activations per tensor"  # type: ignore[attr-defined]
        else:
            act = "uint8 activations per image"
        kind = "" if symmetric else " asymmetric"
        return f"{dtype} conv ({dtype}{kind} weights per output channel, {act})"

    def quantize_conv_weight(self, w: np.ndarray, plan: LayerPlan) -> QTensor:
        """The quantized convolution weight PTQ stores (and QAT rounds to), from the float32
        weight flattened to (out_channels, fan_in): per output channel along axis 0. 8-bit
        configs: their linear rule (`quantize_weight`), which is per output channel.

        Parameters
        ----------
        w
            float32 (out_channels, fan_in).
        plan
            What `conv_plan` returned.

        Returns
        -------
        QTensor
            Per output channel (axis 0) or, with a static config's per-tensor weight
            observer, per tensor.

        Raises
        ------
        TypeError
            w is not float32.
        ValueError
            NaN/Inf in w.
        """
        return self.quantize_weight(w, plan)

    def pack(self, weight: QTensor) -> PackedWeight:
        """The quantized weight packed for the config's kernels.

        Parameters
        ----------
        weight
            A QTensor as `quantize_weight` makes it (or as QAT learned it).

        Returns
        -------
        PackedWeight
            Of the config's bits and mode.

        Raises
        ------
        ValueError
            A QTensor of another bit width or layout, or with scales that are not finite and
            > 0 (see `lowbit.pack_weight`).
        """
        return pack_weight(weight, bits=self.bits, mode=self.mode)


class _FloatActivationPlan:
    """The shapes of the float-activation kernels (w8f32, wf16f32, wbf16f32): any non-empty
    weight, float32 accumulation having no int32 depth limit."""

    def plan(self, out_features: int, in_features: int) -> LayerPlan:
        """Any non-empty shape: float32 accumulation has no depth limit.

        Parameters
        ----------
        out_features, in_features
            The linear layer's weight shape.

        Returns
        -------
        LayerPlan
            group_size None.

        Raises
        ------
        UnsupportedLayer
            (a ValueError) An empty weight.
        """
        if out_features == 0 or in_features == 0:
            raise UnsupportedLayer(f"empty weight ({out_features} x {in_features})")
        return LayerPlan(None)


class _Int4Config(QuantConfig):
    """4-bit weights per group of `group_size` input features (max|w| / 7, or the full range
    with a zero point per group)."""

    bits: ClassVar[int] = 4
    # every 4-bit config has a `group_size` field

    def __post_init__(self) -> None:
        _check_group_size(self.group_size)  # type: ignore[attr-defined]
        super().__post_init__()

    def plan(self, out_features: int, in_features: int) -> LayerPlan:
        """The 4-bit kernels take any non-empty weight with an even in_features; a group_size
        larger than in_features becomes in_features (one group per row, noted in the plan).

        Parameters
        ----------
        out_features, in_features
            The linear layer's weight shape.

        Returns
        -------
        LayerPlan
            The group size actually used, with a note when it differs from the config's.

        Raises
        ------
        UnsupportedLayer
            (a ValueError) An empty weight, or an odd in_features.
        """
        if out_features == 0 or in_features == 0:
            raise UnsupportedLayer(f"empty weight ({out_features} x {in_features})")
        if in_features % 2:
            raise UnsupportedLayer(f"in_features={in_features} is odd; 4-bit weights store two "
                                   "values per byte and need an even in_features")
        used = group_for_axis(self.group_size, in_features)
        if used != self.group_size:
            return LayerPlan(used, f"group_size {self.group_size} > in_features {in_features}: "
                                   f"one group of {in_features} per row")
        return LayerPlan(self.group_size)

    def weight_format(self) -> tuple[str, bool]:
        """The quantized type of the config's weights and whether they are symmetric.

        Returns
        -------
        tuple of (str, bool)
            ("int4", True) or ("uint4", False).

        Raises
        ------
        None
            It reads the config's fields.
        """
        return ("int4" if self.symmetric else "uint4"), self.symmetric

    def quantize_weight(self, w: np.ndarray, plan: LayerPlan) -> QTensor:
        """The 4-bit weight post-training quantization stores (and QAT rounds to): per group
        of plan.group_size input features along axis 1.

        Parameters
        ----------
        w
            The float32 (out_features, in_features) weight.
        plan
            What `plan` returned for w's shape.

        Returns
        -------
        QTensor
            int4 (symmetric) or uint4 values, grouped along axis 1.

        Raises
        ------
        TypeError
            w is not float32.
        ValueError
            NaN/Inf in w.
        """
        dtype, symmetric = self.weight_format()
        return quantize(w, dtype, symmetric=symmetric, axis=1, group_size=plan.group_size,
                        clip_search=self.clip_search)

    def quantize_conv_weight(self, w: np.ndarray, plan: LayerPlan) -> QTensor:
        """4-bit convolution weights: per output channel (max|w| / 7, or the full range with a
        zero point), not per group (group_size applies to linears). The convolution kernels
        compute them as int8 values (the int8 conv kernels, uint8 activations per image).

        Parameters
        ----------
        w
            float32 (out_channels, fan_in).
        plan
            What `conv_plan` returned.

        Returns
        -------
        QTensor
            int4 (symmetric) or uint4 values per output channel (axis 0).

        Raises
        ------
        TypeError
            w is not float32.
        ValueError
            NaN/Inf in w.
        """
        dtype, symmetric = self.weight_format()
        return quantize(w, dtype, symmetric=symmetric, axis=0, clip_search=self.clip_search)


@dataclass(frozen=True)
class Int8DynamicConfig(QuantConfig):
    """int8 weights per output channel, activations quantized per row at run time (uint8,
    DynamicQuantizeLinear per row) inside the fused `lowbit.linear` kernel.

    clip_search=True (this and the other non-static configs) picks each weight channel's (or
    4-bit group's) range by least squared quantization error over clipping ratios instead of
    the full max|w| range (`lowbit.quantize(..., clip_search=True)`).

    Parameters
    ----------
    symmetric
        True (default): zero point 0, max|w| / 127 per channel; False: each channel's full
        range with a zero point.
    clip_search
        The least-squares clipping search described above (off by default).

    Raises
    ------
    TypeError
        symmetric or clip_search is not a bool.
    """

    symmetric: bool = True
    clip_search: bool = False

    name: ClassVar[str] = "int8_dynamic"
    bits: ClassVar[int] = 8
    scheme: ClassVar[str] = "dynamic"
    mode: ClassVar[Optional[str]] = None
    group_size: ClassVar[Optional[int]] = None

    def describe(self) -> str:
        """One line for conversion summaries, e.g. "int8 dynamic (int8 weights per channel,
        uint8 activations per row)".

        Returns
        -------
        str

        Raises
        ------
        None
            It reads the config's fields.
        """
        return ("int8 dynamic (int8 weights per channel, uint8 activations per row"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True)
class Int8WeightOnlyConfig(_FloatActivationPlan, QuantConfig):
    """int8 weights per output channel, float32 activations: the layer keeps the packed int8
    weight (4x smaller than float32) and its kernel FMAs float32 activations against weights
    converted to float32 in registers, k in order, then scales each channel (no activation
    rounding: the float product with the dequantized weight, up to float32 summation order).
    Fastest where the weight's bytes dominate (small batches); a large batch runs at float32
    GEMM speed.

    Parameters
    ----------
    symmetric
        True (default): zero point 0, max|w| / 127 per channel; False: each channel's full
        range with a zero point.
    clip_search
        As in Int8DynamicConfig.

    Raises
    ------
    TypeError
        symmetric or clip_search is not a bool.
    """

    symmetric: bool = True
    clip_search: bool = False

    name: ClassVar[str] = "int8_weight_only"
    bits: ClassVar[int] = 8
    scheme: ClassVar[str] = "weight_only"
    mode: ClassVar[Optional[str]] = "weight_only"
    activation: ClassVar[str] = "float"
    conv_activation: ClassVar[Optional[str]] = None
    group_size: ClassVar[Optional[int]] = None

    def describe(self) -> str:
        """One line for conversion summaries, e.g. "int8 weight-only (int8 weights per
        channel, float32 activations)".

        Returns
        -------
        str

        Raises
        ------
        None
            It reads the config's fields.
        """
        return ("int8 weight-only (int8 weights per channel, float32 activations"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True)
class Int4WeightOnlyConfig(_Int4Config):
    """4-bit weights per group of `group_size` input features, float32 activations:
    `pack_weight(bits=4, mode="weight_only")` (nibbles dequantized in registers).

    Parameters
    ----------
    group_size
        Input features per group (default 128): a positive even int up to 2**20; a layer
        with fewer in_features gets one group per row.
    symmetric
        True (default): int4, max|w| / 7 per group; False: uint4 over each group's full range
        with a zero point.
    clip_search
        As in Int8DynamicConfig, per group.

    Raises
    ------
    TypeError
        group_size is not an int; symmetric or clip_search is not a bool.
    ValueError
        group_size is not positive and even, or above 2**20.
    """

    group_size: int = 128
    symmetric: bool = True
    clip_search: bool = False

    name: ClassVar[str] = "int4_weight_only"
    bits: ClassVar[int] = 4
    scheme: ClassVar[str] = "weight_only"
    mode: ClassVar[Optional[str]] = "weight_only"
    activation: ClassVar[str] = "float"
    conv_activation: ClassVar[Optional[str]] = None

    def describe(self) -> str:
        """One line for conversion summaries, e.g. "int4 weight-only (groups of 128, float32
        activations)".

        Returns
        -------
        str

        Raises
        ------
        None
            It reads the config's fields.
        """
        kind = "int4" if self.symmetric else "uint4 asymmetric"
        return (f"{kind} weight-only (groups of {self.group_size}, float32 activations"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True)
class Int4DynamicConfig(_Int4Config):
    """W4A8: 4-bit weights per group, activations quantized to int8 per row (symmetric) at run
    time: `pack_weight(bits=4, mode="w4a8")`.

    Parameters
    ----------
    group_size
        Input features per group (default 128): a positive even int up to 2**20; a layer
        with fewer in_features gets one group per row.
    symmetric
        True (default): int4, max|w| / 7 per group; False: uint4 over each group's full range
        with a zero point.
    clip_search
        As in Int8DynamicConfig, per group.

    Raises
    ------
    TypeError
        group_size is not an int; symmetric or clip_search is not a bool.
    ValueError
        group_size is not positive and even, or above 2**20.
    """

    group_size: int = 128
    symmetric: bool = True
    clip_search: bool = False

    name: ClassVar[str] = "int4_dynamic"
    bits: ClassVar[int] = 4
    scheme: ClassVar[str] = "dynamic"
    mode: ClassVar[Optional[str]] = "w4a8"
    activation: ClassVar[str] = "rows_int8_symmetric"

    def describe(self) -> str:
        """One line for conversion summaries, e.g. "int4 W4A8 (groups of 128, int8
        activations per row)".

        Returns
        -------
        str

        Raises
        ------
        None
            It reads the config's fields.
        """
        kind = "int4" if self.symmetric else "uint4 asymmetric"
        return (f"{kind} W4A8 (groups of {self.group_size}, int8 activations per row"
                + _clip_note(self.clip_search) + ")")


@dataclass(frozen=True, eq=False)
class Int8StaticConfig(QuantConfig):
    """int8 weights per output channel; activations quantized per tensor with a scale and zero
    point frozen after calibration (`prepare` -> run data -> `convert`).

    `observer` is a template: every layer gets a fresh `observer.clone()`; it must be per tensor
    (axis=None) and produce 8-bit parameters (uint8 asymmetric by default). `weight_observer`
    (per channel along axis 0, int8/uint8) picks the weight ranges; None uses
    `pack_weight`'s max|w| / 127 per channel (symmetric) or the full range (symmetric=False).

    Parameters
    ----------
    observer
        The activation observer template (default MinMaxObserver(): uint8, asymmetric, per
        tensor).
    weight_observer
        None (default), or an observer for the weights: per output channel (axis=0) or per
        tensor, int8 or uint8.
    symmetric
        The weights' rule when weight_observer is None (default True).

    Raises
    ------
    TypeError
        symmetric is not a bool; observer or weight_observer is not a lowbit Observer.
    ValueError
        observer is not per tensor or not 8-bit; weight_observer is not per channel along
        axis 0 (or per tensor), or not int8/uint8.
    """

    observer: Observer = field(default_factory=MinMaxObserver)
    weight_observer: Optional[Observer] = None
    symmetric: bool = True

    name: ClassVar[str] = "int8_static"
    bits: ClassVar[int] = 8
    scheme: ClassVar[str] = "static"
    mode: ClassVar[Optional[str]] = None
    group_size: ClassVar[Optional[int]] = None
    calibrated: ClassVar[bool] = True
    activation: ClassVar[str] = "static"
    conv_activation: ClassVar[Optional[str]] = "static"

    def __post_init__(self) -> None:
        super().__post_init__()
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
        """One line for conversion summaries, e.g. "int8 static (int8 weights per channel,
        uint8 activations per tensor, MinMaxObserver)".

        Returns
        -------
        str

        Raises
        ------
        None
            It reads the config's fields.
        """
        return (f"int8 static (int8 weights per channel, {self.observer.dtype} activations per "
                f"tensor, {type(self.observer).__name__})")

    def weight_format(self) -> tuple[str, bool]:
        """A weight_observer decides the weight type and symmetry.

        Returns
        -------
        tuple of (str, bool)
            The weight_observer's (dtype, symmetric), else ("int8", symmetric).

        Raises
        ------
        None
            It reads the config's fields.
        """
        if self.weight_observer is not None:
            return self.weight_observer.dtype, self.weight_observer.symmetric
        return "int8", self.symmetric

    def quantize_weight(self, w: np.ndarray, plan: LayerPlan) -> QTensor:
        """Per output channel as the dynamic config does, or with a weight_observer, that
        observer's parameters (per channel or per tensor).

        Parameters
        ----------
        w
            The float32 (out_features, in_features) weight.
        plan
            What `plan` returned for w's shape.

        Returns
        -------
        QTensor
            int8 (or the weight_observer's dtype) per channel along axis 0, or per tensor.

        Raises
        ------
        TypeError
            w is not float32.
        ValueError
            NaN/Inf in w.
        """
        if self.weight_observer is None:
            return super().quantize_weight(w, plan)
        obs = self.weight_observer.clone()
        obs.observe(w)
        scale, zero = obs.calculate_qparams()
        data = quantize_linear(w, scale, zero, axis=0)   # axis=0: per output channel
        return QTensor(data, scale, zero, obs.dtype, obs.axis, None)


class _HalfWeightOnlyConfig(_FloatActivationPlan, QuantConfig):
    """16-bit float weights (the class's `dtype`), float32 activations: the weight rounded
    once to the 16-bit type (nearest, ties to even) and packed; the kernels widen it exactly
    in registers and FMA float32 activations against it in k order, then add the bias (no
    activation rounding, no scales). Half the bytes of float32."""

    bits: ClassVar[int] = 16
    scheme: ClassVar[str] = "weight_only"
    mode: ClassVar[Optional[str]] = "weight_only"
    activation: ClassVar[str] = "float"
    conv_activation: ClassVar[Optional[str]] = None
    group_size: ClassVar[Optional[int]] = None
    symmetric: ClassVar[bool] = True   # no zero points: the values are the weights
    dtype: ClassVar[str] = ""

    def weight_format(self) -> tuple[str, bool]:
        """The weight's type and whether it is symmetric.

        Returns
        -------
        tuple of (str, bool)
            (dtype, True).

        Raises
        ------
        None
        """
        return self.dtype, True

    def quantize_weight(self, w: np.ndarray, plan: LayerPlan) -> QTensor:
        """The weight rounded to the 16-bit type (nearest, ties to even): a per-tensor QTensor
        of its bit patterns (uint16), scale 1.0, zero point 0 (the rule PTQ and QAT share).

        Parameters
        ----------
        w
            The float32 (out_features, in_features) weight.
        plan
            What `plan` returned.

        Returns
        -------
        QTensor

        Raises
        ------
        TypeError
            w is not float32.
        ValueError
            NaN/Inf in w, or a value that would round to Inf in the 16-bit type.
        """
        if not isinstance(w, np.ndarray) or w.dtype != np.float32:
            raise TypeError(f"weight must be a float32 NumPy array, got "
                            f"{getattr(w, 'dtype', type(w).__name__)}")
        return QTensor(round_to_half(w, self.dtype), np.ones((), np.float32),
                       np.zeros((), np.uint16), self.dtype, None, None)

    def pack(self, weight: QTensor) -> PackedWeight:
        """The 16-bit weight packed for the wf16f32 / wbf16f32 kernels.

        Parameters
        ----------
        weight
            A QTensor of this config's dtype, as `quantize_weight` makes it.

        Returns
        -------
        PackedWeight
            bits 16, this config's dtype.

        Raises
        ------
        ValueError
            A QTensor of another type or layout, or holding NaN/Inf patterns.
        """
        return pack_weight(weight, dtype=self.dtype)

    def describe(self) -> str:
        """One line for conversion summaries, e.g. "float16 weight-only (float16 weights,
        float32 activations)".

        Returns
        -------
        str

        Raises
        ------
        None
        """
        return f"{self.dtype} weight-only ({self.dtype} weights, float32 activations)"


@dataclass(frozen=True)
class Float16WeightOnlyConfig(_HalfWeightOnlyConfig):
    """float16 (IEEE binary16) weights, float32 activations (kernel family wf16f32): 2x smaller
    than float32, 10 mantissa bits (relative rounding error <= 2^-11), range +-65504 (a weight
    beyond it raises rather than becoming Inf).

    Raises
    ------
    None
        The config has no fields.
    """

    name: ClassVar[str] = "float16_weight_only"
    dtype: ClassVar[str] = "float16"


@dataclass(frozen=True)
class BFloat16WeightOnlyConfig(_HalfWeightOnlyConfig):
    """bfloat16 weights (the upper 16 bits of a float32), float32 activations (kernel family
    wbf16f32): 2x smaller than float32, float32's range, 7 mantissa bits (relative rounding
    error <= 2^-8). The bytes of a bfloat16 model's weights are kept as they are.

    Raises
    ------
    None
        The config has no fields.
    """

    name: ClassVar[str] = "bfloat16_weight_only"
    dtype: ClassVar[str] = "bfloat16"


CONFIG_TYPES = (Int8DynamicConfig, Int8WeightOnlyConfig, Int4WeightOnlyConfig, Int4DynamicConfig,
                Int8StaticConfig, Float16WeightOnlyConfig, BFloat16WeightOnlyConfig)
# Each config by its `name` ("int8_dynamic", "int4_weight_only", ...): the one table from a name
# to a config class (lowbit.hf's LowbitConfig(format=...) reads it).
CONFIGS_BY_NAME: dict[str, type[QuantConfig]] = {t.name: t for t in CONFIG_TYPES}


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

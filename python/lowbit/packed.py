"""PackedWeight: a weight quantized and packed once for the GEMM kernels (8-bit, 4-bit, or
16-bit floats)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ._core import _C
from ._core.checks import check_bool, float_array, group_for_axis, kernel_array, scales
from ._core.halfs import HALF_TYPES, half_type_of, to_bits

if TYPE_CHECKING:
    from .qtensor import QTensor

INT4_MODES = ("w4a8", "weight_only")
INT8_MODES = (None, "weight_only")
# The kernel family of a packed weight, by its bits and mode: the one name each family has in
# the kernel files, functions and docs (w8a8: int8 weights x int8 activations quantized per row
# at run time; w8f32: int8 weights x float32 activations; w4a8, w4f32 likewise for 4 bits).
FAMILIES = {(8, None): "w8a8", (8, "weight_only"): "w8f32", (4, "w4a8"): "w4a8",
            (4, "weight_only"): "w4f32"}
# The 16-bit float weights (bits 16, mode "weight_only") by their type: wf16f32 (float16
# weights x float32 activations) and wbf16f32 (bfloat16 weights).
HALF_FAMILIES = {"float16": "wf16f32", "bfloat16": "wbf16f32"}
# How a family computes: activations quantized at run time, or float32 against the weights.
FAMILY_SCHEMES = {"w8a8": "dynamic", "w8f32": "weight_only", "w4a8": "dynamic",
                  "w4f32": "weight_only", "wf16f32": "weight_only", "wbf16f32": "weight_only"}
DEFAULT_INT4_GROUP_SIZE = 128


class PackedWeight:
    """An (out_features, in_features) weight, quantized and packed once into the kernels' panel
    layout (the same layout on every ISA path, so a PackedWeight works under any `use_isa`).

    bits=8: int8/uint8 per output channel; `scale` and `zero_point` have out_features values.
    `mode` None: `lowbit.linear` quantizes activations to uint8 per row (exact int8 GEMM);
    "weight_only": float32 activations against the int8 weights.
    bits=4: int4/uint4 per group of `group_size` consecutive input features (the last group of a
    row may be shorter); `scale` and `zero_point` have shape (out_features, groups). `mode`
    says how `lowbit.linear` computes with it: "w4a8" (activations quantized to int8 per row,
    exact integer group sums) or "weight_only" (float32 activations).

    bits=16: float16 or bfloat16 weights (`dtype`), mode "weight_only": float32 activations
    against the 16-bit values widened exactly (kernels wf16f32 / wbf16f32); `scale` is 1.0 and
    `zero_point` 0 (0-d: the values are the weights).

    Holds only the packed bytes and the quantization parameters; `qtensor()` rebuilds the
    canonical quantized weight (for saving or inspection).

    Made by `lowbit.pack_weight` (and by pickling, copying and `lowbit.load`, which re-pack);
    the constructor only wraps what those have checked.

    Parameters
    ----------
    packed
        The extension's packed matrix (8-bit: (in_features, out_features) panels; 4-bit: the
        (out_features, in_features) nibbles with their group scales; 16-bit: the values).
    scale, zero_point
        The quantization parameters as described above (stored read-only).
    dtype
        "int8" / "uint8" (bits=8), "int4" / "uint4" (bits=4), "float16" / "bfloat16" (bits=16).
    bits
        8, 4 or 16.
    group_size
        The 4-bit group actually used (None for 8 bits).
    mode
        8-bit: None or "weight_only"; 4-bit: "w4a8" or "weight_only"; 16-bit: "weight_only".

    Raises
    ------
    None
        The arguments are not checked here (pack_weight checks them).
    """

    def __init__(self, packed: Any, scale: np.ndarray, zero_point: np.ndarray, dtype: str,
                 bits: int = 8, group_size: Optional[int] = None,
                 mode: Optional[str] = None) -> None:
        self._packed = packed
        self.scale = kernel_array(scale)   # handed to the kernels on every call
        self.scale.setflags(write=False)
        self.zero_point = kernel_array(zero_point)
        self.zero_point.setflags(write=False)
        self.dtype = dtype
        self.bits = bits
        self.group_size = group_size
        self.mode = mode
        # The kernel family that runs this weight ("w8a8", "w8f32", "w4a8", "w4f32"), looked up
        # once here: lowbit.linear reads it on every call.
        self.family = HALF_FAMILIES[dtype] if bits == 16 else FAMILIES[(bits, mode)]
        self.in_features = int(packed.in_features)
        self.out_features = int(packed.out_features)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def symmetric(self) -> bool:
        return True if self.bits == 16 else bool(self._packed.symmetric)

    @property
    def nbytes(self) -> int:
        """Bytes held: packed data (padded to the kernel tile, 4-bit scales and zero points
        included) + the per-channel scales of an 8-bit weight."""
        if self.bits in (4, 16):
            return int(self._packed.nbytes)
        return int(self._packed.nbytes) + self.scale.nbytes

    def storage(self) -> np.ndarray:
        """The packed bytes (read-only uint8, 64-byte aligned, `nbytes` of them for a 4-bit
        weight; the 8-bit scales are not in them): what `from_storage` takes back, e.g. from a
        copy another library owns (lowbit.torch keeps them in a tensor).

        Returns
        -------
        numpy.ndarray
            1-D uint8, a view that keeps this weight's memory alive.

        Raises
        ------
        None
        """
        if self.bits == 4:
            return _C.packed_int4_storage(self._packed)
        if self.bits == 16:
            return _C.packed_half_storage(self._packed)
        return _C.packed_matrix_storage(self._packed)

    def layout(self) -> dict[str, Any]:
        """What `from_storage` needs besides the bytes and the parameters: dtype, bits,
        group_size, mode, in_features, out_features, symmetric (plain Python values).

        Returns
        -------
        dict

        Raises
        ------
        None
        """
        return {"dtype": self.dtype, "bits": self.bits, "group_size": self.group_size,
                "mode": self.mode, "in_features": self.in_features,
                "out_features": self.out_features, "symmetric": self.symmetric}

    @classmethod
    def from_storage(cls, storage: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                     layout: dict[str, Any]) -> "PackedWeight":
        """A PackedWeight over packed bytes someone else holds (a copy of `storage()`), nothing
        copied: the bytes must stay unchanged while it is used (the result keeps `storage`
        alive).

        Parameters
        ----------
        storage
            1-D uint8, C-contiguous, 64-byte aligned: the bytes `storage()` gave.
        scale, zero_point
            As the original weight's `scale` and `zero_point`.
        layout
            The original weight's `layout()`.

        Returns
        -------
        PackedWeight

        Raises
        ------
        ValueError
            storage is not the layout's size, or not 64-byte aligned.
        TypeError
            storage is not a uint8 array.
        """
        bits, k, n = layout["bits"], layout["in_features"], layout["out_features"]
        if bits == 4:
            packed = _C.packed_int4_view(storage, n, k, layout["group_size"],
                                         layout["symmetric"])
        elif bits == 16:
            packed = _C.packed_half_view(storage, n, k, layout["dtype"])
        else:
            etype = _C.ElemType.uint8 if layout["dtype"] == "uint8" else _C.ElemType.int8
            packed = _C.packed_matrix_view(storage, etype, k, n)
        return cls(packed, scale, zero_point, layout["dtype"], bits, layout["group_size"],
                   layout["mode"])

    def qtensor(self) -> "QTensor":
        """The canonical quantized weight, unpacked from the panels (the same values
        pack_weight was given or computed).

        Returns
        -------
        QTensor
            (out_features, in_features) data; 8-bit: per channel along axis 0; 4-bit: int4 /
            uint4 values one per byte, grouped along axis 1 with this weight's group_size;
            16-bit: the float16 / bfloat16 bit patterns (uint16), per tensor with scale 1.0 and
            zero point 0. Scales and zero points are copies.

        Raises
        ------
        None
            The packed data was checked when it was packed.
        """
        from .qtensor import QTensor
        if self.bits == 16:
            return QTensor(self._packed.unpack(), self.scale.copy(), self.zero_point.copy(),
                           self.dtype, None, None)
        if self.bits == 4:
            u = self._packed.unpack()
            data = (u.astype(np.int8) - np.int8(8)) if self.dtype == "int4" else u
            return QTensor(data, self.scale.copy(), self.zero_point.copy(), self.dtype, 1,
                           self.group_size)
        data = self._packed.unpack(True)
        return QTensor(data, self.scale.copy(), self.zero_point.copy(), self.dtype, 0, None)

    def dequantize(self) -> np.ndarray:
        """The float32 weight the kernels compute with: (q - zero_point) * scale (16-bit floats:
        the values widened exactly).

        Returns
        -------
        numpy.ndarray
            float32 (out_features, in_features).

        Raises
        ------
        None
            As `qtensor`.
        """
        return self.qtensor().dequantize()

    def __reduce__(self) -> tuple[Any, ...]:
        # The packed bytes live in C++ memory; pickling (and copy.deepcopy) goes through the
        # canonical QTensor and re-packs, which also suits a different CPU on the other side.
        return (_repack, (self.qtensor(), self.bits, self.mode))

    def __repr__(self) -> str:
        extra = (f", group_size={self.group_size}, mode={self.mode!r}" if self.bits == 4
                 else f", mode={self.mode!r}" if self.mode and self.bits == 8 else "")
        return (f"PackedWeight(out_features={self.out_features}, in_features={self.in_features}, "
                f"bits={self.bits}, dtype={self.dtype}, symmetric={self.symmetric}{extra})")


def _repack(qt: "QTensor", bits: int, mode: Optional[str]) -> PackedWeight:
    return pack_weight(qt, bits=bits, mode=mode)


def pack_weight(w: Union[np.ndarray, "QTensor"], bits: int = 8, group_size: Optional[int] = None,
                symmetric: bool = True, mode: Optional[str] = None,
                clip_search: bool = False, dtype: Optional[str] = None) -> PackedWeight:
    """Quantizes (if float) and packs an (out_features, in_features) weight.

    dtype="float16" or "bfloat16" (bits 16): the weight rounded to that 16-bit float type
    (nearest, ties to even; a value that would round to Inf raises) and packed for the
    weight-only kernels (`lowbit.linear`: float32 activations against the 16-bit values
    widened exactly, fma in k order, then the bias). A float16 array, an ml_dtypes.bfloat16
    array or a QTensor of those types is packed as it is (no rounding).

    bits=8: a float32 weight is quantized per output channel to int8 (symmetric by default: zero
    point 0, values in [-127, 127]; symmetric=False gives a zero point per channel). A QTensor
    must be int8/uint8, per tensor or per channel along axis 0.

    bits=4: a float32 weight is quantized per group of `group_size` input features (default
    128; any even size up to 2**20; a group larger than in_features is one group per row, i.e.
    in_features, the rule of every grouped quantization; the last group may be shorter), to int4 with
    scale = max|w| / 7 (symmetric) or to uint4 over [min(0, w), max(0, w)] with a zero point per
    group (symmetric=False). A QTensor must be int4/uint4, grouped along axis 1 (or per channel
    along axis 0: one group per row). in_features must be even. `mode` picks the computation of
    `lowbit.linear`: "w4a8" (default) or "weight_only".

    8-bit `mode`: None (default; activations quantized to uint8 per row) or "weight_only"
    (float32 activations against the int8 weights: fma in k order, then the channel scale).

    clip_search=True picks each channel's (8-bit) or group's (4-bit) range by least squared
    quantization error over a grid of clipping ratios (see `lowbit.quantize`); off by default.

    Parameters
    ----------
    w
        A float32 (out_features, in_features) NumPy array, or a QTensor of that shape (see
        above for the layouts each bit width takes).
    bits
        8 (default) or 4.
    group_size
        4-bit only: input features per group (None: 128); a positive even int up to 2**20.
        Must be None for 8 bits.
    symmetric
        True (default): symmetric weights; False: a zero point per channel or group. Not read
        for a QTensor, which brings its own.
    mode
        How `lowbit.linear` computes: 8-bit None or "weight_only"; 4-bit "w4a8" (None) or
        "weight_only".
    clip_search
        Search a clipping range per channel or group (float weights only).
    dtype
        None (integer weights, as bits says), or "float16" / "bfloat16": 16-bit float weights
        (then bits must be 16 or left at its default; group_size, symmetric=False, mode other
        than None / "weight_only" and clip_search do not apply).

    Returns
    -------
    PackedWeight
        Its `group_size` is the group actually used.

    Raises
    ------
    TypeError
        weight is not a float32 array or a QTensor; symmetric / clip_search not a bool;
        group_size not an int.
    ValueError
        NaN/Inf in weight, a 16-bit float weight value that would round to Inf, an unknown
        dtype or one that conflicts with bits / group_size / mode / symmetric / clip_search, a weight that is not 2-D, an odd in_features or group_size for
        4-bit, a QTensor of another bit width or layout, unknown bits or mode; a group_size
        for 8 bits, above 2**20, or other than a 4-bit QTensor's; clip_search with a
        QTensor; a QTensor whose scales are not finite and > 0.
    """
    from .qtensor import QTensor
    symmetric = check_bool(symmetric, "symmetric")
    clip_search = check_bool(clip_search, "clip_search")
    half = _half_request(w, bits, dtype)
    if half:
        if group_size is not None or not symmetric or clip_search or \
                mode not in (None, "weight_only"):
            raise ValueError(f"a {half} weight takes no group_size, symmetric=False, "
                             "clip_search or mode other than 'weight_only'")
        return _pack_half(w, half)
    if isinstance(bits, bool) or bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4 (or 16 with dtype='float16' / 'bfloat16'), "
                         f"got {bits!r}")
    if not isinstance(w, QTensor):
        if not isinstance(w, np.ndarray):
            raise TypeError(f"weight must be a NumPy float32 array or a QTensor, got {type(w).__name__}")
        if w.ndim != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {w.shape}")
    if clip_search and isinstance(w, QTensor):
        raise ValueError("clip_search applies when quantizing a float weight, not to a QTensor")
    if bits == 4:
        return _pack_int4(w, group_size, symmetric, mode, clip_search)
    if mode not in INT8_MODES:
        raise ValueError(f"mode of an 8-bit weight must be one of {INT8_MODES}, got {mode!r}")
    if group_size is not None:
        raise ValueError("group_size applies to 4-bit weights; 8-bit weights are per channel")
    return _pack_int8(w, symmetric, clip_search, mode)


def _pack_int8(w: Union[np.ndarray, "QTensor"], symmetric: bool, clip_search: bool,
               mode: Optional[str] = None) -> PackedWeight:
    from .qtensor import QTensor, channel_params, quantize_array
    if isinstance(w, QTensor):
        qt = w
        if qt.dtype not in ("int8", "uint8"):
            raise ValueError(f"an 8-bit pack takes an int8/uint8 QTensor, got {qt.dtype}"
                             + (" (use bits=4 for int4/uint4)" if qt.dtype in ("int4", "uint4")
                                else ""))
        if qt.group_size is not None or qt.axis not in (None, 0):
            raise ValueError("pack_weight takes a per-tensor or per-output-channel (axis=0) QTensor")
    elif w.size:
        # Quantized and packed in C++, a row at a time (the int8 weight is never built whole):
        # the same scales, zero points and bytes as quantize(w, axis=0) followed by a pack.
        wf = kernel_array(float_array(w, "weight"))
        if clip_search:
            scale, zero = channel_params(wf, "weight", "int8", symmetric, clip_search)
            packed = _C.quantize_pack_matrix(wf, scale, zero.astype(np.int32), "int8")
        else:
            packed, scale, zero = _C.quantize_pack_channels(wf, symmetric)
        return PackedWeight(packed, scale, zero.astype(np.int8), "int8", mode=mode)
    else:
        qt = quantize_array(w, "weight", "int8", symmetric=symmetric, axis=0,
                            clip_search=clip_search)
    if qt.data.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {qt.data.shape}")
    n = qt.data.shape[0]
    # A QTensor can be built by hand: its scales get the same checks as any other (a NaN or 0
    # scale here would otherwise turn every output of linear() into NaN or 0, silently).
    # np.array copies: a view would tie the packed weight to the caller's QTensor.
    scale = np.array(np.broadcast_to(scales(qt.scale, "QTensor scale"), (n,)), dtype=np.float32)
    zero = np.ascontiguousarray(np.broadcast_to(qt.zero_point, (n,)))
    data = kernel_array(np.ascontiguousarray(qt.data))
    packed = _C.pack_matrix(data, True, zero.astype(np.int32))
    return PackedWeight(packed, scale, zero.copy(), qt.dtype, mode=mode)


def _check_group_size(group_size: Any, k: int) -> int:
    """The 4-bit group used for a requested group_size (None: the default) and in_features k:
    a positive even int up to INT4_MAX_GROUP_SIZE, and, larger than k, one group per row (k;
    lowbit._core.checks.group_for_axis, the rule every grouped quantization follows)."""
    if group_size is None:
        return group_for_axis(DEFAULT_INT4_GROUP_SIZE, k)
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"group_size must be an int, got {type(group_size).__name__}")
    g = int(group_size)
    if g <= 0 or g % 2:
        raise ValueError(f"group_size must be a positive even number, got {g}")
    if g > _C.INT4_MAX_GROUP_SIZE:
        raise ValueError(f"group_size must be at most {_C.INT4_MAX_GROUP_SIZE}, got {g}")
    return group_for_axis(g, k)


def _pack_int4(w: Union[np.ndarray, "QTensor"], group_size: Optional[int], symmetric: bool,
               mode: Optional[str], clip_search: bool) -> PackedWeight:
    from .qtensor import QTensor, quantize_array
    mode = "w4a8" if mode is None else mode
    if mode not in INT4_MODES:
        raise ValueError(f"mode must be one of {INT4_MODES}, got {mode!r}")
    if isinstance(w, QTensor):
        qt = w
        if qt.dtype not in ("int4", "uint4"):
            raise ValueError(f"a 4-bit pack takes an int4/uint4 QTensor, got {qt.dtype}")
        if qt.data.ndim != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got {qt.data.shape}")
        n, k = qt.data.shape
        if k % 2:
            raise ValueError(f"4-bit weights need an even in_features, got {k}")
        if qt.group_size is not None:
            if qt.axis != 1:
                raise ValueError("a grouped 4-bit QTensor must be grouped along axis 1 "
                                 "(in_features)")
            g = _check_group_size(qt.group_size, k)
            scale, zero = np.asarray(qt.scale), np.asarray(qt.zero_point)
        elif qt.axis == 0:
            g = max(k, 2)  # one group per output channel
            scale = np.asarray(qt.scale).reshape(n, 1)
            zero = np.asarray(qt.zero_point).reshape(n, 1)
        else:
            raise ValueError("a 4-bit QTensor must be grouped along axis 1 or per channel (axis 0)")
        if group_size is not None and _check_group_size(group_size, k) != g:
            raise ValueError(f"group_size={group_size} differs from the QTensor's ({g})")
    else:
        if w.shape[1] % 2:
            raise ValueError(f"4-bit weights need an even in_features, got {w.shape[1]}")
        g = _check_group_size(group_size, w.shape[1])
        qt = quantize_array(w, "weight", "int4" if symmetric else "uint4", symmetric=symmetric,
                            axis=1, group_size=g, clip_search=clip_search)
        scale, zero = qt.scale, qt.zero_point
    n, k = qt.data.shape
    groups = -(-k // g) if k else 0
    if scale.shape != (n, groups) or zero.shape != (n, groups):
        raise ValueError(f"scale and zero_point must have shape ({n}, {groups}), got "
                         f"{scale.shape} and {zero.shape}")
    offset = 8 if qt.dtype == "int4" else 0   # unsigned storage: u = q + 8 for int4
    u = np.ascontiguousarray(qt.data.astype(np.int16) + offset).astype(np.uint8)
    zu = (zero.astype(np.int16) + offset).astype(np.uint8)
    scale32 = kernel_array(np.ascontiguousarray(scale, dtype=np.float32))
    packed = _C.pack_int4(u, g, scale32, None if np.all(zu == 8) else np.ascontiguousarray(zu))
    return PackedWeight(packed, scale32.copy(), np.array(zero, copy=True), qt.dtype, bits=4,
                        group_size=g, mode=mode)


def _half_request(w: Any, bits: Any, dtype: Any) -> str:
    """The 16-bit float type pack_weight is asked for ("" for integer weights): dtype=, or a
    QTensor / array of a 16-bit float type with dtype None."""
    from .qtensor import QTensor
    if dtype is not None:
        if not isinstance(dtype, str) or dtype not in HALF_TYPES:
            raise ValueError(f"dtype must be None, 'float16' or 'bfloat16', got {dtype!r}")
        if isinstance(bits, bool) or bits not in (8, 16):
            raise ValueError(f"dtype={dtype!r} packs 16-bit weights: bits must be 16 (or left "
                             f"at its default), got {bits!r}")
        return dtype
    given = (w.dtype if isinstance(w, QTensor) and w.dtype in HALF_TYPES
             else half_type_of(w.dtype) if isinstance(w, np.ndarray) else "")
    if isinstance(bits, int) and not isinstance(bits, bool) and bits == 16 and not given:
        raise ValueError("bits=16 needs dtype='float16' or 'bfloat16'")
    return given


def _pack_half(w: Any, dtype: str) -> PackedWeight:
    """A 16-bit float PackedWeight of `dtype`: from a QTensor or array of that type (its bits
    as they are) or a float32 array (rounded, in C++)."""
    from .qtensor import QTensor
    if isinstance(w, QTensor):
        if w.dtype != dtype:
            raise ValueError(f"a {dtype} pack takes a {dtype} QTensor, got {w.dtype}")
        if w.data.ndim != 2 or w.data.dtype != np.uint16:
            raise ValueError(f"a {dtype} QTensor holds 2-D uint16 bit patterns, got "
                             f"{w.data.dtype} {w.data.shape}")
        packed = _C.pack_half_bits(np.ascontiguousarray(w.data), dtype)
    elif not isinstance(w, np.ndarray):
        raise TypeError(f"weight must be a NumPy array or a QTensor, got {type(w).__name__}")
    elif w.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {w.shape}")
    elif half_type_of(w.dtype):
        if half_type_of(w.dtype) != dtype:
            raise ValueError(f"a {half_type_of(w.dtype)} weight cannot be packed as {dtype} "
                             "without rounding: pass it as float32")
        packed = _C.pack_half_bits(to_bits(w), dtype)
    else:
        packed = _C.pack_half_float(kernel_array(float_array(w, "weight")), dtype)
    return PackedWeight(packed, np.ones((), np.float32), np.zeros((), np.uint16), dtype,
                        bits=16, mode="weight_only")

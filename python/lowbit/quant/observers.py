"""Observers: collect statistics of float32 data (NumPy arrays) and turn them into a scale and
zero point with lowbit's rules (docs/numeric_contract.md): the range always includes 0, a zero
range gives scale 1, NaN/Inf are rejected with ValueError.

Each observer works per tensor (axis=None) or per channel (axis=k: one range per index along
k). `calculate_qparams()` returns (scale, zero_point): float32 and the storage dtype of `dtype`
(int8 for int8/int4, uint8 for uint8/uint4), 0-d per tensor or 1-D per channel.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._core.checks import (NARROW_QTYPES, QTYPES, check_bool, float_array, normalize_axis,
                            qtype_name, require_finite)
from .histogram import RangeHistogram, l2_optimal_range


class Observer:
    """Base class. Subclasses keep their statistics in `_update` and report a range in `_range`.

    dtype: "uint8" (default, asymmetric activations), "int8", "uint4", "int4".
    symmetric: scale = max|x| / 127 (or / 7) with the type's symmetric zero point, else the
    range [min(0, lo), max(0, hi)] mapped onto the whole type range.

    Parameters
    ----------
    dtype
        "uint8" (default), "int8", "uint4" or "int4".
    symmetric
        False (default): the asymmetric range rule; True: the symmetric one.
    axis
        None (per tensor, default) or the per-channel axis (negative values count from the
        end of the observed data's shape).

    Raises
    ------
    TypeError
        symmetric is not a bool; axis is not an int or None; dtype is not a type name.
    ValueError
        An unsupported dtype.
    """

    def __init__(self, dtype: str = "uint8", symmetric: bool = False,
                 axis: Optional[int] = None) -> None:
        self.dtype = qtype_name(dtype, NARROW_QTYPES)   # what the layers' kernels take
        symmetric = check_bool(symmetric, "symmetric")
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
        self.symmetric = symmetric
        self.axis = axis
        self.samples = 0
        self._channels: Optional[int] = None

    # -- settings ---------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "symmetric": self.symmetric, "axis": self.axis}

    def clone(self) -> "Observer":
        """A fresh observer with the same settings and no statistics.

        Returns
        -------
        Observer
            Of the same class.

        Raises
        ------
        None
            The settings were checked when this observer was made.
        """
        return type(self)(**self._settings())

    def reset(self) -> None:
        """Forgets every statistic (the settings stay), as a fresh observer.

        Returns
        -------
        None

        Raises
        ------
        None
            The settings were checked when this observer was made.
        """
        self.__init__(**self._settings())  # type: ignore[misc]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"

    # -- observing ---------------------------------------------------------------------------
    @property
    def observed(self) -> bool:
        return self.samples > 0

    def __call__(self, x: Any) -> Any:
        """Observes x and returns it unchanged (so an observer can sit in a pipeline).

        Parameters
        ----------
        x
            As in `observe`.

        Returns
        -------
        object
            x itself.

        Raises
        ------
        TypeError, ValueError
            As `observe`.
        """
        self.observe(x)
        return x

    def observe(self, x: Any) -> None:
        """Adds x's values to the statistics (per channel: x's index along `axis` is the
        channel). Empty data changes nothing.

        Parameters
        ----------
        x
            float32 (or float16, or Python numbers) data; per channel, with the same number
            of channels along `axis` every time.

        Returns
        -------
        None

        Raises
        ------
        TypeError
            x is not float32/float16 data (float64 included).
        ValueError
            NaN/Inf in x; per channel: 0-d x, `axis` out of range for x, or another number of
            channels than before. The statistics are unchanged.
        """
        xa = float_array(x, "x")
        require_finite(xa, "x")
        rows = self._channel_rows(xa)
        if rows.size == 0:
            return
        self._update(rows)
        self.samples += int(xa.size)

    def _channel_rows(self, xa: np.ndarray) -> np.ndarray:
        if self.axis is None:
            return xa.reshape(1, -1)
        if xa.ndim == 0:
            raise ValueError("a per-channel observer needs data with at least one dimension")
        ax = normalize_axis(self.axis, xa.ndim)
        channels = xa.shape[ax]
        if self._channels is not None and channels != self._channels:
            raise ValueError(f"{type(self).__name__} saw {self._channels} channels along axis "
                             f"{self.axis} before, now {channels}")
        self._channels = channels
        return np.moveaxis(xa, ax, 0).reshape(channels, -1)

    def _update(self, rows: np.ndarray) -> None:
        raise NotImplementedError

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # -- parameters --------------------------------------------------------------------------
    def range(self) -> tuple[np.ndarray, np.ndarray]:
        """The (lo, hi) range the parameters are computed from, float32, one per channel.

        Returns
        -------
        tuple of (numpy.ndarray, numpy.ndarray)
            lo <= 0 <= hi, float32, 1-D: one value per tensor (per tensor) or per channel.

        Raises
        ------
        ValueError
            Nothing has been observed yet.
        """
        if not self.observed:
            raise ValueError(f"{type(self).__name__} has observed no data: run representative "
                             "data through it before asking for quantization parameters")
        lo, hi = self._range()
        return (np.minimum(lo, 0).astype(np.float32), np.maximum(hi, 0).astype(np.float32))

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        """The scale and zero point of `range()` with lowbit's rules (the module docstring).

        Returns
        -------
        tuple of (numpy.ndarray, numpy.ndarray)
            scale (float32) and zero_point (int8 for int8/int4, uint8 for uint8/uint4): 0-d
            per tensor, 1-D per channel.

        Raises
        ------
        ValueError
            Nothing has been observed yet.
        """
        from ..qtensor import _range_to_params
        lo, hi = self.range()
        scale, zero = _range_to_params(lo, hi, self.dtype, self.symmetric)
        zero = zero.astype(QTYPES[self.dtype][0])
        if self.axis is None:
            return scale.reshape(()), zero.reshape(())
        return scale, zero


class MinMaxObserver(Observer):
    """Running minimum and maximum of everything observed.

    Parameters
    ----------
    dtype
        "uint8" (default), "int8", "uint4" or "int4".
    symmetric
        False (default): the asymmetric range rule; True: the symmetric one.
    axis
        None (per tensor, default) or the per-channel axis (negative values count from the
        end of the observed data's shape).

    Raises
    ------
    TypeError
        symmetric is not a bool; axis is not an int or None; dtype is not a type name.
    ValueError
        An unsupported dtype.
    """

    def __init__(self, dtype: str = "uint8", symmetric: bool = False,
                 axis: Optional[int] = None) -> None:
        super().__init__(dtype, symmetric, axis)
        self._lo: Optional[np.ndarray] = None
        self._hi: Optional[np.ndarray] = None

    def _update(self, rows: np.ndarray) -> None:
        lo, hi = rows.min(axis=1), rows.max(axis=1)
        if self._lo is None or self._hi is None:
            self._lo, self._hi = lo, hi
        else:
            self._lo, self._hi = np.minimum(self._lo, lo), np.maximum(self._hi, hi)

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        assert self._lo is not None and self._hi is not None
        return self._lo, self._hi


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of each batch's minimum and maximum:
    lo <- lo + c * (batch_lo - lo) (the first batch sets the range). Less sensitive to one
    outlier batch than MinMaxObserver; the usual choice while training (QAT).

    Parameters
    ----------
    averaging_constant
        c, in (0, 1] (default 0.01); 1 keeps only the last batch's range.
    dtype
        "uint8" (default), "int8", "uint4" or "int4".
    symmetric
        False (default): the asymmetric range rule; True: the symmetric one.
    axis
        None (per tensor, default) or the per-channel axis (negative values count from the
        end of the observed data's shape).

    Raises
    ------
    TypeError
        symmetric is not a bool; axis is not an int or None; dtype is not a type name.
    ValueError
        averaging_constant outside (0, 1]; an unsupported dtype.
    """

    def __init__(self, averaging_constant: float = 0.01, dtype: str = "uint8",
                 symmetric: bool = False, axis: Optional[int] = None) -> None:
        if not 0 < float(averaging_constant) <= 1:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        super().__init__(dtype, symmetric, axis)
        self.averaging_constant = float(averaging_constant)

    def _settings(self) -> dict[str, Any]:
        return {"averaging_constant": self.averaging_constant, **super()._settings()}

    def _update(self, rows: np.ndarray) -> None:
        lo = rows.min(axis=1).astype(np.float32)
        hi = rows.max(axis=1).astype(np.float32)
        if self._lo is None or self._hi is None:
            self._lo, self._hi = lo, hi
            return
        c = np.float32(self.averaging_constant)
        self._lo = (self._lo + c * (lo - self._lo)).astype(np.float32)
        self._hi = (self._hi + c * (hi - self._hi)).astype(np.float32)


class _HistogramBased(Observer):
    def __init__(self, bins: int = 2048, dtype: str = "uint8", symmetric: bool = False,
                 axis: Optional[int] = None) -> None:
        super().__init__(dtype, symmetric, axis)
        self.bins = bins
        self._hist = RangeHistogram(bins)

    def _settings(self) -> dict[str, Any]:
        return {"bins": self.bins, **super()._settings()}

    def _update(self, rows: np.ndarray) -> None:
        self._hist.update(rows)


class PercentileObserver(_HistogramBased):
    """Clips the range at the `percentile`-th and (100 - percentile)-th percentiles of the
    observed values (from a histogram of `bins` bins per channel, interpolated inside a bin;
    symmetric: the percentile of |x|'s two tails, i.e. max(|lo|, |hi|) of the clipped range).

    Parameters
    ----------
    percentile
        In (50, 100] (default 99.99); 100 keeps the whole observed range.
    bins
        Histogram bins per channel, an int >= 8 (default 2048).
    dtype
        "uint8" (default), "int8", "uint4" or "int4".
    symmetric
        False (default): the asymmetric range rule; True: the symmetric one.
    axis
        None (per tensor, default) or the per-channel axis (negative values count from the
        end of the observed data's shape).

    Raises
    ------
    TypeError
        symmetric is not a bool; axis is not an int or None; dtype is not a type name.
    ValueError
        percentile outside (50, 100]; bins not an int >= 8; an unsupported dtype.
    """

    def __init__(self, percentile: float = 99.99, bins: int = 2048, dtype: str = "uint8",
                 symmetric: bool = False, axis: Optional[int] = None) -> None:
        if not 50 < float(percentile) <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        super().__init__(bins, dtype, symmetric, axis)
        self.percentile = float(percentile)

    def _settings(self) -> dict[str, Any]:
        return {"percentile": self.percentile, **super()._settings()}

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.percentile / 100
        return self._hist.quantile(1 - q), self._hist.quantile(q)


class HistogramObserver(_HistogramBased):
    """Picks, per channel, the clipping range that minimizes the L2 (mean squared) quantization
    error of the observed values, estimated from a histogram (`bins` bins; the mass of a bin sits
    at its centre): `lowbit.quant.histogram.l2_optimal_range`. Each candidate range is scored with the
    exact scale/zero-point rules and float32 rounding that lowbit's quantizer uses.

    Parameters
    ----------
    bins
        Histogram bins per channel, an int >= 8 (default 2048).
    dtype
        "uint8" (default), "int8", "uint4" or "int4".
    symmetric
        False (default): the asymmetric range rule; True: the symmetric one.
    axis
        None (per tensor, default) or the per-channel axis (negative values count from the
        end of the observed data's shape).
    grid
        Candidates per bound in the range search, an int >= 4 (default 128).

    Raises
    ------
    TypeError
        symmetric is not a bool; axis is not an int or None; dtype is not a type name.
    ValueError
        bins not an int >= 8; grid not an int >= 4; an unsupported dtype.
    """

    def __init__(self, bins: int = 2048, dtype: str = "uint8", symmetric: bool = False,
                 axis: Optional[int] = None, grid: int = 128) -> None:
        super().__init__(bins, dtype, symmetric, axis)
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 4:
            raise ValueError(f"grid must be an int >= 4, got {grid!r}")
        self.grid = grid

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "grid": self.grid}

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        h = self._hist
        assert h.counts is not None and h.lo is not None and h.hi is not None
        centers = h.centers()
        lo = np.empty(h.counts.shape[0], np.float64)
        hi = np.empty_like(lo)
        for c in range(h.counts.shape[0]):
            lo[c], hi[c] = l2_optimal_range(centers[c], h.counts[c], float(h.lo[c]),
                                            float(h.hi[c]), self.dtype, self.symmetric, self.grid)
        return lo, hi


__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver",
           "HistogramObserver"]

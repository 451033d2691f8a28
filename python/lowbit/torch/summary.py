"""ConversionSummary lives in lowbit.quant.summary (the NumPy conversion reports with it too); kept
here for the modules and users that import it from lowbit.torch."""
from __future__ import annotations

from ..quant.summary import ConversionSummary, Replaced, Skipped

__all__ = ["ConversionSummary", "Replaced", "Skipped"]

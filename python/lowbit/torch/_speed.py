"""The speed guard of quantize_(skip_slower=True): time a layer's float and quantized forward
at the shape it will really see, on this CPU, with the current thread settings."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .._core.timing import median_seconds

WARMUP = 3
MIN_SAMPLES = 7
BUDGET_SECONDS = 0.05   # per layer and per variant; enough for a stable median at these sizes
MAX_SAMPLES = 500


def layer_seconds(fn: Callable[[], object]) -> float:
    """Median seconds of one layer call: MIN_SAMPLES timed calls at least, more while the
    budget lasts (lowbit._core.timing)."""
    return median_seconds(fn, MIN_SAMPLES, min_seconds=BUDGET_SECONDS, max_samples=MAX_SAMPLES,
                          warmup=WARMUP)


def compare(float_layer: nn.Module, quantized: nn.Module, rows: int, in_features: int
            ) -> tuple[float, float]:
    """(float seconds, quantized seconds) per call on a (rows, in_features) input. The two
    variants alternate in three rounds and each keeps its best median, so a burst of load from
    other processes penalizes neither side alone."""
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(0))
    best_f, best_q = float("inf"), float("inf")
    with torch.inference_mode():
        for _ in range(3):
            best_f = min(best_f, layer_seconds(lambda: float_layer(x)))
            best_q = min(best_q, layer_seconds(lambda: quantized(x)))
    return best_f, best_q

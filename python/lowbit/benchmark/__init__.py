"""Benchmark harness: lowbit against NumPy float32, PyTorch and ONNX Runtime dynamic int8.

Every (method, shape, threads) measurement runs in its own worker subprocess (runner), so each
library's thread pool has the cores to itself and thread counts set through the environment take
effect before the library loads. The harness imports with NumPy alone; the peers (torch,
onnxruntime + onnx, matplotlib for the plot) are used only when installed.

`lowbit bench` runs `run_short()`; bench/compare.py runs the full grid and writes docs/bench.md.

    data        seeded operands, weight copies, result checks
    ort_models  ONNX models and ONNX Runtime sessions
    methods     the per-method setups and the METHODS registry
    methods_conv  the conv suite: layer shapes, operands, references, CONV_METHODS
    timing      call timing, L3 size and cold copies, DRAM bandwidth probe
    measure     one method measured in this process (what a worker runs)
    runner      worker subprocesses and their command line, run_grid, run_short
    report      to_markdown, plot; conv_to_markdown, plot_conv
"""
from __future__ import annotations

from .data import SEED, make_a, make_weight, make_x, quantize_per_channel, weight_copy
from .measure import (lowbit_linear, lowbit_matmul_integer, measure_many, numpy_f32, ort_dynamic,
                      ort_matmul_integer, torch_dynamic)
from .methods import METHODS, PEERS, Bench, Method, method_available, missing_requirements
from .methods_conv import (ALL_CONV_METHODS, CONV_METHODS, CONV_SHAPES, DIGITS_MODEL, MBV2_MODEL,
                           MODEL_METHODS, MODELS, QUICK_CONV_SHAPES, ConvShape, conv_shape)
from .report import conv_to_markdown, plot, plot_conv, to_markdown
from .runner import (RESULT_MARKER, default_threads, main, run_conv_batch, run_conv_grid,
                     run_dram_subprocess, run_grid, run_method_batch, run_method_subprocess,
                     run_short, worker_env)
from .timing import (COLD_FACTOR, DRAM_PROBE_BYTES, MIN_SECONDS, cold_copies, l3_cache_bytes,
                     measure_dram_bandwidth, time_calls)

__all__ = [
    "SEED", "make_a", "make_weight", "make_x", "quantize_per_channel", "weight_copy",
    "lowbit_linear", "lowbit_matmul_integer", "measure_many", "numpy_f32", "ort_dynamic",
    "ort_matmul_integer", "torch_dynamic",
    "METHODS", "PEERS", "Bench", "Method", "method_available", "missing_requirements",
    "ALL_CONV_METHODS", "CONV_METHODS", "CONV_SHAPES", "DIGITS_MODEL", "MBV2_MODEL",
    "MODEL_METHODS", "MODELS", "QUICK_CONV_SHAPES",
    "ConvShape", "conv_shape",
    "conv_to_markdown", "plot", "plot_conv", "to_markdown",
    "RESULT_MARKER", "default_threads", "main", "run_conv_batch", "run_conv_grid",
    "run_dram_subprocess", "run_grid",
    "run_method_batch", "run_method_subprocess", "run_short", "worker_env",
    "COLD_FACTOR", "DRAM_PROBE_BYTES", "MIN_SECONDS", "cold_copies", "l3_cache_bytes",
    "measure_dram_bandwidth", "time_calls",
]

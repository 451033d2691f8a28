#!/usr/bin/env python3
"""lowbit against NumPy float32, PyTorch, torchao and ONNX Runtime int8, on the full grid.

docs/ keeps one result file per machine class: the class is the lowbit path that ran
(`lowbit.cpu_info()["isa"]`: amx, avx512vnni, avx2, ...), so a run writes docs/bench_<isa>.md
(machine info, CPU flags and tables), docs/bench_<isa>.png (GOPS vs M) and docs/bench_<isa>.json
(machine info and every raw row); the int4 suite docs/bench_int4_<isa>.*, the conv suite
docs/bench_conv_<isa>.* (µs per call by shape, batch and threads). --out-name picks
another name. Each measurement runs in its own subprocess (see python/lowbit/benchmark/). Peers
that are not installed are skipped with a note.

    pip install . && pip install onnx onnxruntime matplotlib torch && pip install --no-deps torchao
    python bench/compare.py                    # full grid: takes a while
    python bench/compare.py --quick            # fewer M and shapes, for a first look
    python bench/compare.py --threads 1 --methods lowbit_linear,ort_dynamic --out-dir /tmp/b
    python bench/compare.py --suite int4       # 4-bit weights: docs/bench_int4_<isa>.md
    python bench/compare.py --suite half --fma-peak build/bench/fma_peak   # 16-bit float weights:
                                               # docs/bench_half_<isa>.md, with the FMA peak
    python bench/compare.py --suite conv       # MobileNetV2 convolutions: docs/bench_conv_<isa>.md
    python bench/compare.py --suite conv --quick --conv-shapes dw144_s1,16-16-8x8-k3-g16
    python bench/compare.py --tile-peak build/bench/amx_peak \
        --kernel-bench build/bench/bench_kernels   # also the tdpbusd peak and C++ kernel numbers
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "python" / "lowbit" / "benchmark"

SUITES = ("int8", "int4", "half", "conv")
# The half suite's methods (methods_half), besides numpy_f32 and int8 weight-only for reference.
HALF_SUITE = ("numpy_f32", "lowbit_w8_weight_only", "lowbit_f16_weight_only",
              "lowbit_bf16_weight_only", "torch_bf16_linear", "torch_f16_linear")
FULL_MS = (1, 4, 16, 64, 256)
FULL_SHAPES = ((384, 1536), (1536, 384), (4096, 4096), (4096, 11008))
FULL_COLD_SHAPES = ((4096, 4096), (4096, 11008))
QUICK_MS = (1, 16, 256)
QUICK_SHAPES = ((1536, 384), (4096, 4096))
QUICK_COLD_SHAPES = ((4096, 4096),)
INT4_SHAPES = ((4096, 4096), (4096, 11008))   # LLM layers: what 4-bit weights are for
INT4_QUICK_SHAPES = ((4096, 4096),)
PACK_SHAPES = ((4096, 4096), (4096, 11008))  # pack_weight GB/s (int8 suite)
QUICK_PACK_SHAPES = ((4096, 4096),)
FULL_REPEATS, QUICK_REPEATS = 10, 3
CONV_BATCHES, QUICK_CONV_BATCHES = (1, 8), (1,)
MODEL_BATCHES = (1, 64)           # the conv suite's whole models (harness.MODELS)
VERSIONED = ("numpy", "torch", "torchao", "onnxruntime", "onnx", "matplotlib", "lowbit")
# /proc/cpuinfo flags that decide which lowbit path can run
LOWBIT_FLAGS = ("amx_tile", "amx_int8", "amx_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
KERNEL_BENCH_FILTER = "BM_(matmul_integer_packed|linear|linear_w4a8)/isa:(2|6)/"

METHOD_NOTES = {
    "numpy_f32": "`x @ w.T` in float32 (NumPy's BLAS; threads set through "
                 "OPENBLAS/OMP/MKL_NUM_THREADS before NumPy loads)",
    "lowbit_linear": "`lb.linear(x, lb.pack_weight(w), bias)`: per-row dynamic uint8 "
                     "activations, per-channel int8 weights, float32 out",
    "lowbit_matmul_integer": "`lb.matmul_integer(a, lb.pack_weight(w))`: uint8 x int8 -> exact int32",
    "lowbit_matmul_integer_plain_b": "`lb.matmul_integer(a, b)`, b a plain int8 (K, N) NumPy "
                                     "array (the same int8 weight, not pre-packed: the README's "
                                     "first call): uint8 x int8 -> exact int32, B handled per call",
    "torchao_int8_dynamic": "torchao `quantize_(nn.Linear, Int8DynamicActivationInt8WeightConfig())`"
                            ", eager, under `torch.inference_mode()`",
    "torchao_int8_dynamic_compiled": "the same torchao model under `torch.compile(dynamic=False)` "
                                     "(one static graph per M, compiled before timing)",
    "torch_int_mm": "`torch._int_mm(a8, b)`: int8 (M, K) x int8 (K, N) -> int32, b the (K, N) "
                    "view of the (N, K) int8 weight; it takes no uint8, so the uint8 activations "
                    "of lowbit_matmul_integer enter as a8 = a - 128 (converted once, untimed; the "
                    "check adds 128·colsum(b) back). Only the `_int_mm` call is timed",
    "lowbit_w8_weight_only": "`lb.linear(x, lb.pack_weight(w, mode=\"weight_only\"), bias)`: float32 "
                             "activations x per-channel int8 weights (Int8WeightOnlyConfig)",
    "torch_dynamic": "`torch.ao.quantization.quantize_dynamic` of `nn.Linear` (qint8), "
                     "under `torch.inference_mode()`",
    "ort_dynamic": "ONNX Runtime, float MatMul + Add quantized by `quantize_dynamic` (QInt8, per "
                   "tensor), fused to DynamicQuantizeMatMul at session load",
    "ort_matmul_integer": "ONNX Runtime MatMulInteger: uint8 input, int8 initializer -> int32",
    "lowbit_w4a8": "`lb.linear(x, lb.pack_weight(qt, bits=4, mode=\"w4a8\"))`: per-row int8 "
                   "activations, exact int32 dot products per group (vpdpbusd), float32 out",
    "lowbit_w4_weight_only": "`lb.linear` with `mode=\"weight_only\"`: float32 activations, "
                             "nibbles dequantized to float32 in registers",
    "torch_int4": "`torch.ops.aten._weight_int4pack_mm_for_cpu` (PyTorch's int4 CPU kernel) on "
                  "bfloat16 activations and scales (its fast path), float32 casts included",
    "ort_nbits_f32": "ONNX Runtime `MatMulNBits` (com.microsoft), accuracy_level 0: float32 compute",
    "ort_nbits_int8": "ONNX Runtime `MatMulNBits`, accuracy_level 4: int8-quantized activations",
    "lowbit_f16_weight_only": "`lb.linear(x, lb.pack_weight(w, dtype=\"float16\"), bias)`: "
                              "float32 activations x float16 weights widened in registers "
                              "(Float16WeightOnlyConfig, kernel wf16f32)",
    "lowbit_bf16_weight_only": "`lb.linear(x, lb.pack_weight(w, dtype=\"bfloat16\"), bias)`: "
                               "float32 activations x bfloat16 weights (BFloat16WeightOnlyConfig, "
                               "kernel wbf16f32)",
    "torch_bf16_linear": "`nn.Linear.to(torch.bfloat16)` called on a bfloat16 input (a bfloat16 "
                         "model as PyTorch runs it), under `torch.inference_mode()`",
    "torch_f16_linear": "`nn.Linear.to(torch.float16)` on a float16 input",
    # the conv suite
    "lowbit_conv": "`layer(x)`, layer = `lowbit.nn.QuantizedConv2d.from_float(w, b, stride, "
                   "padding, dilation=1, groups)` (or, where that class doesn't exist yet, the "
                   "calls it wraps: `_C.conv_float(x, _C.pack_conv(q, groups, None), ...)` on "
                   "per-channel int8 q): float32 NCHW in, per-image dynamic uint8 activations, "
                   "per-output-channel int8 weights, float32 NCHW out",
    "lowbit_conv_integer": "`_C.conv_integer(x_u8, x_zero, packed, params)` (what "
                           "`lowbit.conv_integer` runs, on a pre-packed weight): uint8 input "
                           "quantized beforehand (untimed) x int8 -> exact int32, ConvInteger's "
                           "work",
    "torch_f32_conv": "`nn.Conv2d` in float32 (oneDNN) under `torch.inference_mode()`, "
                      "`torch.set_num_threads(threads)`",
    "torch_ao_conv": "PyTorch static quantization, engine `x86`: QuantStub -> Conv2d -> "
                     "DeQuantStub, `prepare` with `get_default_qconfig(\"x86\")` (7-bit "
                     "activations: reduce_range), calibrated on the input, `convert`; the whole "
                     "module timed (quantize + quantized conv + dequantize: float in and out)",
    "torch_ao_qconv": "the same converted module's quantized conv alone, on an input "
                      "quantized beforehand (untimed): quint8 in, quint8 out",
    "lowbit_qlinear_conv": "`_C.qlinear_conv` (what `lowbit.qlinear_conv` runs) on the "
                           "pre-packed weight, the operands of ort_qlinearconv: uint8 NCHW in "
                           "(quantized beforehand, untimed), int32 bias, uint8 NCHW out",
    "lowbit_conv_chain": "one layer of lowbit's integer chain (`_C.conv_float` with uint8 input "
                         "and an output scale, as a chained static `lowbit.torch.QuantizedConv2d` "
                         "runs it): uint8 NHWC in (ort_qlinearconv's input, transposed "
                         "beforehand), float epilogue quantized to uint8 NHWC out",
    "ort_qlinearconv": "ONNX Runtime one-node QLinearConv: uint8 input quantized beforehand "
                       "(untimed, per tensor), int8 per-channel weight initializer, int32 bias, "
                       "uint8 output",
    "ort_convinteger": "ONNX Runtime one-node ConvInteger: uint8 input quantized beforehand "
                       "(untimed), int8 weight initializer -> int32",
    "ort_conv_f32": "ONNX Runtime one-node float32 Conv",
    "torch_model_f32": "the whole model in float32 PyTorch, under `torch.inference_mode()`",
    "torch_model_f32_cl": "torch_model_f32 with the model and its input in "
                          "`torch.channels_last` memory (PyTorch's advice for CNNs on CPUs)",
    "lowbit_model_static_cl": "lowbit_model_static on a `torch.channels_last` input (the first "
                              "conv reads it as NHWC, no transpose)",
    "lowbit_model_dynamic": "the same model after `lowbit.torch.quantize_(model, "
                            "lowbit.Int8DynamicConfig())` (Conv + BN fused first)",
    "lowbit_model_static": "the same model after `lowbit.torch.prepare(model, "
                           "lowbit.Int8StaticConfig())`, calibration on 4 seeded batches of 8 "
                           "(not the timed inputs) and `convert(model)`: consecutive static convs "
                           "hand uint8 to each other (integer chain)",
    "lowbit_model_static_unchained": "as lowbit_model_static with `convert(model, "
                                     "integer_chain=False)`: every conv returns float",
}


def load_harness() -> ModuleType:
    """This checkout's python/lowbit/benchmark/, loaded by path as the standalone package
    "lowbit_benchmark", as its workers load it (see its __main__.py): it runs whether or not the
    lowbit it measures (the installed one) is built, and can't be a stale installed copy."""
    spec = importlib.util.spec_from_file_location(
        "lowbit_benchmark", HARNESS / "__init__.py", submodule_search_locations=[str(HARNESS)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its relative imports and dataclasses look it up here
    spec.loader.exec_module(module)
    return module


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'4096x4096,384x1536' -> [(4096, 4096), (384, 1536)] as (K, N); 'none' -> []."""
    if text.strip().lower() == "none":
        return []
    shapes = []
    for item in text.split(","):
        k, sep, n = item.strip().lower().partition("x")
        if not sep or not k.isdigit() or not n.isdigit() or int(k) < 1 or int(n) < 1:
            raise argparse.ArgumentTypeError(f"expected KxN[,KxN...] or 'none', got {text!r}")
        shapes.append((int(k), int(n)))
    return shapes


def parse_optional_ints(text: str) -> list[int]:
    """'1,64' -> [1, 64]; 'none' -> []."""
    return [] if text.strip().lower() == "none" else parse_ints(text)


def parse_conv_shapes(text: str) -> list[str]:
    """Conv layer shapes as the harness names them (ids or specs, checked); 'none' -> []."""
    if text.strip().lower() == "none":
        return []
    harness = sys.modules.get("lowbit_benchmark") or load_harness()
    try:
        return [harness.conv_shape(item).id for item in text.split(",") if item.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser(method_names: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark lowbit against NumPy, PyTorch and ONNX Runtime; writes "
                    "bench.md, bench.png and bench.json.")
    parser.add_argument("--suite", choices=SUITES, default="int8",
                        help="int8: 8-bit weights (docs/bench.md); int4: 4-bit weights, group "
                             "sizes 32 and 128 (docs/bench_int4.md); conv: MobileNetV2 "
                             "convolutions and a small CNN (docs/bench_conv_<isa>.md)")
    parser.add_argument("--quick", action="store_true",
                        help=f"M in {QUICK_MS}, (K,N) in {QUICK_SHAPES}, cold {QUICK_COLD_SHAPES}, "
                             f"{QUICK_REPEATS} repeats")
    parser.add_argument("--threads", type=parse_ints, default=[1, 2],
                        help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated subset of: {', '.join(method_names)} (default: "
                             "all of the suite's)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs",
                        help="where the .md, .png and .json go (default: docs/)")
    parser.add_argument("--out-name", default=None,
                        help="file name stem (default: bench_<isa> for int8, bench_int4_<isa> for "
                             "int4, <isa> the lowbit path this machine runs: one file per "
                             "machine class)")
    parser.add_argument("--pack-shapes", type=parse_shapes, default=None,
                        help="(K,N) shapes whose pack_weight GB/s are measured, as KxN,KxN, or "
                             f"'none' (default: int8 {PACK_SHAPES}, --quick {QUICK_PACK_SHAPES}; "
                             "int4: none)")
    parser.add_argument("--fma-peak", type=Path, default=None,
                        help="a built bench/fma_peak: also measure the float32 FMA peak "
                             "(vfmadd231ps zmm) at each thread count")
    parser.add_argument("--tile-peak", type=Path, default=None,
                        help="a built bench/amx_peak: also measure the tdpbusd peak at each "
                             "thread count (all threads at once)")
    parser.add_argument("--kernel-bench", type=Path, default=None,
                        help="a built bench/bench_kernels: also run the C++ kernel benchmarks "
                             "matching --kernel-bench-filter")
    parser.add_argument("--kernel-bench-filter", default=KERNEL_BENCH_FILTER,
                        help=f"--benchmark_filter for --kernel-bench (default: {KERNEL_BENCH_FILTER})")
    parser.add_argument("--Ms", type=parse_ints, default=None, help="override the M values")
    parser.add_argument("--shapes", type=parse_shapes, default=None,
                        help="override the (K,N) shapes, as KxN,KxN")
    parser.add_argument("--cold-shapes", type=parse_shapes, default=None,
                        help="override the cold M=1 shapes, as KxN,KxN, or 'none'")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"minimum timed calls per point (default: {FULL_REPEATS}, "
                             f"--quick: {QUICK_REPEATS}); sampling also lasts >= 0.2 s")
    parser.add_argument("--conv-shapes", type=parse_conv_shapes, default=None,
                        help="conv suite: layer shapes, built-in ids or C-M-HxW-kK[-sS][-pP][-gG] "
                             "specs, comma-separated, or 'none' (default: all built-in shapes; "
                             "--quick: a subset)")
    parser.add_argument("--batches", type=parse_ints, default=None,
                        help=f"conv suite: batch sizes (default: {','.join(map(str, CONV_BATCHES))}"
                             f"; --quick: {','.join(map(str, QUICK_CONV_BATCHES))})")
    parser.add_argument("--model-batches", type=parse_optional_ints, default=None,
                        help="conv suite: the digits CNN's batch sizes, or 'none' to skip it "
                             f"(default: {','.join(map(str, MODEL_BATCHES))})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the grid this many times (method order rotated) and keep each "
                             "point's median round: use 3 on a shared, noisy machine")
    return parser


def suite_methods(suite: str, method_names: Sequence[str]) -> list[str]:
    if suite == "conv":   # the harness's conv registry (layer and whole-model methods)
        conv = (sys.modules.get("lowbit_benchmark") or load_harness()).ALL_CONV_METHODS
        return [m for m in method_names if m in conv]
    if suite == "int8":   # the 4-bit methods end in _g<size>; the 16-bit ones are their suite's
        return [m for m in method_names if "_g" not in m and "f16" not in m]
    if suite == "half":
        return [m for m in HALF_SUITE if m in method_names]
    return ["numpy_f32"] + [m for m in method_names if "_g" in m]


def resolve_conv_config(args: argparse.Namespace, harness: ModuleType) -> dict[str, Any]:
    names = list(harness.ALL_CONV_METHODS)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else names
    unknown = [m for m in methods if m not in names]
    if unknown or not methods:
        raise SystemExit(f"unknown or no conv methods {unknown}; choose from {', '.join(names)}")
    if args.conv_shapes is not None:
        shapes = list(args.conv_shapes)
    else:
        shapes = list(harness.QUICK_CONV_SHAPES) if args.quick else \
            [s.id for s in harness.CONV_SHAPES]
    return {
        "suite": "conv",
        "shapes": shapes,
        "batches": args.batches or list(QUICK_CONV_BATCHES if args.quick else CONV_BATCHES),
        "threads": args.threads,
        "methods": [m for m in methods if m in harness.CONV_METHODS],
        "models": list(harness.MODELS),
        "model_methods": [m for m in methods if m in harness.MODEL_METHODS],
        "model_batches": list(MODEL_BATCHES if args.model_batches is None else args.model_batches),
        "repeats": args.repeats or (QUICK_REPEATS if args.quick else FULL_REPEATS),
    }


def resolve_config(args: argparse.Namespace, method_names: Sequence[str]) -> dict[str, Any]:
    default = suite_methods(args.suite, method_names)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else default
    unknown = [m for m in methods if m not in method_names]
    if unknown or not methods:
        raise SystemExit(f"unknown or no methods {unknown}; choose from {', '.join(method_names)}")
    int4 = args.suite == "int4"
    shapes = (INT4_QUICK_SHAPES if args.quick else INT4_SHAPES) if int4 else \
        (QUICK_SHAPES if args.quick else FULL_SHAPES)
    cold = (INT4_QUICK_SHAPES if args.quick else INT4_SHAPES) if int4 else \
        (QUICK_COLD_SHAPES if args.quick else FULL_COLD_SHAPES)
    if args.pack_shapes is not None:
        pack = list(args.pack_shapes)
    else:
        pack = [] if int4 else list(QUICK_PACK_SHAPES if args.quick else PACK_SHAPES)
    return {
        "suite": args.suite,
        "Ms": args.Ms or list(QUICK_MS if args.quick else FULL_MS),
        "pack_shapes": pack,
        "shapes": args.shapes or list(shapes),
        "cold_shapes": args.cold_shapes if args.cold_shapes is not None else list(cold),
        "threads": args.threads,
        "methods": methods,
        "repeats": args.repeats or (QUICK_REPEATS if args.quick else FULL_REPEATS),
    }


# ----------------------------------------------------------------------------- machine info


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags(wanted: Sequence[str] = LOWBIT_FLAGS) -> dict[str, bool]:
    """Which of `wanted` the first "flags" line of /proc/cpuinfo lists (empty off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return {flag: flag in present for flag in wanted}
    except OSError:
        pass
    return {}


def machine_class(info: dict[str, Any]) -> str:
    """The lowbit path that ran ("amx", "avx512vnni", "avx2", ...): the name of this machine's
    result files."""
    return str(info.get("lowbit", {}).get("isa") or "unknown")


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def lowbit_info() -> dict[str, Any]:
    # In this process only for reporting; the measurements run in their own subprocesses.
    try:
        import lowbit
        return {"version": lowbit.__version__, "path": os.path.dirname(lowbit.__file__),
                **lowbit.cpu_info()}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def machine_info(harness: ModuleType, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "l3_bytes": harness.l3_cache_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in VERSIONED},
        "lowbit": lowbit_info(),
        "dram_read": [r for r in rows if r["method"] == "dram_read"],
        "command": " ".join([os.path.relpath(__file__, os.getcwd())] + sys.argv[1:]),
    }


def machine_markdown(info: dict[str, Any]) -> list[str]:
    lb = info["lowbit"]
    if "error" in lb:
        lowbit_line = f"not importable ({lb['error']})"
    else:
        extras = {k: v for k, v in lb.items() if k not in ("version", "path")}
        lowbit_line = f"{lb['version']}: " + ", ".join(f"{k}={v}" for k, v in extras.items())
    dram = "; ".join(f"{r['threads']} thread(s): {r['gbps']:.1f} GB/s ({r.get('source', '?')})"
                     if r.get("status") == "ok" else f"{r['threads']} thread(s): {r.get('error')}"
                     for r in info["dram_read"]) or "not measured (no cold shapes)"
    flags = info.get("cpu_flags") or {}
    flag_line = (", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
                 if flags else "not read (no /proc/cpuinfo)")
    items = [
        ("CPU", info["cpu"]),
        ("CPU flags (the ones lowbit dispatches on)", flag_line),
        ("lowbit path that ran", lb.get("isa", "?") if "error" not in lb else "–"),
        ("CPUs (usable / logical)", f"{info['usable_cpus']} / {info['logical_cpus']}"),
        ("L3 cache (cpu0)", f"{info['l3_bytes'] / 2**20:.3g} MiB"),
        ("lowbit.cpu_info()", lowbit_line),
        ("DRAM read bandwidth", dram),
        ("Platform", f"{info['platform']}, Python {info['python']}"),
        ("Versions", ", ".join(f"{k} {v}" for k, v in info["versions"].items())),
        ("Date", info["date"]),
    ]
    return ["| | |", "|:---|:---|"] + [f"| {k} | {str(v).replace('|', '/')} |" for k, v in items]


def report(harness: ModuleType, config: dict[str, Any], info: dict[str, Any],
           rows: Sequence[dict[str, Any]], plotted: set[str], stem: str = "bench") -> str:
    title = ("# lowbit benchmark" + {"int4": ": 4-bit weights", "half": ": 16-bit float weights"}
             .get(config["suite"], "")
             + f" on {info['cpu']} (lowbit path {machine_class(info)}), measured "
             + info["date"].split(" ")[0])
    lines = [title, "",
             f"Generated by `{info['command']}`. Median time per call, each method in its own "
             f"subprocess; at least {config['repeats']} timed calls and 0.2 s per point, after "
             "warm-up. GOPS = 2·M·K·N / time / 1e9 (x is M×K, the weight N×K)."
             + (f" The grid ran {config['rounds']} times (method order rotated); each point is "
                "its median round, as the shared machine drifts over minutes."
                if config.get("rounds", 1) > 1 else ""), "",
             "## Machine", ""] + machine_markdown(info) + ["", "## Methods", ""]
    lines += [f"- **{m}**: {method_note(m)}" for m in config["methods"]]
    lines += ["", "## Results", ""]
    for title, part, png in result_parts(config, rows, stem):
        lines += ([f"### {title}", ""] if title else []) + [harness.to_markdown(part)]
        if png in plotted:
            lines += [f"![GOPS vs M; solid: 1 thread, dashed: 2 threads]({png})", ""]
    lines += native_markdown(info)
    return "\n".join(lines)


def conv_api_note(rows: Sequence[dict[str, Any]]) -> str:
    apis = sorted({str(r["api"]) for r in rows if r.get("method") == "lowbit_conv" and r.get("api")})
    return f" (this run: `{'`, `'.join(apis)}`)" if apis else ""


def conv_report(harness: ModuleType, config: dict[str, Any], info: dict[str, Any],
                rows: Sequence[dict[str, Any]], plotted: bool, stem: str) -> str:
    title = (f"# lowbit benchmark: convolutions on {info['cpu']} (lowbit path "
             f"{machine_class(info)}), measured {info['date'].split(' ')[0]}")
    lines = [title, "",
             f"Generated by `{info['command']}`. Median time per call in microseconds, each "
             f"(method, shape, threads) in its own subprocess (weights built once, every batch "
             f"size timed there); at least {config['repeats']} timed calls and 0.2 s per point, "
             "after warm-up; every method's first output checked before timing. Inputs are "
             "float32 NCHW (seeded normal), weights seeded He-scaled; ratios compare methods "
             "measured in this one run."
             + (f" The grid ran {config['rounds']} times (method order rotated); each point is "
                "its median round." if config.get("rounds", 1) > 1 else ""), "",
             "## Machine", ""] + machine_markdown(info) + ["", "## Methods", ""]
    for m in config["methods"] + config["model_methods"]:
        note = method_note(m) + (conv_api_note(rows) if m == "lowbit_conv" else "")
        lines.append(f"- **{m}**: {note}")
    lines += ["", "## Results", "", harness.conv_to_markdown(rows)]
    if plotted:
        lines += [f"![lowbit_conv's speed ratio against each peer, per shape]({stem}.png)", ""]
    return "\n".join(lines)


def conv_main(harness: ModuleType, args: argparse.Namespace) -> int:
    config = resolve_conv_config(args, harness)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = harness.run_conv_grid(config["shapes"], config["batches"], config["threads"],
                                 config["methods"], config["repeats"], rounds=args.rounds,
                                 models=config["models"], model_methods=config["model_methods"],
                                 model_batches=config["model_batches"])
    config["rounds"] = args.rounds
    info = machine_info(harness, rows)
    info["seconds"] = round(time.perf_counter() - start, 1)
    stem = args.out_name or "bench_conv_" + machine_class(info)
    plotted = bool(config["methods"]) and harness.plot_conv(rows, str(args.out_dir / f"{stem}.png"))
    (args.out_dir / f"{stem}.md").write_text(conv_report(harness, config, info, rows, plotted, stem))
    with open(args.out_dir / f"{stem}.json", "w") as f:
        json.dump({"machine": info, "config": config, "rows": rows}, f, indent=1)
    print(harness.conv_to_markdown(rows))
    print(f"wrote {args.out_dir}/{stem}.md, {stem}.json{f', {stem}.png' if plotted else ''} "
          f"({info['seconds']:.0f} s)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- C++ programs


def run_tile_peak(binary: Path, threads_list: Sequence[int]) -> list[dict[str, Any]]:
    """bench/amx_peak at each thread count (its threads run tdpbusd at the same time)."""
    rows = []
    for t in threads_list:
        try:
            proc = subprocess.run([str(binary), str(t), "1.0"], capture_output=True, text=True,
                                  timeout=120)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception as e:
            row = {"status": "error", "error": f"{type(e).__name__}: {e}"[:300]}
        rows.append({"threads": t, **row})
    return rows


def run_fma_peak(binary: Path, threads_list: Sequence[int]) -> list[dict[str, Any]]:
    """bench/fma_peak at each thread count (vfmadd231ps zmm, all threads at once)."""
    rows = []
    for t in threads_list:
        try:
            proc = subprocess.run([str(binary), str(t), "1.0", "512"], capture_output=True,
                                  text=True, timeout=120)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception as e:
            row = {"status": "error", "error": f"{type(e).__name__}: {e}"[:300]}
        rows.append({"threads": t, **row})
    return rows


def run_kernel_bench(binary: Path, bench_filter: str) -> dict[str, Any]:
    """bench/bench_kernels' rows matching the filter: name and GOPS (its counter)."""
    cmd = [str(binary), f"--benchmark_filter={bench_filter}", "--benchmark_format=json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        data = json.loads(proc.stdout)
    except Exception as e:
        return {"status": "error", "error": f"{type(e).__name__}: {e}"[:300], "filter": bench_filter}
    rows = [{"name": b["name"], "gops": b.get("GOPS"), "real_time": b.get("real_time"),
             "time_unit": b.get("time_unit")} for b in data.get("benchmarks", [])
            if b.get("run_type", "iteration") == "iteration"]
    return {"status": "ok", "filter": bench_filter, "rows": rows,
            "context": {k: data.get("context", {}).get(k) for k in ("num_cpus", "mhz_per_cpu")}}


def native_markdown(info: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    peak = info.get("tile_peak")
    if peak:
        lines += ["## tdpbusd peak (bench/amx_peak)", "",
                  "Four independent `tdpbusd` (u8 x s8 -> s32, 16x64 by 64x16 tiles: 32768 ops each) "
                  "in a loop for 1 s per thread, all threads at once, after "
                  "`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`.", "",
                  "| threads | per thread (TOPS) | total (TOPS) |", "|---:|---:|---:|"]
        for r in peak:
            if r.get("status") == "ok":
                per = ", ".join(f"{v:.2f}" for v in r["per_thread_tops"])
                lines.append(f"| {r['threads']} | {per} | {r['total_tops']:.2f} |")
            else:
                lines.append(f"| {r['threads']} | {r.get('error')} | – |")
        lines.append("")
    fma = info.get("fma_peak")
    if fma:
        lines += ["## float32 FMA peak (bench/fma_peak)", "",
                  "Twelve independent `vfmadd231ps zmm` chains in a loop for 1 s per thread, all "
                  "threads at once: 2 · 16 flops per FMA.", "",
                  "| threads | per thread (GFLOPS) | total (GFLOPS) |", "|---:|---:|---:|"]
        for r in fma:
            if r.get("status") == "ok":
                per = ", ".join(f"{v:.0f}" for v in r["per_thread_gflops"])
                lines.append(f"| {r['threads']} | {per} | {r['total_gflops']:.0f} |")
            else:
                lines.append(f"| {r['threads']} | {r.get('error')} | – |")
        lines.append("")
    kb = info.get("kernel_bench")
    if kb:
        lines += ["## lowbit C++ kernels (bench/bench_kernels, google-benchmark)", "",
                  f"`bench_kernels --benchmark_filter='{kb['filter']}'`; isa 2 = avx512vnni, "
                  "6 = amx.", ""]
        if kb.get("status") != "ok":
            lines += [f"Not measured: {kb.get('error')}", ""]
        else:
            lines += ["| benchmark | GOPS |", "|:---|---:|"]
            lines += [f"| {r['name']} | {r['gops'] / 1e9 if r['gops'] else 0:.1f} |"
                      for r in kb["rows"]]
            lines.append("")
    return lines


def method_note(method: str) -> str:
    base, _, group = method.rpartition("_g")
    if base and group.isdigit():
        return METHOD_NOTES.get(base, "") + f"; group size {group}"
    return METHOD_NOTES.get(method, "")


def result_parts(config: dict[str, Any], rows: Sequence[dict[str, Any]], stem: str = "bench"
                 ) -> list[tuple[str, list[dict[str, Any]], str]]:
    """(title, rows, png name) per report section: one for int8, one per group size for int4."""
    if config["suite"] in ("int8", "half"):
        return [("", list(rows), f"{stem}.png")]
    parts = []
    for g in sorted({int(m.rpartition("_g")[2]) for m in config["methods"] if "_g" in m}):
        part = [r for r in rows if r["method"].endswith(f"_g{g}") or r["method"] in ("numpy_f32", "dram_read")]
        parts.append((f"Group size {g}", part, f"{stem}_g{g}.png"))
    return parts


def main(argv: Optional[Sequence[str]] = None) -> int:
    harness = load_harness()
    method_names = list(harness.METHODS)
    args = build_parser(method_names + list(harness.ALL_CONV_METHODS)).parse_args(argv)
    if args.suite == "conv":
        return conv_main(harness, args)
    config = resolve_config(args, method_names)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    rows = harness.run_grid(config["Ms"], config["shapes"], config["threads"], config["methods"],
                            config["repeats"], cold_shapes=config["cold_shapes"],
                            rounds=args.rounds, pack_shapes=config["pack_shapes"])
    config["rounds"] = args.rounds
    info = machine_info(harness, rows)
    if args.tile_peak is not None:
        info["tile_peak"] = run_tile_peak(args.tile_peak, config["threads"])
    if args.fma_peak is not None:
        info["fma_peak"] = run_fma_peak(args.fma_peak, config["threads"])
    if args.kernel_bench is not None:
        info["kernel_bench"] = run_kernel_bench(args.kernel_bench, args.kernel_bench_filter)
    info["seconds"] = round(time.perf_counter() - start, 1)

    stem = args.out_name or {"int8": "bench_", "int4": "bench_int4_",
                             "half": "bench_half_"}[config["suite"]] + machine_class(info)
    plotted = {png for _, part, png in result_parts(config, rows, stem)
               if harness.plot(part, str(args.out_dir / png))}
    (args.out_dir / f"{stem}.md").write_text(report(harness, config, info, rows, plotted, stem))
    with open(args.out_dir / f"{stem}.json", "w") as f:
        json.dump({"machine": info, "config": config, "rows": rows}, f, indent=1)
    print(harness.to_markdown(rows))
    print(f"wrote {args.out_dir}/{stem}.md, {stem}.json{', ' if plotted else ''}"
          f"{', '.join(sorted(plotted))} ({info['seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

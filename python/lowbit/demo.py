"""`lowbit demo`: the shipped digits MLP run in float32 (NumPy) and in int8 (lowbit), side by side.

The model (64 -> 512 -> 512 -> 10, ReLU) was trained by tools/train_demo_model.py on
scikit-learn's 8x8 digits; its weights and 500 held-out test images ship in lowbit/data.
"""
from __future__ import annotations

from importlib.resources import files
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ._core.runtime import cpu_info, get_num_threads, set_num_threads
from ._core.timing import median_seconds
from .nn.linear import QuantizedLinear

MODEL_RESOURCE = "data/digits_mlp.npz"
LAYER_NAMES = (("w0", "b0"), ("w1", "b1"), ("w2", "b2"))

Forward = Callable[[np.ndarray], np.ndarray]
FloatLayer = tuple[np.ndarray, np.ndarray]


def load_model() -> tuple[list[FloatLayer], np.ndarray, np.ndarray]:
    """The float32 (weight, bias) pairs, the test images (n, 64) and their labels."""
    with files("lowbit").joinpath(MODEL_RESOURCE).open("rb") as f, np.load(f) as data:
        layers = [(data[w].astype(np.float32), data[b].astype(np.float32)) for w, b in LAYER_NAMES]
        return layers, data["x_test"].astype(np.float32), data["y_test"].astype(np.int64)


def mlp(linears: Sequence[Forward]) -> Forward:
    """Chains the linear layers with a ReLU between each pair (none after the last)."""
    def forward(x: np.ndarray) -> np.ndarray:
        for i, linear in enumerate(linears):
            x = linear(x)
            if i < len(linears) - 1:
                x = np.maximum(x, 0.0)
        return x
    return forward


def float_linear(weight: np.ndarray, bias: np.ndarray) -> Forward:
    return lambda x: x @ weight.T + bias


def median_ms(fn: Forward, x: np.ndarray, repeats: int) -> float:
    """Median wall time of fn(x) in milliseconds, after a few untimed warm-up calls."""
    return median_seconds(lambda: fn(x), repeats) * 1e3


def measure(threads: Optional[int] = None, repeats: int = 50) -> dict[str, Any]:
    """Runs the comparison and returns every number; prints nothing."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    previous_threads = get_num_threads()
    if threads is not None:
        set_num_threads(threads)
    try:
        return _measure(repeats)
    finally:
        set_num_threads(previous_threads)


def _measure(repeats: int) -> dict[str, Any]:
    layers, x_test, y_test = load_model()
    quantized = [QuantizedLinear.from_float(w, b) for w, b in layers]
    float_model = mlp([float_linear(w, b) for w, b in layers])
    int8_model = mlp(quantized)

    float_pred = float_model(x_test).argmax(axis=1)
    int8_pred = int8_model(x_test).argmax(axis=1)
    float_bytes = sum(w.nbytes + b.nbytes for w, b in layers)
    # The int8 layer keeps its bias in float32, so it counts at full size.
    int8_bytes = sum(q.weight_nbytes + b.nbytes for q, (_, b) in zip(quantized, layers))

    one = x_test[:1]
    info = cpu_info()
    results: dict[str, Any] = {
        "isa": str(info["isa"]),
        "available": list(info["available"]),
        "threads": int(info["threads"]),
        "architecture": [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers],
        "n_test": int(x_test.shape[0]),
        "repeats": repeats,
        "float_weight_kb": float_bytes / 1024,
        "int8_weight_kb": int8_bytes / 1024,
        "float_ms_batch1": median_ms(float_model, one, repeats),
        "int8_ms_batch1": median_ms(int8_model, one, repeats),
        "float_ms_full": median_ms(float_model, x_test, repeats),
        "int8_ms_full": median_ms(int8_model, x_test, repeats),
        "float_accuracy": float((float_pred == y_test).mean()),
        "int8_accuracy": float((int8_pred == y_test).mean()),
        "agreement": float((int8_pred == float_pred).mean()),
    }
    results["size_ratio"] = results["float_weight_kb"] / results["int8_weight_kb"]
    results["speedup_batch1"] = results["float_ms_batch1"] / results["int8_ms_batch1"]
    results["speedup_full"] = results["float_ms_full"] / results["int8_ms_full"]
    return results


def _times(ratio: float, better: str, worse: str) -> str:
    return f"{ratio:.2f}x {better}" if ratio >= 1 else f"{1 / ratio:.2f}x {worse}"


def format_report(r: dict[str, Any]) -> str:
    """The results as an aligned, plain-text table."""
    n = r["n_test"]
    arch = " -> ".join(str(d) for d in r["architecture"])
    accuracy_delta = 100 * (r["int8_accuracy"] - r["float_accuracy"])
    rows = [
        ("", "float32 (NumPy)", "int8 (lowbit)", "int8 vs float32"),
        ("weights + biases", f"{r['float_weight_kb']:,.1f} KB", f"{r['int8_weight_kb']:,.1f} KB",
         _times(r["size_ratio"], "smaller", "larger")),
        ("latency, 1 image", f"{r['float_ms_batch1']:.4f} ms", f"{r['int8_ms_batch1']:.4f} ms",
         _times(r["speedup_batch1"], "faster", "slower")),
        (f"latency, {n} images", f"{r['float_ms_full']:.4f} ms", f"{r['int8_ms_full']:.4f} ms",
         _times(r["speedup_full"], "faster", "slower")),
        ("test accuracy", f"{100 * r['float_accuracy']:.2f} %", f"{100 * r['int8_accuracy']:.2f} %",
         f"{accuracy_delta:+.2f} points"),
        ("same answer as float32", "", f"{100 * r['agreement']:.2f} %",
         f"{round(r['agreement'] * n)} of {n} images"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"lowbit demo: MLP {arch} classifying scikit-learn's 8x8 digits ({n} test images)",
        f"CPU kernel path: {r['isa']} (available: {', '.join(r['available'])}), "
        f"lowbit threads: {r['threads']}",
        "",
    ]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("   ".join(cells).rstrip())
        if i == 0:
            lines.append("-" * (sum(widths) + 3 * 3))
    lines += [
        "",
        f"Latency: median of {r['repeats']} runs. float32 runs on NumPy's BLAS (its own threads).",
        "int8 keeps each weight row as int8 plus one float32 scale, and quantizes each input",
        "row to int8 on the fly; biases stay float32.",
    ]
    return "\n".join(lines)


def run_demo(threads: Optional[int] = None, repeats: int = 50) -> dict[str, Any]:
    """Compares the float32 and int8 digits MLP, prints the table and returns the numbers.

    threads sets lowbit's kernel thread count for the run (restored afterwards); None keeps it.
    """
    results = measure(threads, repeats)
    print(format_report(results))
    return results

"""Reports of result rows: markdown tables (to_markdown) and a GOPS-vs-M plot (plot).

matplotlib is imported inside plot() only, and is optional.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Optional, Sequence

from .measure import PACK_KINDS
from .methods import COMPARISONS, METHODS, NUMPY_RATIOS
from .timing import COLD_FACTOR, l3_cache_bytes


def fmt(value: Optional[float], spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


def _ordered_methods(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {r["method"] for r in rows}
    return [m for m in METHODS if m in present]


def _cell(row: Optional[dict[str, Any]]) -> str:
    if row is None:
        return ""
    if row.get("status") == "skipped":
        return "skipped"
    if row.get("status") != "ok":
        return "error"
    return f"{row['gops']:.1f}"


def _ratio(numerator: Optional[dict[str, Any]], denominators: Sequence[Optional[dict[str, Any]]]) -> str:
    good = [d["gops"] for d in denominators if d is not None and d.get("status") == "ok"]
    if numerator is None or numerator.get("status") != "ok" or not good:
        return "–"
    return f"{numerator['gops'] / max(good):.2f}x"


def _ratio_columns(methods: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(lowbit method, peers present) per ratio column: each comparison whose methods ran, and
    the numpy_f32 column of the methods that get one."""
    ratios: list[tuple[str, list[str]]] = []
    for primary, peers in COMPARISONS:
        present = [p for p in peers if p in methods]
        if primary in methods and present and (primary, present) not in ratios:
            ratios.append((primary, present))
    for primary in NUMPY_RATIOS:
        if primary in methods and "numpy_f32" in methods:
            ratios.append((primary, ["numpy_f32"]))
    return ratios


def _hot_table(rows: Sequence[dict[str, Any]], threads: int) -> list[str]:
    """GOPS per method, then (a second table) each lowbit method against the best of its peers."""
    mine = [r for r in rows if r["threads"] == threads]
    methods = _ordered_methods(mine)
    by_key = {(r["method"], r["K"], r["N"], r["M"]): r for r in mine}
    points = sorted({(r["K"], r["N"], r["M"]) for r in mine})
    header = ["K", "N", "M"] + methods
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for K, N, M in points:
        cells = [str(K), str(N), str(M)] + [_cell(by_key.get((m, K, N, M))) for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    ratios = _ratio_columns(methods)
    if not ratios:
        return lines
    header = ["K", "N", "M"] + [
        f"{primary} / {'best of (' + ', '.join(d) + ')' if len(d) > 1 else d[0]}"
        for primary, d in ratios]
    lines += ["", f"Ratios, {threads} thread{'s' if threads > 1 else ''} (GOPS of the lowbit "
              "method over the best of the methods named):", "",
              "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for K, N, M in points:
        cells = [str(K), str(N), str(M)]
        cells += [_ratio(by_key.get((primary, K, N, M)), [by_key.get((d, K, N, M)) for d in ds])
                  for primary, ds in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pack_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| K | N | threads | method | int8 weight (MB) | ms/call | GB/s |",
             "|---:|---:|---:|:---|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["K"], r["N"], r["threads"], r["method"])):
        ok = r.get("status") == "ok"
        cells = [str(r["K"]), str(r["N"]), str(r["threads"]), r["method"],
                 f"{r['K'] * r['N'] / 1e6:.1f}",
                 fmt(r["seconds"] * 1e3, ".1f") if ok else _cell(r), fmt(r.get("gbps"), ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cold_table(rows: Sequence[dict[str, Any]], dram: dict[int, dict[str, Any]]) -> list[str]:
    lines = ["| K | N | threads | method | weights (MB) | copies | µs/call | GB/s | % of DRAM |",
             "|---:|---:|---:|:---|---:|---:|---:|---:|---:|"]
    order = {m: i for i, m in enumerate(METHODS)}
    for r in sorted(rows, key=lambda r: (r["K"], r["N"], r["threads"], order[r["method"]])):
        ok = r.get("status") == "ok"
        bandwidth = dram.get(r["threads"], {}).get("gbps")
        percent = 100 * r["gbps"] / bandwidth if ok and bandwidth else None
        cells = [str(r["K"]), str(r["N"]), str(r["threads"]), r["method"],
                 f"{METHODS[r['method']].weight_itemsize * r['K'] * r['N'] / 1e6:.1f}",
                 str(r.get("copies", "–")),
                 fmt(r["seconds"] * 1e6, ".0f") if ok else _cell(r),
                 fmt(r.get("gbps"), ".1f"), fmt(percent, ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[tuple[str, str], None] = {}
    for r in rows:
        if r.get("status") != "ok":
            seen[(r["method"], f"{r.get('status')}: {r.get('error', '')}")] = None
    return [f"- {method}: {message}" for method, message in seen]


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """GOPS tables (one per thread count), the cold M=1 table and notes on skips and errors."""
    hot = [r for r in rows if r["method"] in METHODS and not r.get("cold")]
    cold = [r for r in rows if r["method"] in METHODS and r.get("cold")]
    dram = {r["threads"]: r for r in rows if r["method"] == "dram_read" and r.get("status") == "ok"}
    lines: list[str] = []
    for t in sorted({r["threads"] for r in hot}):
        lines += [f"### {t} thread{'s' if t > 1 else ''}: GOPS (2·M·K·N / median time per call)",
                  ""] + _hot_table(hot, t) + [""]
    if cold:
        lines += ["### Cold weights, M=1: weights streamed from DRAM", "",
                  f"Weight copies totalling more than {COLD_FACTOR}x the L3 cache "
                  f"({l3_cache_bytes() / 2**20:.3g} MiB), used in turn call by call; GB/s counts "
                  "weight bytes in each method's own format (int8 or 4-bit with its scales, or "
                  "float32 for NumPy)."]
        for t, r in sorted(dram.items()):
            lines.append(f"Measured DRAM read bandwidth, {t} thread(s): {r['gbps']:.1f} GB/s "
                         f"({r.get('source', '?')}).")
        lines += [""] + _cold_table(cold, dram) + [""]
    pack = [r for r in rows if r["method"] in PACK_KINDS]
    if pack:
        lines += ["### pack_weight: GB/s of int8 weight bytes packed", "",
                  "pack_weight_f32: `lb.pack_weight(w)`, float32 (N, K) weights quantized per "
                  "channel to int8 and packed; pack_weight_int8: `lb.pack_weight(qt)`, an int8 "
                  "QTensor packed (no quantization). GB/s = K·N bytes / median time per call.",
                  ""] + _pack_table(pack) + [""]
    notes = _notes([r for r in rows if r["method"] in METHODS or r["method"] == "dram_read"
                    or r["method"] in PACK_KINDS])
    if notes:
        lines += ["Notes:", ""] + notes + [""]
    return "\n".join(lines)


PLOT_COLORS = {"numpy_f32": "tab:gray", "lowbit_linear": "tab:red",
               "lowbit_matmul_integer": "tab:orange", "torch_dynamic": "tab:blue",
               "ort_dynamic": "tab:green", "ort_matmul_integer": "tab:olive",
               "lowbit_matmul_integer_plain_b": "tab:pink", "lowbit_w8_weight_only": "tab:brown",
               "torchao_int8_dynamic": "tab:purple", "torchao_int8_dynamic_compiled": "tab:cyan",
               "torch_int_mm": "black"}
for _g in (32, 128):
    PLOT_COLORS.update({f"lowbit_w4a8_g{_g}": "tab:red", f"lowbit_w4_weight_only_g{_g}": "tab:orange",
                        f"torch_int4_g{_g}": "tab:blue", f"ort_nbits_f32_g{_g}": "tab:green",
                        f"ort_nbits_int8_g{_g}": "tab:olive"})


def plot(rows: Sequence[dict[str, Any]], path: str) -> bool:
    """GOPS vs M, one subplot per (K, N), a line per method and thread count (1 thread solid,
    2 dashed) as a PNG; returns False (with a message) when matplotlib isn't installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot", file=sys.stderr)
        return False
    hot = [r for r in _ok(rows) if r["method"] in METHODS and not r.get("cold")]
    shapes = sorted({(r["K"], r["N"]) for r in hot})
    if not shapes:
        print("no successful measurements: skipping the plot", file=sys.stderr)
        return False
    cols = min(2, len(shapes))
    fig, axes = plt.subplots(math.ceil(len(shapes) / cols), cols, squeeze=False,
                             figsize=(6.5 * cols, 4.5 * math.ceil(len(shapes) / cols)))
    styles: dict[int, Any] = {1: "-", 2: "--"}
    for ax, (K, N) in zip(axes.flat, shapes):
        for method in _ordered_methods(hot):
            for t in sorted({r["threads"] for r in hot}):
                points = sorted((r["M"], r["gops"]) for r in hot
                                if (r["method"], r["K"], r["N"], r["threads"]) == (method, K, N, t))
                if points:
                    ax.plot(*zip(*points), styles.get(t, ":"), marker="o", markersize=3,
                            color=PLOT_COLORS.get(method))
        Ms = sorted({r["M"] for r in hot if (r["K"], r["N"]) == (K, N)})
        ax.set_xscale("log")
        ax.set_xticks(Ms, [str(m) for m in Ms])
        ax.minorticks_off()
        ax.set(title=f"K={K}, N={N}", xlabel="M (rows)", ylabel="GOPS")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(shapes):]:
        ax.set_visible(False)
    # One legend entry per colour (method) and per line style (threads), not per line.
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=PLOT_COLORS.get(m), marker="o", markersize=3, label=m)
               for m in _ordered_methods(hot)]
    handles += [Line2D([], [], color="black", linestyle=styles.get(t, ":"),
                       label=f"{t} thread{'s' if t > 1 else ''}")
                for t in sorted({r["threads"] for r in hot})]
    ncol = 4 if cols > 1 else 2
    legend_rows = math.ceil(len(handles) / ncol)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize="small")
    fig.tight_layout(rect=(0, (0.1 + 0.2 * legend_rows) / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True

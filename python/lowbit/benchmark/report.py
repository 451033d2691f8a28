"""Reports of result rows: markdown tables (to_markdown) and a GOPS-vs-M plot (plot); for the
conv suite, latency tables (conv_to_markdown) and a speed-ratio plot (plot_conv).

matplotlib is imported inside plot() only, and is optional.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Optional, Sequence

from .measure import PACK_KINDS
from .methods import COMPARISONS, METHODS, NUMPY_RATIOS
from .methods_conv import (ALL_CONV_METHODS, CONV_COMPARISONS, CONV_FLOAT_PEERS, CONV_METHODS,
                           CONV_PEERS,
                           CONV_TARGET, MODEL_COMPARISONS, MODEL_DESCRIPTIONS, MODEL_METHODS, ConvShape,
                           conv_shape)
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



# ----------------------------------------------------------------------------- conv suite

INEXACT_MARK = "†"


def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.1f}" if us < 100 else f"{us:.0f}"


def _conv_cell(row: Optional[dict[str, Any]]) -> str:
    if row is None:
        return ""
    if row.get("status") != "ok":
        return _cell(row)
    return _us(row["seconds"]) + (f" {INEXACT_MARK}" if row.get("inexact") else "")


def _shape_of(text: str) -> Optional[ConvShape]:
    try:
        return conv_shape(text)
    except ValueError:
        return None


def _ordered(rows: Sequence[dict[str, Any]], registry: Any) -> list[str]:
    present = {r["method"] for r in rows}
    return [m for m in registry if m in present]


def conv_speed_ratio(primary: Optional[dict[str, Any]], peers: Sequence[Optional[dict[str, Any]]]
                     ) -> Optional[tuple[float, str]]:
    """(fastest peer's time / primary's time, that peer) or None: > 1 means the primary is
    faster than every peer given."""
    good = [p for p in peers if p is not None and p.get("status") == "ok"]
    if primary is None or primary.get("status") != "ok" or not good:
        return None
    best = min(good, key=lambda p: p["seconds"])
    return best["seconds"] / primary["seconds"], best["method"]


def _ratio_cols(methods: Sequence[str], comparisons: Sequence[tuple[str, tuple[str, ...]]]
                ) -> list[tuple[str, list[str]]]:
    cols: list[tuple[str, list[str]]] = []
    for primary, peers in comparisons:
        present = [p for p in peers if p in methods]
        if primary in methods and present and (primary, present) not in cols:
            cols.append((primary, present))
    return cols


def _ratio_header(primary: str, peers: Sequence[str], all_peers: Sequence[str]) -> str:
    if list(peers) == [p for p in CONV_PEERS if p in all_peers] and len(peers) > 1:
        return f"{primary} vs fastest peer"
    if set(peers) <= set(CONV_FLOAT_PEERS) and len(peers) > 1:
        return f"{primary} vs fastest float-in/out peer"
    if len(peers) == 1:
        return f"{primary} vs {peers[0]}"
    return f"{primary} vs fastest of ({', '.join(peers)})"


def _conv_table(rows: Sequence[dict[str, Any]], registry: Any,
                comparisons: Sequence[tuple[str, tuple[str, ...]]], label: str) -> list[str]:
    methods = _ordered(rows, registry)
    by_key = {(r["method"], r["shape"]): r for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    ratios = _ratio_cols(methods, comparisons)
    peers_present = [m for m in methods if m in CONV_PEERS]
    header = [label] + [f"{m} (µs)" for m in methods] + \
        [_ratio_header(p, d, peers_present) for p, d in ratios]
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * (len(header) - 1)]
    for shape in shapes:
        cells = [shape] + [_conv_cell(by_key.get((m, shape))) for m in methods]
        for primary, peers in ratios:
            ratio = conv_speed_ratio(by_key.get((primary, shape)), [by_key.get((p, shape)) for p in peers])
            cells.append("–" if ratio is None else
                         (f"{ratio[0]:.2f}x" + (f" ({ratio[1]})" if len(peers) > 1 else "")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _shape_table(shapes: Sequence[str]) -> list[str]:
    lines = ["| shape | layer | C | M | H x W | kernel | stride | pad | groups | out H x W | "
             "MMAC / image |", "|:---|:---|" + "---:|" * 9]
    for text in shapes:
        s = _shape_of(text)
        if s is None:
            continue
        oh, ow = s.out_hw
        lines.append(f"| {s.id} | {s.kind} | {s.C} | {s.M} | {s.H}x{s.W} | {s.k}x{s.k} | "
                     f"{s.stride} | {s.pad} | {s.groups} | {oh}x{ow} | {s.macs / 1e6:.2f} |")
    return lines


def _correctness_table(rows: Sequence[dict[str, Any]], registry: Any) -> list[str]:
    """Per (shape, method): the worst relative error over every batch and thread count, and the
    integer check of the worst row."""
    ok = [r for r in rows if r.get("status") == "ok"]
    methods = _ordered(ok, registry)
    shapes = list(dict.fromkeys(r["shape"] for r in ok))
    worst: dict[tuple[str, str], dict[str, Any]] = {}
    for r in ok:
        key = (r["method"], r["shape"])
        old = worst.get(key)
        rank = (bool(r.get("inexact")), r.get("rel_err") or 0.0)
        if old is None or rank > (bool(old.get("inexact")), old.get("rel_err") or 0.0):
            worst[key] = r
    header = ["shape"] + methods
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * len(methods)]
    for shape in shapes:
        cells = [shape]
        for m in methods:
            r = worst.get((m, shape))
            if r is None:
                cells.append("")
                continue
            text = fmt(r.get("rel_err"), ".2g")
            if r.get("int_check"):
                text += "; int " + ("exact" if r["int_check"] == "exact" else
                                    "±1" if r["int_check"].startswith("exact up to") else
                                    f"**differs**: {r['int_check']}")
            if r.get("inexact"):
                text = f"**{INEXACT_MARK} inexact on this CPU**: " + text
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def conv_target(rows: Sequence[dict[str, Any]]) -> tuple[int, int, list[str]]:
    """The issue's target, lowbit_conv >= CONV_TARGET x the fastest peer (every peer that ran,
    inexact ones included): (points met, points compared, the points that miss it)."""
    by_key = {(r["method"], r["shape"], r["batch"], r["threads"]): r for r in rows}
    order = {shape: i for i, shape in enumerate(dict.fromkeys(r["shape"] for r in rows))}
    points = sorted({(r["shape"], r["batch"], r["threads"]) for r in rows if r["method"] == "lowbit_conv"},
                    key=lambda p: (p[1], p[2], order[p[0]]))
    met, total, misses = 0, 0, []
    for shape, batch, threads in points:
        ratio = conv_speed_ratio(by_key.get(("lowbit_conv", shape, batch, threads)),
                                 [by_key.get((p, shape, batch, threads)) for p in CONV_PEERS])
        if ratio is None:
            continue
        total += 1
        if ratio[0] >= CONV_TARGET:
            met += 1
        else:
            misses.append(f"{shape} batch {batch}, {threads} thread{'s' if threads > 1 else ''}: "
                          f"{ratio[0]:.2f}x vs {ratio[1]}")
    return met, total, misses


def conv_to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The conv suite's tables: per (batch, threads) the median µs per call of each method and
    the speed ratios; the target summary; correctness; the whole-model tables; notes."""
    layer = [r for r in rows if r["method"] in CONV_METHODS]
    model = [r for r in rows if r["method"] in MODEL_METHODS]
    lines: list[str] = []
    if layer:
        shapes = list(dict.fromkeys(r["shape"] for r in layer))
        lines += ["### Shapes", ""] + _shape_table(shapes) + [""]
        for batch, threads in sorted({(r["batch"], r["threads"]) for r in layer}):
            part = [r for r in layer if (r["batch"], r["threads"]) == (batch, threads)]
            lines += [f"### Batch {batch}, {threads} thread{'s' if threads > 1 else ''}: µs per "
                      "call (median)", ""] + _conv_table(part, CONV_METHODS, CONV_COMPARISONS,
                                                         "shape") + [""]
        lines += [f"Ratios are the fastest named peer's time over lowbit's (> 1: lowbit faster); "
                  f"{INEXACT_MARK} marks a result that is not what the operation should give "
                  "(see Correctness); such peers still count as the fastest peer.", ""]
        met, total, misses = conv_target(layer)
        if total:
            verdict = "**met**" if met == total else "**not met**"
            lines += [f"### Target: lowbit_conv at least {CONV_TARGET}x the fastest peer on every "
                      "shape", "",
                      f"{verdict}: {met} of {total} (shape, batch, threads) points reach "
                      f"{CONV_TARGET}x against the fastest of every peer that ran (integer-only "
                      "peers on pre-quantized input included)."]
            if misses:
                lines += ["", "Points below the target:", ""] + [f"- {m}" for m in misses]
            lines.append("")
        lines += ["### Correctness", "",
                  "Worst relative RMS error against the float64 convolution of the float "
                  "operands, over every batch and thread count; for integer results also the "
                  "check against an exact int64 NumPy convolution of the same integer operands "
                  "(int32 outputs must match exactly; requantized uint8 outputs within ±1 of "
                  "the exact real value's rounding). Relative errors above "
                  "0.05 or a differing integer result mark the method "
                  f"{INEXACT_MARK} inexact on this CPU.", ""] + _correctness_table(layer, CONV_METHODS) + [""]
    for name in dict.fromkeys(r["shape"] for r in model):
        lines += [f"### Whole model: {name}", "",
                  f"{MODEL_DESCRIPTIONS.get(name, name)}; seeded random weights. µs per call "
                  "(median); rel_err against the float64 model.", ""]
        rows_m = [r for r in model if r["shape"] == name]
        for threads in sorted({r["threads"] for r in rows_m}):
            part = [dict(r, shape=f"batch {r['batch']}") for r in rows_m
                    if r["threads"] == threads]
            lines += [f"{threads} thread{'s' if threads > 1 else ''}:", ""]
            lines += _conv_table(part, MODEL_METHODS, MODEL_COMPARISONS, "batch")
            errs = [f"{r['method']} batch {r['batch']}: {fmt(r.get('rel_err'), '.2g')}"
                    for r in part if r.get("status") == "ok"]
            lines += ["", "rel_err: " + "; ".join(errs) if errs else "", ""]
    notes = _notes([r for r in rows if r["method"] in ALL_CONV_METHODS])
    if notes:
        lines += ["Notes:", ""] + notes + [""]
    return "\n".join(lines)


def plot_conv(rows: Sequence[dict[str, Any]], path: str) -> bool:
    """lowbit_conv's speed ratio against each peer (peer time / lowbit time, log scale), one
    subplot per (batch, threads), a bar group per shape, a dashed line at the target; False
    (with a message) without matplotlib or results."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot", file=sys.stderr)
        return False
    ok = [r for r in _ok(rows) if r["method"] in CONV_METHODS]
    by_key = {(r["method"], r["shape"], r["batch"], r["threads"]): r for r in ok}
    panels = sorted({(r["batch"], r["threads"]) for r in ok if r["method"] == "lowbit_conv"})
    peers = [m for m in CONV_PEERS if any(r["method"] == m for r in ok)]
    if not panels or not peers:
        print("no lowbit_conv and peer results: skipping the plot", file=sys.stderr)
        return False
    cols = min(2, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, squeeze=False, figsize=(7.5 * cols, 4.2 * nrows))
    colors = dict(zip(CONV_PEERS, ["tab:blue", "tab:purple", "tab:cyan", "tab:green",
                                   "tab:olive", "tab:gray"]))
    width = 0.8 / len(peers)
    for ax, (batch, threads) in zip(axes.flat, panels):
        shapes = list(dict.fromkeys(r["shape"] for r in ok if (r["batch"], r["threads"]) == (batch, threads)))
        for i, peer in enumerate(peers):
            xs, ys = [], []
            for j, shape in enumerate(shapes):
                ratio = conv_speed_ratio(by_key.get(("lowbit_conv", shape, batch, threads)),
                                         [by_key.get((peer, shape, batch, threads))])
                if ratio is not None:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    ys.append(ratio[0])
            # from 1 (as fast as lowbit) up (lowbit faster) or down (the peer faster)
            ax.bar(xs, [y - 1.0 for y in ys], width, bottom=1.0, color=colors.get(peer), label=peer)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(CONV_TARGET, color="tab:red", linestyle="--", linewidth=0.8,
                   label=f"target {CONV_TARGET}x")
        ax.set_yscale("log")
        from matplotlib.ticker import FuncFormatter
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xticks(range(len(shapes)), shapes, rotation=30, ha="right", fontsize="small")
        ax.set(title=f"batch {batch}, {threads} thread{'s' if threads > 1 else ''}",
               ylabel="peer time / lowbit_conv time")
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize="small")
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

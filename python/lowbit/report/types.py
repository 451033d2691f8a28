"""The data of a before/after report (Report, ReportRow) and its error metrics (SQNR, cosine):
the bottom of lowbit.report. The table, markdown and plot code here needs neither PyTorch nor
matplotlib (plot imports matplotlib when called)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np



def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(sum(ref^2) / sum((ref - test)^2)), in float64; inf when they are equal."""
    r = np.asarray(reference, np.float64).reshape(-1)
    t = np.asarray(test, np.float64).reshape(-1)
    noise = float(np.sum((r - t) ** 2))
    signal = float(np.sum(r ** 2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10 * math.log10(signal / noise)


def cosine(reference: np.ndarray, test: np.ndarray) -> float:
    r = np.asarray(reference, np.float64).reshape(-1)
    t = np.asarray(test, np.float64).reshape(-1)
    denom = float(np.linalg.norm(r) * np.linalg.norm(t))
    if denom == 0:
        return 1.0 if float(np.linalg.norm(r - t)) == 0 else 0.0
    return float(np.dot(r, t) / denom)


@dataclass
class ReportRow:
    name: str
    kind: str                      # the quantized module's description, "model" for the total
    bytes_float: int
    bytes_quantized: int
    ms_float: Optional[float]      # None: not timed (the "other layers" row)
    ms_quantized: Optional[float]
    sqnr_db: Optional[float]
    cosine: Optional[float]
    rows: Optional[int] = None     # the input rows the layer saw (product of leading dims)


@dataclass
class Report:
    layers: list[ReportRow]
    total: ReportRow
    batch: str                     # the example input shapes
    threads: int
    isa: str
    notes: list[str] = field(default_factory=list)
    outputs: str = ""              # the model outputs the model row compares, by name
    # (SQNR dB, cosine) of each output the model row compares, by the names in `outputs`
    output_metrics: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _cells(self, row: ReportRow) -> list[str]:
        def ms(v: Optional[float]) -> str:
            return "" if v is None else f"{v:.3f}"

        def num(v: Optional[float], fmt: str) -> str:
            return "" if v is None else ("inf" if v == math.inf else format(v, fmt))
        speed = ("" if row.ms_float is None or not row.ms_quantized
                 else f"{row.ms_float / row.ms_quantized:.2f}x")
        return [row.name, row.kind, f"{row.bytes_float / 1024:,.1f}",
                f"{row.bytes_quantized / 1024:,.1f}", ms(row.ms_float), ms(row.ms_quantized),
                speed, num(row.sqnr_db, ".1f"), num(row.cosine, ".6f")]

    HEADER = ["layer", "quantized as", "float KiB", "quant KiB", "float ms", "quant ms",
              "speedup", "SQNR dB", "cosine"]

    def _table(self) -> list[list[str]]:
        return [self._cells(r) for r in self.layers] + [self._cells(self.total)]

    def title(self) -> str:
        return (f"lowbit report: inputs {self.batch}, {self.threads} thread(s), kernels "
                f"{self.isa}")

    def __str__(self) -> str:
        table = [self.HEADER] + self._table()
        widths = [max(len(r[i]) for r in table) for i in range(len(self.HEADER))]
        lines = [self.title()]
        for i, r in enumerate(table):
            if i == len(table) - 1:
                lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
            lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                                   for j, (c, w) in enumerate(zip(r, widths))).rstrip())
            if i == 0:
                lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        lines += self.notes
        return "\n".join(lines)

    def to_markdown(self) -> str:
        lines = [self.title(), "", "| " + " | ".join(self.HEADER) + " |",
                 "|" + "---|" * 2 + "---:|" * (len(self.HEADER) - 2)]
        for r in self._table():
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        lines += [""] + self.notes
        return "\n".join(lines) + "\n"

    def plot(self, path: str) -> None:
        """Bars per layer: bytes, latency, SQNR. Needs matplotlib."""
        try:
            # The Figure API, not pyplot: no global backend switch in the caller's session.
            from matplotlib.figure import Figure
        except ImportError as e:
            raise ImportError("Report.plot needs matplotlib: pip install matplotlib") from e
        rows = [r for r in self.layers if r.ms_float is not None]
        names = [r.name for r in rows]
        y = np.arange(len(rows))
        fig = Figure(figsize=(15, 1.2 + 0.28 * max(len(rows), 4)))
        axes = fig.subplots(1, 3, sharey=True)
        h = 0.4
        axes[0].barh(y - h / 2, [r.bytes_float / 1024 for r in rows], h, label="float32")
        axes[0].barh(y + h / 2, [r.bytes_quantized / 1024 for r in rows], h, label="lowbit")
        axes[0].set_xlabel("KiB")
        axes[1].barh(y - h / 2, [r.ms_float or 0 for r in rows], h, label="float32")
        axes[1].barh(y + h / 2, [r.ms_quantized or 0 for r in rows], h, label="lowbit")
        axes[1].set_xlabel("ms per call")
        sq = [min(r.sqnr_db, 99.0) if r.sqnr_db is not None else 0 for r in rows]
        axes[2].barh(y, sq, 0.6, color="tab:green")
        axes[2].set_xlabel("SQNR dB (layer alone)")
        axes[0].set_yticks(y, names, fontsize=7)
        axes[0].invert_yaxis()
        axes[0].legend(loc="best", fontsize=7)
        fig.suptitle(self.title(), fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)

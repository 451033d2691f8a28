"""Before/after report of a conversion: bytes, latency and output error, per layer and for the
whole model. `report` measures PyTorch models (through lowbit.torch) and NumPy models
(lowbit.nn.Model, through lowbit._measure); the table, markdown and plot code here needs
neither PyTorch nor matplotlib (plot imports matplotlib when called)."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ._checks import check_bool


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


def report(float_model: Any, quantized_model: Any, example_inputs: Any, *,
           threads: Optional[int] = None, repeats: int = 20, verbose: bool = True,
           output: Any = None) -> Report:
    """Compares a float model and its lowbit-converted copy on `example_inputs`.

    Per lowbit layer: bytes, median latency at the shape the layer sees during the example run,
    and the output error of the layer alone (the float layer's input fed to both). Model row:
    the model's bytes, end-to-end latency, and the error of the outputs `output` selects.

    Parameters
    ----------
    float_model, quantized_model
        Two torch.nn.Module (the copy converted by lowbit.torch), or two NumPy models: a
        lowbit.nn.Model / Sequential each (the quantized one typically
        `model.with_layers(lowbit.quantize_weights(model.layers, config))`), or a (forward,
        layers) pair each, run as forward(layers, *inputs). A NumPy model's lowbit layers are
        compared with the float model's layers of the same name. Reporting NumPy models never
        imports PyTorch.
    example_inputs
        One input, a tuple of positional arguments, or a dict of keyword arguments
        (model(**inputs), as HF-style models take input_ids=..., attention_mask=...). Every
        model call gets its own copy (dicts, lists and tuples anew; the tensors or arrays too
        for the calls whose outputs are compared), so a model that writes into its input dict,
        as a SentenceTransformer does, cannot pass its outputs to the other model; the report's
        inputs line describes them as given.
    threads
        lowbit's (and PyTorch's) thread count during the measurement (restored after).
    repeats
        Timed calls per measurement (the median is reported).
    verbose
        Print the table.
    output
        What the model row compares. None: every floating-point output together (the note
        names them, e.g. token_embeddings, sentence_embedding, and gives each one's SQNR and
        cosine, also in Report.output_metrics); a key of a dict / ModelOutput output
        (output="sentence_embedding"), an index of a tuple output, or a function of the output.

    Returns
    -------
    Report
        The table (str(), to_markdown(), plot()). A quantized model without lowbit layers
        (quantize_ kept every layer float, e.g. with skip_slower=True) gives a report with no
        layer rows and a note saying nothing was quantized.

    Raises
    ------
    TypeError
        Models of different kinds, or objects that are not models; verbose is not a bool; an
        output= the model's output cannot take.
    ValueError
        A lowbit layer of the quantized model is not in the float model; the same model given
        twice; output= names a key or index the output does not have.
    """
    verbose = check_bool(verbose, "verbose")
    torch = sys.modules.get("torch")   # only a model that is already a torch object needs it
    if torch is not None and isinstance(float_model, torch.nn.Module):
        if not isinstance(quantized_model, torch.nn.Module):
            raise TypeError("report compares a torch.nn.Module with a torch.nn.Module, got "
                            f"{type(quantized_model).__name__}")
        from .torch.measure import measure
        result = measure(float_model, quantized_model, example_inputs, threads, repeats, output)
    else:
        from ._measure import as_model, measure_numpy
        float_np, quantized_np = as_model(float_model), as_model(quantized_model)
        if float_np is None or quantized_np is None:
            bad = float_model if float_np is None else quantized_model
            raise TypeError("report compares two torch.nn.Module models, or two NumPy models "
                            "(lowbit.nn.Model / Sequential, or (forward, layers) pairs); got "
                            f"{type(bad).__name__}")
        result = measure_numpy(float_np, quantized_np, example_inputs, threads, repeats, output)
    if verbose:
        print(result)
    return result

"""`lowbit.report`: the before/after table of a conversion (bytes, latency and output error,
per layer and for the whole model). The data types are lowbit.report.types, the measurement of
NumPy models lowbit.report.measure; PyTorch models are measured by the adapter lowbit.torch
registers (lowbit._core.adapters), so nothing here imports PyTorch."""
from __future__ import annotations

from typing import Any, Optional

from .._core import adapters
from .._core.checks import check_bool
from .measure import as_model, measure_numpy
from .types import Report, ReportRow, cosine, sqnr_db


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
    adapter = adapters.find("report", float_model)   # a torch.nn.Module: lowbit.torch's
    if adapter is not None:
        if not adapter.claims(quantized_model):
            raise TypeError(f"report compares a {adapter.kind} with a {adapter.kind}, got "
                            f"{type(quantized_model).__name__}")
        result = adapter.measure(float_model, quantized_model, example_inputs, threads, repeats,
                                 output)
    else:
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


__all__ = ["report", "Report", "ReportRow", "cosine", "sqnr_db"]

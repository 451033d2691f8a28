"""Measurements in worker subprocesses: spawning workers, the worker's command line, the grid.

Every (method, shape, threads) measurement runs in its own worker subprocess, so each library's
thread pool has the cores to itself and thread counts set through the environment (OpenBLAS,
OpenMP, MKL) take effect before the library loads. A worker prints its result as one JSON line
after RESULT_MARKER; both ends of that protocol (run_method_batch, main) live here. How workers
are started without importing lowbit: see __main__.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Optional, Sequence

from .measure import PACK_KINDS, describe_error, measure_conv, measure_many, measure_pack
from .methods import METHODS, PEERS, method_available, missing_requirements
from .methods_conv import ALL_CONV_METHODS, conv_missing_requirements
from .report import fmt, to_markdown
from .timing import DRAM_PROBE_BYTES, DRAM_PROBE_REPEATS, MIN_SECONDS, dram_bandwidth

RESULT_MARKER = "LOWBIT_BENCH_RESULT "
THREAD_ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
WORKER_TIMEOUT = 3600.0
HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
WORKER_SCRIPT = os.path.join(HARNESS_DIR, "__main__.py")

Shape = tuple[int, int]


# ----------------------------------------------------------------------------- parent side


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in THREAD_ENV_VARS:
        env[name] = str(threads)
    search_path = _this_lowbit_search_path()
    if search_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (search_path, env.get("PYTHONPATH")) if p)
    return env


def _this_lowbit_search_path() -> Optional[str]:
    """The folder holding the lowbit package this harness lives in, when this process imported
    that package (the worker then imports the same one); None: the worker imports the installed
    lowbit, e.g. when bench/compare.py loaded the harness from a checkout by path."""
    module = sys.modules.get("lowbit")
    lowbit_dir = os.path.dirname(HARNESS_DIR)
    origin = getattr(module, "__file__", None)
    if origin and os.path.dirname(os.path.abspath(origin)) == lowbit_dir:
        return os.path.dirname(lowbit_dir)
    return None


def _run_worker(args: list[str], threads: int, timeout: float) -> Any:
    """Runs a worker and returns its result payload; raises with the worker's last stderr line
    when it printed none (crash, timeout, import failure)."""
    # By path, not `-m lowbit.benchmark`, so the worker needn't import lowbit: see __main__.
    cmd = [sys.executable, WORKER_SCRIPT, *args]
    proc = subprocess.run(cmd, env=worker_env(threads), capture_output=True, text=True,
                          timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:]
    raise RuntimeError(f"worker exited with code {proc.returncode}: {' '.join(tail) or 'no output'}")


def _row(method: str, M: int, K: int, N: int, threads: int, cold: bool,
         result: dict[str, Any]) -> dict[str, Any]:
    row = {"method": method, "M": M, "K": K, "N": N, "threads": threads, "cold": cold, **result}
    if row.get("status") == "ok":
        row["gops"] = 2.0 * M * K * N / row["seconds"] / 1e9
        if cold:
            row["gbps"] = row["weight_bytes"] / row["seconds"] / 1e9
    return row


def run_method_batch(method: str, Ms: Sequence[int], K: int, N: int, threads: int, cold: bool,
                     repeats: int, min_seconds: float = MIN_SECONDS,
                     timeout: float = WORKER_TIMEOUT) -> list[dict[str, Any]]:
    """One worker subprocess times `method` at every M of (K, N) (weights built once)."""
    missing = missing_requirements(method)
    if missing:
        return [_row(method, M, K, N, threads, cold,
                     {"status": "skipped", "error": f"{', '.join(missing)} not installed"})
                for M in Ms]
    args = ["--worker", "--method", method, "--M", ",".join(map(str, Ms)), "--K", str(K),
            "--N", str(N), "--threads", str(threads), "--repeats", str(repeats),
            "--min-seconds", str(min_seconds)] + (["--cold"] if cold else [])
    try:
        results = _run_worker(args, threads, timeout)
    except Exception as e:
        results = [{"M": M, "status": "error", "error": describe_error(e)} for M in Ms]
    return [_row(method, r.pop("M"), K, N, threads, cold, r) for r in results]


def run_method_subprocess(method: str, M: int, K: int, N: int, threads: int, cold: bool,
                          repeats: int) -> dict[str, Any]:
    """One row: `method` timed at (M, K, N) in its own subprocess with `threads` threads."""
    return run_method_batch(method, [M], K, N, threads, cold, repeats)[0]


def _conv_row(method: str, shape: str, batch: int, threads: int,
              result: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "shape": shape, "batch": batch, "threads": threads, **result}


def run_conv_batch(method: str, shape: str, batches: Sequence[int], threads: int, repeats: int,
                   min_seconds: float = MIN_SECONDS,
                   timeout: float = WORKER_TIMEOUT) -> list[dict[str, Any]]:
    """The conv suite's run_method_batch: one worker subprocess times `method` on one layer
    shape (a methods_conv shape id or spec) or model name at every batch size."""
    missing = conv_missing_requirements(method)
    if missing:
        return [_conv_row(method, shape, b, threads,
                          {"status": "skipped", "error": f"{', '.join(missing)} not installed"})
                for b in batches]
    args = ["--worker", "--method", method, "--conv", shape, "--M", ",".join(map(str, batches)),
            "--threads", str(threads), "--repeats", str(repeats), "--min-seconds", str(min_seconds)]
    try:
        results = _run_worker(args, threads, timeout)
    except Exception as e:
        results = [{"batch": b, "status": "error", "error": describe_error(e)} for b in batches]
    return [_conv_row(method, shape, r.pop("batch"), threads, r) for r in results]


def run_conv_grid(shapes: Sequence[str], batches: Sequence[int], threads_list: Sequence[int],
                  methods: Sequence[str], repeats: int, min_seconds: float = MIN_SECONDS,
                  progress: bool = True, rounds: int = 1, models: Sequence[str] = (),
                  model_methods: Sequence[str] = (),
                  model_batches: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Rows for every (threads, shape, method, batch), one worker per (threads, shape, method),
    then the whole-model rows for every (threads, model, model method, model batch). rounds > 1:
    as run_grid (method order rotated, each point's median round kept)."""
    unknown = [m for m in list(methods) + list(model_methods) if m not in ALL_CONV_METHODS]
    if unknown:
        raise ValueError(f"unknown conv methods {unknown}; known: {list(ALL_CONV_METHODS)}")
    all_rows: list[dict[str, Any]] = []
    for r in range(rounds):
        def rotated(names: Sequence[str]) -> list[str]:
            k = r % len(names) if names else 0
            return list(names[k:]) + list(names[:k])
        jobs = [(m, shape, tuple(batches), t) for t in threads_list for shape in shapes
                for m in rotated(methods)]
        if model_batches:
            jobs += [(m, model, tuple(model_batches), t) for t in threads_list for model in models
                     for m in rotated(model_methods)]
        for n, (method, shape, job_batches, t) in enumerate(jobs, 1):
            start = time.perf_counter()
            batch = run_conv_batch(method, shape, job_batches, t, repeats, min_seconds)
            all_rows += batch
            errors = sorted({row["error"] for row in batch if row.get("status") != "ok"})
            _progress(f"[round {r + 1}/{rounds}: {n}/{len(jobs)}] {method} {shape} threads={t}: "
                      f"{time.perf_counter() - start:.1f} s {'; '.join(errors)}", progress)
    return median_of_rounds(all_rows, key=_conv_key) if rounds > 1 else all_rows


def _conv_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("method"), row.get("shape"), row.get("batch"), row.get("threads"))


def run_dram_subprocess(threads: int, nbytes: int = DRAM_PROBE_BYTES,
                        repeats: int = DRAM_PROBE_REPEATS) -> dict[str, Any]:
    """A "dram_read" row: measure_dram_bandwidth() in a subprocess with `threads` threads."""
    args = ["--dram", "--threads", str(threads), "--bytes", str(nbytes), "--repeats", str(repeats)]
    try:
        result = _run_worker(args, threads, WORKER_TIMEOUT)
    except Exception as e:
        result = {"status": "error", "error": describe_error(e)}
    return {"method": "dram_read", "threads": threads, **result}


def run_pack_subprocess(K: int, N: int, threads: int, repeats: int,
                        min_seconds: float = MIN_SECONDS) -> list[dict[str, Any]]:
    """One row per measure.PACK_KINDS entry: pack_weight of an (N, K) weight in a subprocess
    with `threads` threads."""
    args = ["--pack", "--K", str(K), "--N", str(N), "--threads", str(threads),
            "--repeats", str(repeats), "--min-seconds", str(min_seconds)]
    try:
        results = _run_worker(args, threads, WORKER_TIMEOUT)
    except Exception as e:
        results = [{"method": kind, "status": "error", "error": describe_error(e)}
                   for kind in PACK_KINDS]
    return [{"K": K, "N": N, "threads": threads, **r} for r in results]


def _progress(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def run_grid(Ms: Sequence[int], shapes: Sequence[Shape], threads_list: Sequence[int],
             methods: Sequence[str], repeats: int, cold_shapes: Sequence[Shape] = (),
             min_seconds: float = MIN_SECONDS, progress: bool = True,
             rounds: int = 1, pack_shapes: Sequence[Shape] = ()) -> list[dict[str, Any]]:
    """Rows for every (threads, shape, method, M), then cold M=1 rows for `cold_shapes` with
    one "dram_read" row per thread count (the bandwidth the cold rows are compared to), then
    pack_weight rows (measure.PACK_KINDS) for every (threads, pack shape).

    With rounds > 1 the whole grid runs that many times, the method order rotated each round
    so every method meets the machine in every state; each point keeps the round with the
    median time (a shared machine drifts over minutes; a median of rounds is robust to it)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {list(METHODS)}")
    all_rows: list[dict[str, Any]] = []
    for r in range(rounds):
        order = list(methods[r % len(methods):]) + list(methods[:r % len(methods)])
        jobs = [(m, tuple(Ms), K, N, t, False) for t in threads_list for K, N in shapes for m in order]
        jobs += [(m, (1,), K, N, t, True) for t in threads_list for K, N in cold_shapes for m in order]
        if cold_shapes:
            for t in threads_list:
                all_rows.append(run_dram_subprocess(t))
                _progress(f"DRAM read, {t} thread(s): {fmt(all_rows[-1].get('gbps'), '.1f')} GB/s",
                          progress)
        for n, (method, job_Ms, K, N, t, cold) in enumerate(jobs, 1):
            start = time.perf_counter()
            batch = run_method_batch(method, job_Ms, K, N, t, cold, repeats, min_seconds)
            all_rows += batch
            errors = sorted({row["error"] for row in batch if row.get("status") != "ok"})
            _progress(f"[round {r + 1}/{rounds}: {n}/{len(jobs)}] {method} K={K} N={N} threads={t}"
                      f"{' cold' if cold else ''}: {time.perf_counter() - start:.1f} s "
                      f"{'; '.join(errors)}", progress)
        for t in threads_list:
            for K, N in pack_shapes:
                batch = run_pack_subprocess(K, N, t, repeats, min_seconds)
                all_rows += batch
                _progress(f"[round {r + 1}/{rounds}] pack_weight K={K} N={N} threads={t}: "
                          + ", ".join(f"{row['method']} {fmt(row.get('gbps'), '.2f')} GB/s"
                                      for row in batch), progress)
    return median_of_rounds(all_rows) if rounds > 1 else all_rows


def _linear_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("method"), row.get("M"), row.get("K"), row.get("N"), row.get("threads"),
            row.get("cold", False))


def median_of_rounds(rows: Sequence[dict[str, Any]],
                     key: Callable[[dict[str, Any]], tuple[Any, ...]] = _linear_key
                     ) -> list[dict[str, Any]]:
    """One row per point (`key`: the int8/int4 grid's by default): the round with the median
    time (the highest bandwidth for the DRAM probe, as its best case is the machine's
    bandwidth); all rounds' values kept alongside."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    merged = []
    for group in groups.values():
        ok = [row for row in group if row.get("status") == "ok"]
        if not ok:
            merged.append(group[0])
            continue
        if group[0].get("method") == "dram_read":
            best = max(ok, key=lambda row: row.get("gbps") or 0.0)
            merged.append({**best, "rounds_gbps": [row.get("gbps") for row in ok]})
            continue
        ok.sort(key=lambda row: row["seconds"])
        merged.append({**ok[(len(ok) - 1) // 2], "rounds_seconds": [row["seconds"] for row in ok]})
    return merged


def default_threads() -> int:
    try:
        import lowbit
        return lowbit.get_num_threads()
    except Exception:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


SHORT_MS = (1, 16, 256)
SHORT_SHAPES: tuple[Shape, ...] = ((1536, 384), (4096, 4096))


def run_short(Ms: Sequence[int] = SHORT_MS, shapes: Sequence[Shape] = SHORT_SHAPES,
              repeats: int = 3, progress: bool = False,
              threads: Optional[int] = None) -> list[dict[str, Any]]:
    """`lowbit bench`: NumPy float32, lowbit.linear and the installed peers at `threads`
    (default lowbit's thread count), at every M and (K, N) shape; prints the markdown table
    and returns the rows."""
    methods = ["numpy_f32", "lowbit_linear"] + [p for p in PEERS if method_available(p)]
    threads = default_threads() if threads is None else threads
    print(f"lowbit bench: {threads} thread(s), methods {', '.join(methods)} ...", flush=True)
    start = time.perf_counter()
    rows = run_grid(Ms, shapes, [threads], methods, repeats, progress=progress)
    print(to_markdown(rows))
    print(f"({time.perf_counter() - start:.0f} s; full comparison: bench/compare.py)")
    return rows


# ----------------------------------------------------------------------------- worker side


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _worker_main(args: argparse.Namespace) -> dict[str, Any] | list[dict[str, Any]]:
    warnings.filterwarnings("ignore")   # peers' deprecation chatter; stdout stays one JSON line
    if args.pack:
        try:
            return measure_pack(args.K, args.N, args.threads, args.repeats, args.min_seconds)
        except Exception as e:
            return [{"method": kind, "status": "error", "error": describe_error(e)}
                    for kind in PACK_KINDS]
    if args.dram:
        with contextlib.suppress(Exception):
            import lowbit
            lowbit.set_num_threads(args.threads)
        gbps, source = dram_bandwidth(args.bytes, args.repeats)
        return {"status": "ok", "gbps": gbps, "source": source}
    if args.conv:
        try:
            return measure_conv(args.method, args.conv, _int_list(args.M), args.threads,
                                args.repeats, args.min_seconds)
        except Exception as e:
            return [{"batch": b, "status": "error", "error": describe_error(e)}
                    for b in _int_list(args.M)]
    try:
        return measure_many(args.method, _int_list(args.M), args.K, args.N, args.threads,
                            args.cold, args.repeats, args.min_seconds)
    except Exception as e:
        return [{"M": M, "status": "error", "error": describe_error(e)} for M in _int_list(args.M)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="lowbit benchmark (no options: the short run)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dram", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pack", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=list(METHODS) + list(ALL_CONV_METHODS),
                        help=argparse.SUPPRESS)
    parser.add_argument("--conv", default=None, help=argparse.SUPPRESS)   # conv shape / model
    parser.add_argument("--M", default="1", help=argparse.SUPPRESS)
    parser.add_argument("--K", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--N", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=DRAM_PROBE_BYTES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.dram or args.pack:
        print(RESULT_MARKER + json.dumps(_worker_main(args)), flush=True)
    else:
        run_short()
    return 0

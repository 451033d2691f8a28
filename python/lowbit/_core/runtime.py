"""CPU information, ISA selection and the thread count (process-wide settings)."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Any, Iterator

from . import _C

_isa_lock = threading.Lock()


def started_as_cli() -> bool:
    """Whether this process is the `lowbit` command: its console script (whose file is named
    lowbit, lowbit.exe or lowbit-script.py) or `python -m lowbit.cli`. The package's import
    runs before the command's code, so the import asks this to turn a bad LOWBIT_ISA into one
    line for the command while other importers keep their exception."""
    main = sys.modules.get("__main__")
    script = os.path.basename(getattr(main, "__file__", None) or "")
    if re.sub(r"(-script\.pyw?|\.exe)$", "", script) == "lowbit":
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "lowbit.cli"


def cpu_info() -> dict[str, Any]:
    """What runs here: the kernel paths and threads.

    Returns
    -------
    dict
        ``isa``: the active path; ``available``: the usable paths, in order of preference (best
        last); ``unavailable``: every other path lowbit knows, with the reason it cannot run here
        (for ``amx``: the CPU bits, the OS's XCR0 tile state or a refused Linux permission);
        ``test_only``: paths never chosen by default (``amx_emu``: the AMX kernels on a software
        model of the tile unit); ``features``: CPU feature names; ``threads``,
        ``default_threads``, ``max_threads``.

    Raises
    ------
    None
        It only reads what the import found out about the CPU.
    """
    return dict(_C.cpu_info())


def get_isa() -> str:
    """The kernel path every call uses now (set by LOWBIT_ISA, `set_isa` or `use_isa`, else
    the best one this CPU has).

    Returns
    -------
    str
        A name of ``cpu_info()["available"]``, e.g. "avx2" or "avx512vnni".

    Raises
    ------
    None
        The path was resolved when lowbit was imported (a bad LOWBIT_ISA raised then).
    """
    return str(_C.get_isa())


def set_isa(name: str) -> None:
    """Force a kernel path for the whole process; RuntimeError if the CPU lacks it.

    Parameters
    ----------
    name
        A path lowbit knows (``cpu_info()["available"]``, or one of
        ``cpu_info()["unavailable"]``, which raises).

    Raises
    ------
    TypeError
        name is not a str.
    ValueError
        name is no path lowbit knows (the message lists them); the path stays as it was.
    RuntimeError
        The CPU (or the OS) lacks the path, for the reason ``cpu_info()["unavailable"]``
        gives; the path stays as it was.
    """
    if not isinstance(name, str):
        raise TypeError(f"ISA name must be a str, got {type(name).__name__}")
    _C.set_isa(name)


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[str]:
    """Run the block on one kernel path (a name of ``cpu_info()["available"]``), then restore.

    The setting is process-wide: other Python threads running at the same time use it too.

    Parameters
    ----------
    name
        The kernel path for the block, as in `set_isa`.

    Returns
    -------
    context manager
        Yields `name`; on leaving the block (an exception included) the previous path is set
        again.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As `set_isa`, on entering the block, before anything changes.
    """
    with _isa_lock:
        previous = get_isa()
        set_isa(name)
    try:
        yield name
    finally:
        with _isa_lock:
            set_isa(previous)


def get_num_threads() -> int:
    """Threads each kernel call may use (see `set_num_threads`; under lowbit.torch's OpenMP
    runtime a call also stays within the calling thread's OpenMP setting).

    Returns
    -------
    int
        The setting: by default the CPUs in this process's affinity mask.

    Raises
    ------
    None
        It reads a process-wide setting.
    """
    return int(_C.get_num_threads())


def set_num_threads(n: int) -> None:
    """Threads used by every kernel (default: the CPUs in this process's affinity mask).

    Parameters
    ----------
    n
        1 <= n <= `cpu_info()["max_threads"]`: 4 per CPU (the larger of the affinity mask and
        the machine's CPU count), at least 16. Threads beyond the CPUs only take turns on them
        (every kernel is compute- or memory-bound), so a larger n is refused rather than
        starting hundreds of OS threads.

    Raises
    ------
    TypeError
        n is not an int (bool included).
    ValueError
        n < 1 or n above the cap.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"number of threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    cap = int(_C.max_num_threads())
    if n > cap:   # checked here too: a Python int beyond C int would not reach the C++ check
        raise ValueError(f"number of threads must be at most {cap} ({_C.THREADS_PER_CPU} per "
                         f"CPU, at least {_C.MIN_THREAD_CAP}), got {n}")
    _C.set_num_threads(n)


def parallel_runtime() -> str:
    """Whose threads run lowbit's parallel kernels: "lowbit" (its own pool) or
    "openmp:<library>" (PyTorch's OpenMP threads; see lowbit.torch.use_torch_threads).

    Returns
    -------
    str
        "lowbit", or "openmp:" followed by the path of the OpenMP runtime library in use.

    Raises
    ------
    None
        It reads a process-wide setting.
    """
    return str(_C.parallel_runtime())

"""Run lowbit's kernels on PyTorch's OpenMP threads.

Two thread pools on the same cores take turns: after each of its ops PyTorch's OpenMP workers
spin, waiting for the next op, and lowbit's workers get a core only when they stop (MiniLM at
2 threads: the 36 lowbit linears take 19 ms alone and 46 ms inside the model). So inside a
PyTorch process lowbit hands its parallel jobs to the OpenMP runtime PyTorch already loaded;
its spinning workers pick them up at once, and torch.set_num_threads also caps lowbit.
"""
from __future__ import annotations

import os
import re
import warnings

import torch

from .._core import _C
from .._core.checks import check_bool

# libgomp.so.1, libgomp-a34b3233.so.1 (a wheel's vendored copy), libiomp5.so, libomp.so.5
_OPENMP_LIBRARY = re.compile(r"^lib(gomp|iomp5|omp)(-[0-9a-f]+)?\.so(\.\d+)*$")


def _loaded_openmp_library() -> str | None:
    """Path of the OpenMP runtime mapped into this process, preferring PyTorch's own copy."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if ".so" in line}
    except OSError:
        return None
    candidates = sorted(p for p in paths if _OPENMP_LIBRARY.search(os.path.basename(p)))
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    candidates.sort(key=lambda p: not p.startswith(torch_dir))
    return candidates[0] if candidates else None


def _torch_uses_openmp() -> bool:
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def use_torch_threads(enabled: bool = True) -> bool:
    """Run lowbit's parallel kernels on PyTorch's OpenMP threads (enabled=True, the default
    once lowbit.torch is imported; LOWBIT_TORCH_THREADS=0 turns that off) or on lowbit's own.

    On PyTorch's threads a call uses the smaller of lowbit.get_num_threads() and the calling
    thread's OpenMP setting, which is torch.get_num_threads() once PyTorch has run an op in that
    thread (OpenMP settings are per thread: a new Python thread starts at the core count).

    Parameters
    ----------
    enabled
        True: PyTorch's OpenMP threads; False: lowbit's own pool.

    Returns
    -------
    bool
        Whether PyTorch's threads are now in use: False if PyTorch was not built with OpenMP
        or its runtime cannot be found (or enabled=False). `lowbit.parallel_runtime()` names
        the runtime in use.

    Raises
    ------
    TypeError
        enabled is not a bool.
    RuntimeError
        In a process forked after the runtime was in use (the parent's OpenMP threads do not
        exist in the child).
    """
    if not check_bool(enabled, "enabled"):
        _C._use_own_threads()
        return False
    library = _loaded_openmp_library() if _torch_uses_openmp() else None
    if library is None:
        _C._use_own_threads()
        return False
    _C._use_openmp_runtime(library)
    return True


def _enable_by_default() -> None:
    """Called on `import lowbit.torch`: a runtime that cannot be used must not break the import."""
    if os.environ.get("LOWBIT_TORCH_THREADS", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    try:
        use_torch_threads(True)
    except RuntimeError as e:
        _C._use_own_threads()
        warnings.warn(f"lowbit keeps its own threads: PyTorch's OpenMP runtime is not usable "
                      f"({e}); inside PyTorch models set OMP_WAIT_POLICY=PASSIVE", RuntimeWarning,
                      stacklevel=3)

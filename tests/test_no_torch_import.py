"""lowbit never imports PyTorch: only lowbit.torch does."""
from __future__ import annotations

import subprocess
import sys


def test_import_lowbit_does_not_import_torch():
    code = ("import sys, lowbit, lowbit.observers, lowbit.config, lowbit.io, lowbit.report; "
            "import lowbit.conversion, lowbit.schemes; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)

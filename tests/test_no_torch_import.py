"""lowbit never imports PyTorch: only lowbit.torch does."""
from __future__ import annotations

import subprocess
import sys


def test_import_lowbit_does_not_import_torch():
    code = ("import sys, lowbit, lowbit.quant.observers, lowbit.quant.config, lowbit.io, "
            "lowbit.report; import lowbit.nn.conversion, lowbit.packed_ops; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_report_does_not_import_torch():
    """lowbit.report on NumPy models (and the conversion it measures) stays torch-free."""
    code = ("import sys, numpy as np, lowbit\n"
            "rng = np.random.default_rng(0)\n"
            "w = rng.standard_normal((64, 32)).astype(np.float32)\n"
            "model = lowbit.nn.Sequential({'fc': lowbit.nn.Linear(w), 'act': lowbit.nn.relu})\n"
            "q = model.with_layers(lowbit.quantize_weights(model.layers, "
            "lowbit.Int8DynamicConfig()))\n"
            "rep = lowbit.report(model, q, rng.standard_normal((4, 32)).astype(np.float32), "
            "repeats=1, verbose=False)\n"
            "assert rep.layers[0].name == 'fc' and rep.to_markdown()\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n")
    subprocess.run([sys.executable, "-c", code], check=True)

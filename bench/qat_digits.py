#!/usr/bin/env python3
"""QAT on scikit-learn's 8x8 digits: a small MLP (64 -> 24 -> 24 -> 10) trained in float32,
then quantized to 4 bits by post-training quantization (quantize_) and by QAT (prepare_qat, a
few epochs of fine-tuning with fake quantization, convert). Test accuracy per seed of the
float model, int4 PTQ, the fake-quantized QAT model and the converted QAT model. Writes
docs/qat.md:

    pip install torch==2.13.0 scikit-learn
    python bench/qat_digits.py [--seeds 0,1,2] [--out docs/qat.md]

tests/test_qat.py runs this same experiment (through conftest.bench_module) and checks that QAT
recovers most of what PTQ loses. Fixed seeds, one thread for training: reruns on one machine
give the same table.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lowbit
from lowbit.torch import convert, prepare_qat, quantize_

SIZES = (64, 24, 24, 10)   # small hidden layers: 4-bit rounding costs accuracy here
SEEDS = tuple(range(8))
TEST_SIZE = 500
BATCH = 64
FLOAT_EPOCHS, FLOAT_LR = 40, 1e-2
QAT_EPOCHS, QAT_LR = 5, 1e-3
# group_size above every in_features: one group per row (64 or 24 inputs; quantize_ notes it)
CONFIG = lowbit.Int4DynamicConfig(group_size=1024)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "qat.md"

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def digits() -> Split:
    """(x_train, x_test, y_train, y_test): pixels scaled to [0, 1], a stratified split of 500
    test images (the split tools/train_demo_model.py uses). Needs scikit-learn."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    parts = train_test_split(x, d.target.astype(np.int64), test_size=TEST_SIZE,
                             stratify=d.target, random_state=0)
    return tuple(torch.from_numpy(p) for p in parts)  # type: ignore[return-value]


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
          seed: int) -> None:
    """Adam on cross-entropy, mini-batches of BATCH in a seeded order; leaves the model in
    eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


@dataclass
class SeedResult:
    seed: int
    float: float           # test accuracies
    ptq: float
    qat_fake: float
    qat_converted: float
    agreement: float       # fraction of test images where fake-quant and converted QAT agree


def run_seed(seed: int, data: Split, config: lowbit.Int4DynamicConfig = CONFIG) -> SeedResult:
    xtr, xte, ytr, yte = data
    model = mlp(seed)
    train(model, xtr, ytr, FLOAT_EPOCHS, FLOAT_LR, seed)
    ptq = copy.deepcopy(model)
    quantize_(ptq, config)
    qat = copy.deepcopy(model)
    prepare_qat(qat, config)
    train(qat, xtr, ytr, QAT_EPOCHS, QAT_LR, seed)
    fake = predict(qat, xte)
    convert(qat)
    converted = predict(qat, xte)

    def acc(pred: torch.Tensor) -> float:
        return float((pred == yte).float().mean())
    return SeedResult(seed, acc(predict(model, xte)), acc(predict(ptq, xte)), acc(fake),
                      acc(converted), float((fake == converted).float().mean()))


def run(seeds: tuple[int, ...] = SEEDS, config: lowbit.Int4DynamicConfig = CONFIG
        ) -> list[SeedResult]:
    data = digits()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # float training reproducible run to run
    try:
        return [run_seed(s, data, config) for s in seeds]
    finally:
        torch.set_num_threads(threads)


def mean(results: list[SeedResult], field: str) -> float:
    return float(np.mean([getattr(r, field) for r in results]))


def table(results: list[SeedResult]) -> list[str]:
    """Markdown rows: one per seed, then the mean."""
    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"
    lines = ["| seed | float32 | int4 PTQ | QAT, fake quant | QAT, converted | fake / converted "
             "agree |", "|---:|---:|---:|---:|---:|---:|"]
    rows = [(str(r.seed), r.float, r.ptq, r.qat_fake, r.qat_converted, r.agreement)
            for r in results]
    rows.append(("**mean**",) + tuple(mean(results, f) for f in
                                      ("float", "ptq", "qat_fake", "qat_converted", "agreement")))
    for name, *values in rows:
        lines.append(f"| {name} | " + " | ".join(pct(v) for v in values) + " |")
    return lines


def markdown(results: list[SeedResult], seconds: float) -> str:
    loss = mean(results, "float") - mean(results, "ptq")
    regained = mean(results, "qat_converted") - mean(results, "ptq")
    n_train = 1797 - TEST_SIZE
    lines = [
        "# QAT: accuracy on scikit-learn's digits", "",
        f"Generated by `python bench/qat_digits.py` in {seconds:.0f} s "
        f"({platform.python_implementation()} {platform.python_version()}, torch "
        f"{torch.__version__}, lowbit {lowbit.__version__}, kernels {lowbit.get_isa()}). "
        "Fixed seeds and one training thread: reruns on one machine give the same table; "
        "tests/test_qat.py runs the same experiment on seeds 0-2.", "",
        "## Setup", "",
        f"- Data: the 1797 8x8 digits, pixels / 16, stratified split of {n_train} training and "
        f"{TEST_SIZE} test images (`random_state=0`).",
        f"- Model: MLP {' -> '.join(str(s) for s in SIZES)} with ReLU, `torch.manual_seed(seed)` "
        "initialization; small hidden layers, so 4-bit rounding costs accuracy.",
        f"- Float training: Adam, lr {FLOAT_LR:g}, {FLOAT_EPOCHS} epochs, batches of {BATCH}.",
        f"- Config: `{type(CONFIG).__name__}(group_size={CONFIG.group_size})`: "
        f"{CONFIG.describe()}; the group is larger than every layer's in_features, so each row "
        "is one group (64 or 24 weights, one scale).",
        "- int4 PTQ: `quantize_(copy, config)` of the float model.",
        f"- QAT: `prepare_qat(copy, config)`, then Adam, lr {QAT_LR:g}, {QAT_EPOCHS} more epochs "
        "with fake-quantized weights and activations (straight-through gradients, max|w| "
        "scales); \"fake quant\" is that model's accuracy, \"converted\" the accuracy after "
        "`convert` (the lowbit W4A8 kernels).", "",
        "## Test accuracy (500 images)", "",
    ] + table(results) + [
        "",
        f"PTQ loses {100 * loss:.1f} points on average; QAT regains {100 * regained:.1f} of "
        f"them. The converted model computes what the fake-quantized one simulated, up to float "
        "rounding of the activation sums (its predictions agree on the share of images in the "
        "last column).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=",".join(str(s) for s in SEEDS),
                        help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    t0 = time.perf_counter()
    results = run(seeds)
    text = markdown(results, time.perf_counter() - t0)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Train the float32 MLP shipped with lowbit for `lowbit demo` (64 -> 512 -> 512 -> 10, ReLU).

Data: scikit-learn's 8x8 digits, pixels scaled to [0, 1], stratified 1297 train / 500 test split.
Training is plain NumPy (mini-batch Adam, cross-entropy) with fixed seeds, so reruns give the
same file. scikit-learn is only needed here, never when lowbit runs.

Usage:  python tools/train_demo_model.py [--out python/lowbit/data/digits_mlp.npz]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
LAYER_SIZES = (64, 512, 512, 10)
TEST_SIZE = 500
EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "python" / "lowbit" / "data" / "digits_mlp.npz"

Params = list[np.ndarray]  # [w0, b0, w1, b1, w2, b2], weights shaped (out_features, in_features)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=SEED)
    return x_train, x_test, y_train, y_test


def init_params(rng: np.random.Generator) -> Params:
    params: Params = []
    for fan_in, fan_out in zip(LAYER_SIZES[:-1], LAYER_SIZES[1:]):
        # He initialisation keeps ReLU activations from shrinking or exploding layer to layer.
        params.append((rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(np.float32))
        params.append(np.zeros(fan_out, dtype=np.float32))
    return params


def forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Returns the logits and the input of every layer (kept for the backward pass)."""
    inputs = []
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        inputs.append(h)
        h = h @ params[2 * i].T + params[2 * i + 1]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
    return h, inputs


def gradients(params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Mean cross-entropy loss and its gradient with respect to every parameter."""
    logits, inputs = forward(params, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean())

    grad_out = probs
    grad_out[np.arange(n), y] -= 1.0
    grad_out /= n
    grads: Params = [np.empty(0)] * len(params)
    for i in reversed(range(len(params) // 2)):
        w = params[2 * i]
        grads[2 * i] = grad_out.T @ inputs[i] + WEIGHT_DECAY * w
        grads[2 * i + 1] = grad_out.sum(axis=0)
        if i > 0:
            # The input of layer i is a ReLU output: the gradient passes only where it was > 0.
            grad_out = (grad_out @ w) * (inputs[i] > 0)
    return loss, grads


def train(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Params:
    params = init_params(rng)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(x.shape[0])
        losses = []
        for start in range(0, x.shape[0], BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            loss, grads = gradients(params, x[batch], y[batch])
            losses.append(loss)
            step += 1
            for p, g, m_i, v_i in zip(params, grads, m, v):
                m_i *= beta1
                m_i += (1 - beta1) * g
                v_i *= beta2
                v_i += (1 - beta2) * g * g
                m_hat = m_i / (1 - beta1 ** step)
                v_hat = v_i / (1 - beta2 ** step)
                p -= (LEARNING_RATE * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            print(f"epoch {epoch + 1:3d}  loss {np.mean(losses):.4f}")
    return params


def accuracy(params: Params, x: np.ndarray, y: np.ndarray) -> float:
    logits, _ = forward(params, x)
    return float((logits.argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    x_train, x_test, y_train, y_test = load_split()
    params = train(x_train, y_train, rng)
    params = [p.astype(np.float32) for p in params]
    train_acc = accuracy(params, x_train, y_train)
    test_acc = accuracy(params, x_test, y_test)
    print(f"train accuracy {train_acc:.4f}  test accuracy {test_acc:.4f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    names = ("w0", "b0", "w1", "b1", "w2", "b2")
    np.savez_compressed(
        args.out,
        **dict(zip(names, params)),
        x_test=x_test.astype(np.float32),
        y_test=y_test.astype(np.int64),
        float_accuracy=np.float32(test_acc),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()

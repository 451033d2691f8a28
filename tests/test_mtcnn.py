"""lowbit's int8 convolutions on a real pretrained CNN: facenet-pytorch's MTCNN face detector
(PNet / RNet / ONet, the weights shipped in facenet_pytorch/data) on skimage's astronaut.

- quantize_(Int8DynamicConfig) replaces every nn.Conv2d (and nn.Linear) of the three nets;
  prepare / calibration on two pyramid scales / convert (Int8StaticConfig) does PNet's;
- PNet's face-probability map at pyramid scales correlates >= 0.99 with float's (dynamic and
  static), the box regression stays close;
- the whole detector (pyramid -> PNet -> NMS -> RNet -> NMS -> ONet) finds the same face with
  the quantized nets: IoU >= 0.9, probabilities within 0.02;
- the quantized PNet is deterministic (eager, no torch.compile): bit-identical outputs from run
  to run and on every kernel path this CPU offers.

facenet_pytorch itself is never imported (its package imports torchvision); tests/_mtcnn_nets.py
holds copies of its three nets and of its detect_face pipeline."""
from __future__ import annotations

import copy
import importlib.util
import time

import numpy as np
import pytest

from conftest import importorskip  # noqa: E402  (LOWBIT_REQUIRE_OPTIONAL=1: fail, not skip)

torch = importorskip("torch")
skimage_data = importorskip("skimage.data")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.torch as lt  # noqa: E402
from conftest import ISAS  # noqa: E402
from _mtcnn_nets import (NETS, detect, facenet_data_dir, imresample, iou, load_net,  # noqa: E402
                         normalize)

DATA_DIR = facenet_data_dir()
if DATA_DIR is None:
    if importlib.util.find_spec("facenet_pytorch") is None:
        importorskip("facenet_pytorch")   # absent: the usual optional-dependency skip
    pytest.skip("facenet_pytorch is installed without its data/{pnet,rnet,onet}.pt",
                allow_module_level=True)

SIDE = 512
SCALES = (0.6, 0.425, 0.3)      # the first three pyramid levels of MTCNN (minsize 20, 0.709)
CALIBRATION_SCALES = (0.6, 0.3)
MIN_CORRELATION = 0.99
MIN_IOU = 0.9
MAX_PROB_DIFF = 0.02


def scaled(image: torch.Tensor, scale: float) -> torch.Tensor:
    """A pyramid level as facenet makes it: area-resized to int(side * scale + 1), normalised."""
    size = int(SIDE * scale + 1)
    return normalize(imresample(image, (size, size)))


@pytest.fixture(scope="module")
def image():
    rgb = skimage_data.astronaut()
    assert rgb.shape == (SIDE, SIDE, 3) and rgb.dtype == np.uint8
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float().contiguous()


@pytest.fixture(scope="module")
def float_nets():
    return {name: load_net(name, DATA_DIR) for name in NETS}


@pytest.fixture(scope="module")
def dynamic_nets(float_nets):
    nets = {}
    for name, net in float_nets.items():
        q = copy.deepcopy(net)
        convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
        linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
        summary = lt.quantize_(q, lowbit.Int8DynamicConfig())
        print(f"{name}: {summary}")
        assert sorted(summary.replaced_names) == sorted(convs + linears)
        assert not summary.skipped and not summary.kept
        for n in convs:
            assert type(q.get_submodule(n)) is lt.QuantizedConv2d, n
        assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in q.modules())
        nets[name] = q.eval()
    return nets


@pytest.fixture(scope="module")
def static_pnet(float_nets, image):
    q = copy.deepcopy(float_nets["pnet"])
    prepared = lt.prepare(q, lowbit.Int8StaticConfig())
    convs = [n for n, m in float_nets["pnet"].named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(prepared.replaced_names) == sorted(convs)
    with torch.no_grad():
        for scale in CALIBRATION_SCALES:
            q(scaled(image, scale))
    summary = lt.convert(q)
    print(f"pnet static: {summary}")
    assert sorted(summary.replaced_names) == sorted(convs)
    for n in convs:
        layer = q.get_submodule(n)
        assert type(layer) is lt.QuantizedConv2d and layer.scheme == "static", n
        assert layer.input_scale is not None and layer.input_zero_point is not None
    assert not any(isinstance(m, nn.Conv2d) for m in q.modules())
    return q.eval()


def pnet_outputs(net, x):
    with torch.no_grad():
        reg, probs = net(x)
    return reg, probs[0, 1]


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_pnet_face_probability_map(kind, float_nets, dynamic_nets, static_pnet, image):
    qnet = dynamic_nets["pnet"] if kind == "dynamic" else static_pnet
    worst = 1.0
    for scale in SCALES:
        x = scaled(image, scale)
        reg_f, prob_f = pnet_outputs(float_nets["pnet"], x)
        reg_q, prob_q = pnet_outputs(qnet, x)
        assert reg_q.shape == reg_f.shape and prob_q.shape == prob_f.shape
        assert torch.isfinite(reg_q).all() and torch.isfinite(prob_q).all()
        corr = float(np.corrcoef(prob_f.flatten().numpy(), prob_q.flatten().numpy())[0, 1])
        reg_diff = float((reg_f - reg_q).abs().max())
        prob_diff = float((prob_f - prob_q).abs().max())
        print(f"{kind} scale {scale}: map {tuple(prob_f.shape)}, correlation {corr:.5f}, "
              f"max |prob diff| {prob_diff:.4f}, max |box regression diff| {reg_diff:.4f}")
        assert corr >= MIN_CORRELATION, f"{kind} scale {scale}: correlation {corr:.5f}"
        assert reg_diff < 0.25, f"{kind} scale {scale}: box regression off by {reg_diff}"
        worst = min(worst, corr)
    print(f"{kind}: worst correlation {worst:.5f}")


def _median_ms(net, x, runs=10):
    times = []
    with torch.no_grad():
        net(x)
        for _ in range(runs):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def test_pnet_is_deterministic_eager(float_nets, dynamic_nets, static_pnet, image):
    """Plain eager calls (no torch.compile) under no_grad: two runs give the same bits, and so
    does every kernel path (the integer sums are exact, the float epilogue is fixed)."""
    x = scaled(image, SCALES[0])
    for name, net in (("dynamic", dynamic_nets["pnet"]), ("static", static_pnet)):
        reg1, prob1 = pnet_outputs(net, x)
        reg2, prob2 = pnet_outputs(net, x)
        assert torch.equal(reg1, reg2) and torch.equal(prob1, prob2), name
        for isa in ISAS:
            with lowbit.use_isa(isa):
                reg3, prob3 = pnet_outputs(net, x)
            assert torch.equal(reg1, reg3) and torch.equal(prob1, prob3), (name, isa)
    t_float = _median_ms(float_nets["pnet"], x)
    t_dynamic = _median_ms(dynamic_nets["pnet"], x)
    t_static = _median_ms(static_pnet, x)
    print(f"PNet forward at scale {SCALES[0]} {tuple(x.shape)}, median of 10: float "
          f"{t_float:.2f} ms, int8 dynamic {t_dynamic:.2f} ms, int8 static {t_static:.2f} ms "
          f"({torch.get_num_threads()} threads, lowbit path {lowbit.get_isa()})")


def _match(reference, other, label):
    """Every confident (prob > 0.9) box of `reference` has a box of `other` with IoU >= 0.9
    and a probability within 0.02."""
    for box in reference[reference[:, 4] > 0.9]:
        assert len(other), f"{label}: no box for {box}"
        ious = [iou(box, b) for b in other]
        best = int(np.argmax(ious))
        diff = abs(float(box[4]) - float(other[best, 4]))
        print(f"{label}: {np.round(box[:4], 1)} p={box[4]:.6f} -> "
              f"{np.round(other[best, :4], 1)} p={other[best, 4]:.6f}: IoU {ious[best]:.4f}, "
              f"|prob diff| {diff:.2e}")
        assert ious[best] >= MIN_IOU, f"{label}: IoU {ious[best]:.4f}"
        assert diff <= MAX_PROB_DIFF, f"{label}: probability differs by {diff}"


@pytest.fixture(scope="module")
def float_boxes(float_nets, image):
    boxes = detect(image, float_nets["pnet"], float_nets["rnet"], float_nets["onet"])
    print(f"float boxes:\n{boxes}")
    assert len(boxes) >= 1
    confident = boxes[boxes[:, 4] > 0.9]
    assert len(confident) == 1, boxes   # one face in the astronaut picture
    x1, y1, x2, y2, _ = confident[0]
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 210, confident[0]   # where her face is
    return boxes


@pytest.mark.parametrize("pnet_kind", ["dynamic", "static"])
def test_detection_matches_float(pnet_kind, float_boxes, dynamic_nets, static_pnet, image):
    pnet = dynamic_nets["pnet"] if pnet_kind == "dynamic" else static_pnet
    boxes = detect(image, pnet, dynamic_nets["rnet"], dynamic_nets["onet"])
    print(f"int8 ({pnet_kind} PNet, dynamic RNet / ONet) boxes:\n{boxes}")
    _match(float_boxes, boxes, f"float -> int8 ({pnet_kind} PNet)")
    _match(boxes, float_boxes, f"int8 ({pnet_kind} PNet) -> float")

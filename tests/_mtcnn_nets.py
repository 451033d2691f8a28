"""MTCNN (facenet-pytorch 2.6.0's PNet / RNet / ONet and its detect_face pipeline) for
tests/test_mtcnn.py, written without importing facenet_pytorch: its package __init__ imports
torchvision (facenet_pytorch/models/utils/detect_face.py needs torchvision.transforms and
torchvision.ops.batched_nms), which lowbit's test environment does not have. Only the
pretrained state dicts in facenet_pytorch/data/ are read.

The three nets are copied layer for layer from facenet_pytorch/models/mtcnn.py (the same
module and parameter names, so its state dicts load strictly); `detect` is detect_face for
one image with a NumPy NMS in place of torchvision's batched_nms."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate


def facenet_data_dir() -> Optional[Path]:
    """facenet_pytorch/data (holding pnet.pt, rnet.pt, onet.pt) without importing the package
    (find_spec of a top-level package only locates it), or None when absent."""
    try:
        spec = importlib.util.find_spec("facenet_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data = Path(location) / "data"
        if all((data / f"{n}.pt").is_file() for n in ("pnet", "rnet", "onet")):
            return data
    return None


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        a = self.softmax4_1(self.conv4_1(x))
        b = self.conv4_2(x)
        return b, a


class RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        a = self.softmax5_1(self.dense5_1(x))
        b = self.dense5_2(x)
        return b, a


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        a = self.softmax6_1(self.dense6_1(x))
        b = self.dense6_2(x)
        c = self.dense6_3(x)
        return b, c, a


NETS = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def load_net(name: str, data_dir: Path) -> nn.Module:
    """One pretrained net in eval mode (the .pt files are plain state dicts of tensors, which
    torch.load's default weights_only=True reads)."""
    net = NETS[name]()
    net.load_state_dict(torch.load(data_dir / f"{name}.pt", map_location="cpu"))
    return net.eval()


# ---------------------------------------------------------------------------------------------
# the detection pipeline (facenet_pytorch.models.utils.detect_face.detect_face, one image)
# ---------------------------------------------------------------------------------------------
def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125


def imresample(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return interpolate(img, size=size, mode="area")


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "Union"
        ) -> np.ndarray:
    """Greedy NMS (facenet's nms_numpy): indices kept, best score first."""
    if boxes.size == 0:
        return np.empty(0, np.int64)
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")
    keep = []
    while order.size:
        i = order[-1]
        keep.append(i)
        rest = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if method == "Min":
            o = inter / np.minimum(area[i], area[rest])
        else:
            o = inter / (area[i] + area[rest] - inter)
        order = rest[o <= threshold]
    return np.asarray(keep, np.int64)


def _nms_t(boxes: torch.Tensor, threshold: float, method: str = "Union") -> torch.Tensor:
    return torch.from_numpy(nms(boxes[:, :4].numpy(), boxes[:, 4].numpy(), threshold, method))


def generate_bounding_box(reg: torch.Tensor, probs: torch.Tensor, scale: float, thresh: float
                          ) -> torch.Tensor:
    """PNet cells with probability >= thresh as (x1, y1, x2, y2, score, reg0..reg3) rows in
    image coordinates (one image: reg (1, 4, h, w), probs (h, w))."""
    stride, cellsize = 2, 12
    mask = probs >= thresh
    inds = mask.nonzero()
    score = probs[mask]
    r = reg[0][:, mask].permute(1, 0)
    bb = inds.to(reg.dtype).flip(1)
    q1 = ((stride * bb + 1) / scale).floor()
    q2 = ((stride * bb + cellsize - 1 + 1) / scale).floor()
    return torch.cat([q1, q2, score.unsqueeze(1), r], dim=1)


def bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def rerec(boxes: torch.Tensor) -> torch.Tensor:
    """Squares the boxes around their centres."""
    out = boxes.clone()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.max(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def crops(img: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The boxes' pixels (clipped to the image, as facenet's pad()), resized to size x size and
    normalised. img: (1, 3, H, W) float in 0..255."""
    h, w = img.shape[2:]
    b = boxes.trunc().int().numpy()
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
    out = []
    for k in range(len(b)):
        if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
            out.append(imresample(img[:, :, y[k] - 1:ey[k], x[k] - 1:ex[k]], (size, size)))
    return normalize(torch.cat(out, dim=0))


def pyramid_scales(h: int, w: int, minsize: int = 20, factor: float = 0.709) -> list[float]:
    m = 12.0 / minsize
    minl = min(h, w) * m
    scales, s = [], m
    while minl >= 12:
        scales.append(s)
        s *= factor
        minl *= factor
    return scales


def detect(img: torch.Tensor, pnet: nn.Module, rnet: nn.Module, onet: nn.Module,
           minsize: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
           factor: float = 0.709) -> np.ndarray:
    """MTCNN on one image (1, 3, H, W) float32 in 0..255: (n, 5) boxes (x1, y1, x2, y2, prob),
    as facenet's detect_face returns them (landmarks left out)."""
    h, w = img.shape[2:]
    with torch.no_grad():
        # stage 1: PNet over the pyramid, NMS per scale then over all scales
        found = []
        for scale in pyramid_scales(h, w, minsize, factor):
            data = normalize(imresample(img, (int(h * scale + 1), int(w * scale + 1))))
            reg, probs = pnet(data)
            boxes = generate_bounding_box(reg, probs[0, 1], scale, thresholds[0])
            found.append(boxes[_nms_t(boxes, 0.5)])
        boxes = torch.cat(found, dim=0)
        boxes = boxes[_nms_t(boxes, 0.7)]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                             boxes[:, 4]], dim=1)
        boxes = rerec(boxes)
        # stage 2: RNet on 24x24 crops
        if len(boxes):
            reg, probs = rnet(crops(img, boxes, 24))
            score = probs[:, 1]
            keep = score > thresholds[1]
            boxes = torch.cat([boxes[keep, :4], score[keep, None]], dim=1)
            reg = reg[keep]
            pick = _nms_t(boxes, 0.7)
            boxes = rerec(bbreg(boxes[pick], reg[pick]))
        # stage 3: ONet on 48x48 crops
        if len(boxes):
            reg, _, probs = onet(crops(img, boxes, 48))
            score = probs[:, 1]
            keep = score > thresholds[2]
            boxes = bbreg(torch.cat([boxes[keep, :4], score[keep, None]], dim=1), reg[keep])
            boxes = boxes[_nms_t(boxes, 0.7, "Min")]
    return boxes.numpy().reshape(-1, 5)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes (continuous coordinates)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0

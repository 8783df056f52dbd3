"""dlib's CNN face detector (``mmod_human_face_detector.dat``) in PyTorch.

The same detections as ``dlib.cnn_face_detection_model_v1(path)(image, 0)``, with the network
read from dlib's file by :func:`iffse_lib.dlibnet.build_mmod_detector`. The steps are dlib's:

1. ``input_rgb_image_pyramid<pyramid_down<6>>``: the photo, (rgb - mean) / 256, and every 5/6
   downscale of it (each level bilinearly resized from the one before, corners aligned) tiled
   into one zero-padded tensor (``dlib::impl::compute_tiled_image_pyramid_details``);
2. the network, whose single output channel scores an 80 x 80 window at every 8th pixel;
3. ``loss_mmod_::to_label``: every position scoring above the threshold becomes a window centred
   on the input point it maps to, mapped back from its pyramid level to the photo, rounded to
   whole pixels, then greedy non-maximum suppression in descending score order with the
   overlap test stored in the file.

dlib's Python binding upsamples the photo before detecting when asked to; this port does not (yet):
``upsample`` must be 0. Torch is imported with :mod:`iffse_lib.dlibnet`, on first use.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import config
from .models import model_path
from .records import Box

#: pyramid_down<6>: each level is 5/6 the size of the one before.
PYRAMID_N = 6


def _pyramid_rects(nr: int, nc: int, padding: int, outer_padding: int):
    """Where dlib puts each pyramid level in the tiled tensor: inclusive (left, top, right,
    bottom) rectangles, and the tensor's rows and columns (dlib/image_transforms/image_pyramid.h,
    compute_tiled_image_pyramid_details, for pyramid_down<6>)."""
    rate = (PYRAMID_N - 1.0) / PYRAMID_N
    sizes = [(nc, nr)]
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < 5:
            break
        sizes.append((nc, nr))
    w0, h0 = sizes[0]
    total_height = sum(h + padding for _, h in sizes) - 2 * padding
    height = prev_width = 0
    for w, h in sizes:  # the first column goes on until the rest fit beside it
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= total_height - h0:
            break
        height += h + padding
        prev_width = w
    height -= padding
    rows, cols = height + 2 * outer_padding, w0 + 2 * outer_padding

    rects = []
    y = outer_padding
    while y < height + outer_padding and len(rects) < len(sizes):
        w, h = sizes[len(rects)]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
    y -= padding
    first = rects[0]
    while len(rects) < len(sizes):  # the second column: right-aligned, upwards from the bottom
        w, h = sizes[len(rects)]
        right, bottom = outer_padding + w0 - 1, y - 1
        rect = (right - (w - 1), bottom - (h - 1), right, bottom)
        if not (rect[2] < first[0] or rect[0] > first[2] or rect[3] < first[1] or rect[1] > first[3]):
            break  # it would overlap the photo itself
        rects.append(rect)
        y -= h + padding
    return rects, rows, cols


def _nearest_rect(rects, x: float, y: float) -> int:
    best, best_dist = 0, math.inf
    for i, (l, t, r, b) in enumerate(rects):
        if l <= x <= r and t <= y <= b:
            return i
        dist = math.hypot(x - min(max(x, l), r), y - min(max(y, t), b))
        if dist < best_dist:
            best, best_dist = i, dist
    return best


def _overlaps(a, b, iou_thresh: float, covered_thresh: float) -> bool:
    """dlib's test_box_overlap on inclusive integer rectangles."""
    def area(l, t, r, b):
        return max(0, r - l + 1) * max(0, b - t + 1)

    inner = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    if inner == 0:
        return False
    outer = area(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    return (inner / outer > iou_thresh or inner / area(*a) > covered_thresh
            or inner / area(*b) > covered_thresh)


@functools.cache
def _detector(path: str, device: str):
    from . import dlibnet

    net, options = dlibnet.build_mmod_detector(path)
    net = dlibnet.fold_affine(net).to(device)
    if device == "cpu":
        import torch

        net = net.to(memory_format=torch.channels_last)
        net.channels_last = True
    return net, options


def detect_rects(image: np.ndarray, threshold: float = 0.0, device: str = "cpu"):
    """dlib's detections as it returns them: [(left, top, right, bottom, score)], inclusive
    integer corners (which may lie outside the photo), highest score first."""
    import torch

    image = np.require(image, requirements=["C", "W"])  # torch warns on read-only arrays
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    net, opt = _detector(str(model_path(config.CNN_DETECTOR_FILE)), device)
    rects, rows, cols = _pyramid_rects(image.shape[0], image.shape[1], opt.pyramid_padding,
                                       opt.pyramid_outer_padding)
    with torch.inference_mode():
        levels = torch.zeros((1, 3, rows, cols), dtype=torch.float32, device=device)
        photo = net.normalize(torch.from_numpy(image).to(device)[None]).float()
        l, t, r, b = rects[0]
        levels[:, :, t:b + 1, l:r + 1] = photo
        for (pl, pt, pr, pb), (l, t, r, b) in zip(rects, rects[1:]):
            levels[:, :, t:b + 1, l:r + 1] = torch.nn.functional.interpolate(
                levels[:, :, pt:pb + 1, pl:pr + 1], size=(b - t + 1, r - l + 1),
                mode="bilinear", align_corners=True)
        if net.channels_last:
            levels = levels.contiguous(memory_format=torch.channels_last)
        scores = net.body(levels)[0, 0].float().cpu().numpy()

    ys, xs = np.nonzero(scores > threshold)
    found = []
    half_w, half_h = (opt.window[0] - 1) / 2, (opt.window[1] - 1) / 2
    up = PYRAMID_N / (PYRAMID_N - 1.0)
    for y, x in zip(ys, xs):
        px, py = opt.stride * x + opt.offset, opt.stride * y + opt.offset
        level = _nearest_rect(rects, px, py)
        corners = [px - half_w - rects[level][0], py - half_h - rects[level][1],
                   px + half_w - rects[level][0], py + half_h - rects[level][1]]
        for _ in range(level):  # pyramid_down<6>::point_up
            corners = [c * up + 0.3 for c in corners]
        found.append(tuple(math.floor(c + 0.5) for c in corners) + (float(scores[y, x]),))
    found.sort(key=lambda d: -d[4])
    kept = []
    for det in found:
        if not any(_overlaps(k[:4], det[:4], opt.nms_iou_thresh, opt.nms_percent_covered_thresh)
                   for k in kept):
            kept.append(det)
    return kept


def detect_boxes(image: np.ndarray, upsample: int = 0, threshold: float = 0.0,
                 device: str = "cpu") -> list[tuple[Box, float]]:
    """Face boxes and scores from dlib's CNN detector, highest score first, clipped to the photo
    (right and bottom exclusive, as :func:`iffse_lib.faces.detect_boxes` gives them)."""
    if upsample != 0:
        raise ValueError("the PyTorch CNN detector does not upsample yet: use upsample=0")
    h, w = np.asarray(image).shape[:2]
    return [(Box(max(0, l), max(0, t), min(w, r + 1), min(h, b + 1)), score)
            for l, t, r, b, score in detect_rects(image, threshold, device)]

"""The GPU front end of the pipeline: dlib's CNN face detector and dlib's face-chip alignment in
PyTorch, so that photos go to chips (and :class:`~iffse_lib.embed_torch.TorchEmbedder` vectors)
without leaving the device but for the landmarks.

Detection: ``mmod_human_face_detector.dat`` in PyTorch (:func:`detect_boxes`, :func:`detect_rects`).

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
``upsample`` must be 0. One photo at a time.

Alignment (:func:`face_chips`): ``dlib.get_face_chip``'s chips from 68 landmarks. The geometry
comes from ``dlib.get_face_chip_details``; the pixels from ``affine_grid``/``grid_sample``, with
dlib's rules (a pixel whose bilinear neighbourhood leaves the photo is black, values truncated)
and, for faces more than twice the chip's size, dlib's pyramid_down<2> levels of the crop.

Torch is imported with :mod:`iffse_lib.dlibnet`, on first use.
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


# ----------------------------------------------------------------------------------------
# Alignment: dlib's get_face_chip with the pixel work in PyTorch


def _rect_down(rect):
    """pyramid_down<2>::rect_down on a (left, top, right, bottom) drectangle."""
    l, t, r, b = rect
    return (l / 2 - 1.25, t / 2 - 0.75, r / 2 - 1.25, b / 2 - 0.75)


def _darea(rect) -> float:
    l, t, r, b = rect
    return 0.0 if (t > b or l > r) else (r - l + 1) * (b - t + 1)


def _rotate(cx, cy, x, y, angle):
    c, s = math.cos(angle), math.sin(angle)
    return c * (x - cx) - s * (y - cy) + cx, s * (x - cx) + c * (y - cy) + cy


def _rotated_corners(rect, angle):
    l, t, r, b = rect
    cx, cy = (l + r) / 2, (t + b) / 2
    return [_rotate(cx, cy, x, y, angle) for x, y in ((l, t), (r, t), (l, b), (r, b))]


def _chip_plan(landmarks: np.ndarray, height: int, width: int, size: int, padding: float):
    """What dlib's extract_image_chip does for one face (dlib/image_transforms/interpolation.h):
    the crop it works in (inclusive integer box), the pyramid_down<2> level of that crop it
    samples (-1: the crop itself) and the chip -> source pixel affine map."""
    import dlib

    parts = dlib.points([dlib.point(int(x), int(y)) for x, y in np.rint(landmarks)])
    lo, hi = np.floor(landmarks.min(axis=0)), np.ceil(landmarks.max(axis=0))
    det = dlib.full_object_detection(dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])), parts)
    d = dlib.get_face_chip_details(det, size, padding)
    rect = (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom())
    angle, rows, cols = d.angle, d.rows, d.cols

    grow, r = 2.0, _rect_down(rect)  # the margin dlib keeps around the crop for its pyramid
    while _darea(r) > rows * cols:
        r, grow = _rect_down(r), grow * 2 + 2
    xs, ys = zip(*_rotated_corners(rect, angle))
    box = (max(min(xs) - grow, 0), max(min(ys) - grow, 0),
           min(max(xs) + grow, width - 1), min(max(ys) + grow, height - 1))
    box = tuple(math.floor(v + 0.5) for v in box)  # drectangle -> rectangle

    level, r = -1, (rect[0] - box[0], rect[1] - box[1], rect[2] - box[0], rect[3] - box[1])
    while _darea(_rect_down(r)) > rows * cols:
        level, r = level + 1, _rect_down(r)
    (x0, y0), (x1, y1), (x2, y2), _ = _rotated_corners(r, angle)
    # chip (0,0), (cols-1,0), (0,rows-1) -> the rotated tl, tr, bl corners
    affine = np.array([[(x1 - x0) / (cols - 1), (x2 - x0) / (rows - 1), x0],
                       [(y1 - y0) / (cols - 1), (y2 - y0) / (rows - 1), y0]])
    return box, level, affine, (rows, cols)


def _pyramid_down_2(x):
    """pyramid_down<2> on (1, 3, H, W) float tensors of whole numbers 0-255: the 5x5 filter
    [1 4 6 4 1]^2 / 256 centred on every other pixel from (2, 2), truncated as dlib does."""
    import torch

    if x.shape[2] <= 8 or x.shape[3] <= 8:
        return x[:, :, :0, :0]
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device)
    rows = torch.nn.functional.conv2d(x, k.view(1, 1, 1, 5).repeat(3, 1, 1, 1), stride=(1, 2), groups=3)
    both = torch.nn.functional.conv2d(rows, k.view(1, 1, 5, 1).repeat(3, 1, 1, 1), stride=(2, 1), groups=3)
    return torch.floor(both / 256)


def _sample(source, affines: np.ndarray, rows: int, cols: int):
    """dlib's transform_image with interpolate_bilinear: (N, 3, H, W) float sources, (N, 2, 3)
    chip -> source pixel maps; a pixel whose 2x2 neighbourhood leaves the source is black, values
    are truncated to whole numbers. Returns (N, rows, cols, 3) uint8."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = source.shape
    # theta maps the chip's normalised coordinates to the source's (align_corners=True).
    to_pixels = np.array([[(cols - 1) / 2, 0, (cols - 1) / 2], [0, (rows - 1) / 2, (rows - 1) / 2], [0, 0, 1]])
    to_unit = np.array([[2 / max(w - 1, 1), 0, -1], [0, 2 / max(h - 1, 1), -1], [0, 0, 1]])
    theta = np.stack([(to_unit @ np.vstack([a, [0, 0, 1]]) @ to_pixels)[:2] for a in affines])
    theta = torch.as_tensor(theta, dtype=torch.float32, device=source.device)
    grid = F.affine_grid(theta, (n, 3, rows, cols), align_corners=True)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    px = (grid[..., 0] + 1) * (w - 1) / 2
    py = (grid[..., 1] + 1) * (h - 1) / 2
    inside = (px >= 0) & (py >= 0) & (torch.floor(px) + 1 < w) & (torch.floor(py) + 1 < h)
    out = torch.floor(out.clamp(0, 255)) * inside[:, None]
    return out.permute(0, 2, 3, 1).to(torch.uint8)


def face_chips(image, landmarks, size: int = config.CHIP_SIZE, padding: float = config.CHIP_PADDING,
               device: str = "cpu"):
    """dlib's aligned face chips, as ``dlib.get_face_chip`` makes them one face at a time, with
    the pixel work (pyramid and bilinear sampling) in PyTorch: (N, size, size, 3) uint8 on
    ``device``, ready for :meth:`iffse_lib.embed_torch.TorchEmbedder.embed`.

    ``image`` is an (H, W, 3) uint8 RGB array or tensor; ``landmarks`` (N, 68, 2) or a list of
    (68, 2) arrays. The chip geometry comes from ``dlib.get_face_chip_details``. A face much
    larger than the chip is sampled from dlib's pyramid_down<2> levels of the crop around it,
    as dlib does to avoid aliasing.
    """
    import torch

    img = torch.as_tensor(np.require(image, requirements=["C", "W"]) if isinstance(image, np.ndarray) else image)
    img = img.to(device).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    height, width = img.shape[2:]
    if len(landmarks) == 0:
        return torch.zeros((0, size, size, 3), dtype=torch.uint8, device=device)
    plans = [_chip_plan(np.asarray(lm, dtype=np.float64), height, width, size, padding) for lm in landmarks]
    chips = [None] * len(plans)
    direct = [i for i, (_, level, _, _) in enumerate(plans) if level == -1]
    if direct:
        # Sampled from the photo itself, all in one call. dlib samples the crop, with the map
        # relative to its corner; the crop reaches 2 pixels beyond the chip's corners (or the
        # photo's edge), so the whole photo gives the same pixels.
        affines = np.stack([plans[i][2] for i in direct])
        affines[:, 0, 2] += [plans[i][0][0] for i in direct]
        affines[:, 1, 2] += [plans[i][0][1] for i in direct]
        for i, chip in zip(direct, _sample(img.expand(len(direct), -1, -1, -1), affines, size, size)):
            chips[i] = chip
    for i, (box, level, affine, (rows, cols)) in enumerate(plans):
        if level >= 0:  # a face much larger than the chip: pyramid levels of its crop
            source = img[:, :, box[1]:box[3] + 1, box[0]:box[2] + 1]
            for _ in range(level + 1):
                source = _pyramid_down_2(source)
            chips[i] = _sample(source, affine[None], rows, cols)[0]
    return torch.stack(chips)

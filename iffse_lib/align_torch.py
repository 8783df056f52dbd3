"""dlib's face-chip alignment in PyTorch: the chips ``dlib.get_face_chip`` makes, cut on the
embedder's device (``"cpu"`` or ``"cuda"``) so that they never leave a GPU.

:func:`face_chips`: the geometry comes from ``dlib.get_face_chip_details``; the pixels from
``affine_grid``/``grid_sample``, with dlib's rules (a pixel whose bilinear neighbourhood leaves
the photo is black, values truncated) and, for faces more than twice the chip's size, dlib's
pyramid_down<2> levels of the crop. The pipeline uses it for an embedder on a GPU
(``align="torch"``); on a CPU it cuts chips with dlib's own ``get_face_chips``
(:func:`iffse_lib.faces.face_chips`). Torch is imported on first use.
"""

from __future__ import annotations

import math

import numpy as np

from . import config


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

"""dlib's CNN face detector in PyTorch, the front end of the pipeline on a GPU: with the alignment
of :mod:`iffse_lib.align_torch`, photos go to chips (and
:class:`~iffse_lib.embed_torch.TorchEmbedder` vectors) without leaving the device but for the
landmarks. It runs on ``"cpu"`` or ``"cuda"``; on the CPU it takes about 20 ms for a 250 x 250
photo where dlib's own takes seconds.

Detection: ``mmod_human_face_detector.dat`` in PyTorch (:func:`detect_boxes`,
:func:`detect_boxes_batch`, :func:`detect_rects`, :func:`detect_rects_batch`).

The same detections as ``dlib.cnn_face_detection_model_v1(path)(image, upsample)``, with the
network read from dlib's file by :mod:`iffse_lib.dlib_format` and built in PyTorch by
:func:`iffse_lib.dlibnet.build_mmod_detector`. The steps are dlib's:

0. ``upsample`` times ``pyramid_up(image, pyramid_down<2>)`` (dlib's Python binding,
   tools/python/src/cnn_face_detector.cpp): an H x W photo becomes (2H + 1) x (2W + 2)
   (``pyramid_down<2>::rect_up`` of the photo's rectangle, rounded), filled by dlib's RGB
   ``resize_image`` with bilinear interpolation, reproduced to the bit: column positions summed in
   float32 four at a time and weights in float32 as dlib's SIMD loop does, the last columns in
   double, values truncated (dlib/image_transforms/interpolation.h);
1. ``input_rgb_image_pyramid<pyramid_down<6>>``: the photo, (rgb - mean) / 256, and every 5/6
   downscale of it (each level bilinearly resized from the one before, corners aligned) tiled
   into one zero-padded tensor (``dlib::impl::compute_tiled_image_pyramid_details``);
2. the network, whose single output channel scores an 80 x 80 window at every 8th pixel;
3. ``loss_mmod_::to_label``: every position scoring above the threshold becomes a window centred
   on the input point it maps to, mapped back from its pyramid level to the photo, rounded to
   whole pixels (halves away from zero, as dlib 20 converts a drectangle), then greedy
   non-maximum suppression in descending score order with the overlap test stored in the file
   (numpy, vectorised over the positions);
4. with ``upsample``, each kept rectangle mapped back to the photo with
   ``pyramid_down<2>::rect_down`` and rounded.

On a GPU the convolutions run in IEEE float32 (cuDNN's TF32 default is turned off for the call).

Batching: photos whose tiled tensors have the same size (which is photos of one size, e.g.
LFW's 250 x 250) are stacked into one (N, 3, rows, cols) forward pass, at most ``batch_size``
photos and :data:`MAX_BATCH_PIXELS` tensor pixels (32 M on a GPU, 1 M on the CPU) at a time.
Photos of other sizes go in their own passes: padding them to a common canvas would change the
scores near the padded edges (the affine layers make the padding non-zero after the first
layer), and the detections must stay dlib's.

Torch is imported with :mod:`iffse_lib.dlibnet`, on first use.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections import defaultdict

import numpy as np

from . import config
from .errors import IffseError
from .models import model_path
from .records import Box

log = logging.getLogger(__name__)

#: pyramid_down<6>: each level is 5/6 the size of the one before.
PYRAMID_N = 6

#: At most this many pixels of tiled pyramid per forward pass (a single larger photo still goes
#: alone): with batch_size it bounds the memory a batch of large photos takes. On the CPU larger
#: passes bring nothing (2 cores, 250 x 250 photos: 11-13 ms a photo in passes of 4, 13-16 ms in
#: passes of 16, about the same as one by one), so there a pass holds about 1 M pixels: four LFW
#: photos. Batching pays on a GPU.
MAX_BATCH_PIXELS = {"cpu": 2**20, "cuda": 32 * 2**20}


@functools.lru_cache(maxsize=256)
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
    return tuple(rects), rows, cols


# ----------------------------------------------------------------------------------------
# Upsampling: dlib's pyramid_up(img, pyramid_down<2>) on RGB images


def _upsampled_size(h: int, w: int, times: int) -> tuple[int, int]:
    """pyramid_up's output size: pyramid_down<2>::rect_up of the photo's rectangle, (p + (1.25,
    0.75)) * 2 for both corners, rounded to a rectangle; the image is bottom + 1 by right + 1."""
    for _ in range(times):
        h, w = math.floor((h - 1 + 0.75) * 2 + 0.5) + 1, math.floor((w - 1 + 1.25) * 2 + 0.5) + 1
    return h, w


@functools.lru_cache(maxsize=64)
def _resize_plan(h: int, w: int, rows: int, cols: int):
    """Where dlib's RGB resize_image with interpolate_bilinear reads each output pixel from, with
    its arithmetic: rows in double (y summed row by row); columns summed in float32 four lanes at a
    time, weights in float32, while the right neighbour of the fourth lane is inside the photo,
    then the remaining columns in double (dlib/image_transforms/interpolation.h)."""
    ys = (h - 1) / max(rows - 1, 1)
    xs = (w - 1) / max(cols - 1, 1)
    y = np.add.accumulate(np.r_[-ys, np.full(rows, ys)])[1:]
    top = np.floor(y).astype(np.int64)
    bottom = np.minimum(top + 1, h - 1)
    tb = y - top

    x = -4 * xs
    groups = cols // 4 + 2
    lanes = np.empty((groups + 1, 4), np.float32)
    lanes[0] = np.array([x, x + xs, x + 2 * xs, x + 3 * xs], np.float64).astype(np.float32)
    lanes[1:] = np.float32(4 * xs)
    lanes = np.add.accumulate(lanes, axis=0, dtype=np.float32)[1:]
    left = np.trunc(lanes).astype(np.int64)  # _mm_cvttps_epi32
    n_simd = min(4 * int(np.argmax(left[:, 3] + 1 >= w)), cols)
    lx, l_simd = lanes.reshape(-1)[:n_simd], left.reshape(-1)[:n_simd]
    lr = lx - l_simd.astype(np.float32)

    n_tail = cols - n_simd
    xt = np.add.accumulate(np.r_[-xs + n_simd * xs, np.full(n_tail, xs)])[1:]
    l_tail = np.floor(xt).astype(np.int64)
    return {
        "top": top, "bottom": bottom, "tb": tb,
        "tb32": tb.astype(np.float32), "inv_tb32": (1 - tb).astype(np.float32),
        "left": l_simd, "right": l_simd + 1, "lr32": lr, "inv_lr32": np.float32(1) - lr,
        "left_tail": l_tail, "right_tail": np.minimum(l_tail + 1, w - 1), "lr_tail": xt - l_tail,
    }


def _pyramid_up(images):
    """dlib's pyramid_up(img, pyramid_down<2>) on (N, H, W, 3) uint8 RGB tensors: (N, 2H + 1,
    2W + 2, 3) uint8, the same pixels as dlib's."""
    import torch

    n, h, w, _ = images.shape
    rows, cols = _upsampled_size(h, w, 1)
    p = _resize_plan(h, w, rows, cols)
    dev = images.device

    def t(a, dtype=None):
        return torch.as_tensor(a, dtype=dtype, device=dev)

    out = []
    x = images.float()
    top, bottom = x[:, t(p["top"])], x[:, t(p["bottom"])]
    if len(p["left"]):  # dlib's SIMD loop: float32 weights, products summed left to right
        left, right = t(p["left"]), t(p["right"])
        tb, inv_tb = t(p["tb32"])[:, None, None], t(p["inv_tb32"])[:, None, None]
        lr, inv_lr = t(p["lr32"])[None, :, None], t(p["inv_lr32"])[None, :, None]
        v = (inv_tb * inv_lr) * top[:, :, left] + (inv_tb * lr) * top[:, :, right]
        v = v + (tb * inv_lr) * bottom[:, :, left]
        v = v + (tb * lr) * bottom[:, :, right]
        out.append(torch.trunc(v))
    if len(p["left_tail"]):  # the last columns, in double
        left, right = t(p["left_tail"]), t(p["right_tail"])
        tb = t(p["tb"], torch.float64)[:, None, None]
        lr = t(p["lr_tail"], torch.float64)[None, :, None]
        tl, tr = top[:, :, left].double(), top[:, :, right].double()
        bl, br = bottom[:, :, left].double(), bottom[:, :, right].double()
        v = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
        out.append(torch.trunc(v).float())
    return torch.cat(out, dim=2).to(torch.uint8)


# ----------------------------------------------------------------------------------------
# Detection


def _device_type(device) -> str:
    """"cpu" or "cuda" for a device name, or an IffseError that says what to use instead."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise IffseError(f"device must be 'cpu' or 'cuda' ('cuda:1' ...), not {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise IffseError(
            f"device={device!r} asked for, but this PyTorch ({torch.__version__}) sees no CUDA "
            "GPU. Use device='cpu', or install a CUDA build of torch on a GPU machine.")
    return kind


@contextlib.contextmanager
def _ieee_float32(torch, device_type: str):
    """On a GPU, convolutions in IEEE float32: PyTorch lets cuDNN use TensorFloat-32 by default,
    whose 10-bit products would move the scores away from dlib's. Torch's setting is restored
    afterwards (both the torch >= 2.9 API and the older one, as embed_torch does)."""
    if device_type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    conv = getattr(cudnn, "conv", None)
    new_api = hasattr(conv, "fp32_precision")
    saved = conv.fp32_precision if new_api else cudnn.allow_tf32
    try:
        if new_api:
            conv.fp32_precision = "ieee"
        else:
            cudnn.allow_tf32 = False
        yield
    finally:
        if new_api:
            conv.fp32_precision = saved
        else:
            cudnn.allow_tf32 = saved


@functools.cache
def _detector(path: str, device: str):
    from . import dlibnet

    log.info("loading dlib's CNN face detector into PyTorch from %s (%s)", path, device)
    net, options = dlibnet.build_mmod_detector(path)
    net = dlibnet.fold_affine(net).to(device)
    if _device_type(device) == "cpu":
        import torch

        net = net.to(memory_format=torch.channels_last)
        net.channels_last = True
    return net, options


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def _round_rect(x: np.ndarray) -> np.ndarray:
    """drectangle -> rectangle as dlib 20 converts it: to the nearest integer, halves away from
    zero (-4.5 -> -5; older dlib's floor(x + 0.5) made that -4). Exact: no x + 0.5 rounding."""
    whole = np.trunc(x)
    return (whole + np.sign(x) * (np.abs(x - whole) >= 0.5)).astype(np.int64)


def _positions_to_rects(scores: np.ndarray, rects, opt, threshold: float, upsample: int):
    """loss_mmod_::to_label for one photo's score map, then rect_down for the upsampling:
    [(left, top, right, bottom, score)] in the photo, highest score first."""
    ys, xs = np.nonzero(scores > threshold)
    if len(ys) == 0:
        return []
    score = scores[ys, xs].astype(np.float64)
    px = (opt.stride * xs + opt.offset).astype(np.float64)
    py = (opt.stride * ys + opt.offset).astype(np.float64)

    # The pyramid level of each position: the level containing it, else the nearest (the first
    # of equals), as dlib's nearest_rect.
    lvl = np.asarray(rects, dtype=np.float64)  # (L, 4)
    dx = px[:, None] - np.clip(px[:, None], lvl[:, 0], lvl[:, 2])
    dy = py[:, None] - np.clip(py[:, None], lvl[:, 1], lvl[:, 3])
    level = np.hypot(dx, dy).argmin(axis=1)

    half_w, half_h = (opt.window[0] - 1) / 2, (opt.window[1] - 1) / 2
    origin = lvl[level]
    corners = np.stack([px - half_w - origin[:, 0], py - half_h - origin[:, 1],
                        px + half_w - origin[:, 0], py + half_h - origin[:, 1]], axis=1)
    up = PYRAMID_N / (PYRAMID_N - 1.0)
    for i in range(int(level.max())):  # pyramid_down<6>::point_up, once per level
        deeper = level > i
        corners[deeper] = corners[deeper] * up + 0.3
    boxes = _round_rect(corners)

    order = np.argsort(-score, kind="stable")
    kept = _nms(boxes[order], opt.nms_iou_thresh, opt.nms_percent_covered_thresh)
    boxes, score = boxes[order][kept], score[order][kept]
    if upsample:  # pyramid_down<2>::rect_down, `upsample` levels, then rounded
        down = boxes.astype(np.float64)
        for _ in range(upsample):
            down = down / 2 - np.array([1.25, 0.75, 1.25, 0.75])
        boxes = _round_rect(down)
    return [(int(l), int(t), int(r), int(b), float(s)) for (l, t, r, b), s in zip(boxes, score)]


def _nms(boxes: np.ndarray, iou_thresh: float, covered_thresh: float) -> list[int]:
    """Greedy non-maximum suppression over boxes sorted by descending score, with dlib's
    test_box_overlap on inclusive integer rectangles: the indices kept."""
    def area(l, t, r, b):
        return np.maximum(0, r - l + 1) * np.maximum(0, b - t + 1)

    kept: list[int] = []
    k = np.empty((0, 4), np.int64)
    for i, box in enumerate(boxes):
        if len(k):
            inner = area(np.maximum(k[:, 0], box[0]), np.maximum(k[:, 1], box[1]),
                         np.minimum(k[:, 2], box[2]), np.minimum(k[:, 3], box[3]))
            outer = area(np.minimum(k[:, 0], box[0]), np.minimum(k[:, 1], box[1]),
                         np.maximum(k[:, 2], box[2]), np.maximum(k[:, 3], box[3]))
            with np.errstate(divide="ignore", invalid="ignore"):
                hit = (inner > 0) & ((inner / outer > iou_thresh)
                                     | (inner / area(*k.T) > covered_thresh)
                                     | (inner / area(*box) > covered_thresh))
            if hit.any():
                continue
        kept.append(i)
        k = boxes[kept]
    return kept


def detect_rects_batch(images: list[np.ndarray], threshold: float = 0.0, device: str = "cpu",
                       upsample: int = 0, batch_size: int = 16) -> list[list[tuple]]:
    """:func:`detect_rects` for several photos, the same detections photo for photo, with photos
    of one size stacked into one forward pass (at most ``batch_size`` photos, and
    :data:`MAX_BATCH_PIXELS` pixels of tiled pyramid, a pass)."""
    import torch
    import torch.nn.functional as F

    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or upsample < 0:
        raise ValueError(f"upsample must be an integer >= 0 (0, 1 or 2), not {upsample!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, not {batch_size!r}")
    images = [_check_image(im) for im in images]
    kind = _device_type(device)
    net, opt = _detector(str(model_path(config.CNN_DETECTOR_FILE)), str(device))
    max_pixels = MAX_BATCH_PIXELS[kind]

    # Photos of one size share a pyramid layout; and as every height gives a different tiled
    # height for a given width, only they share a tiled tensor's size.
    groups = defaultdict(list)
    for i, im in enumerate(images):
        groups[im.shape].append(i)

    results: list = [None] * len(images)
    with torch.inference_mode(), _ieee_float32(torch, kind):
        for (h, w, _), members in groups.items():
            rects, rows, cols = _pyramid_rects(*_upsampled_size(h, w, upsample),
                                               opt.pyramid_padding, opt.pyramid_outer_padding)
            step = max(1, min(batch_size, max_pixels // (rows * cols)))
            for start in range(0, len(members), step):
                chunk = members[start:start + step]
                photos = torch.from_numpy(np.stack([images[i] for i in chunk])).to(device)
                for _ in range(upsample):
                    photos = _pyramid_up(photos)
                levels = torch.zeros((len(chunk), 3, rows, cols), dtype=torch.float32, device=device)
                l, t, r, b = rects[0]
                levels[:, :, t:b + 1, l:r + 1] = net.normalize(photos).float()
                del photos
                for (pl, pt, pr, pb), (l, t, r, b) in zip(rects, rects[1:]):
                    levels[:, :, t:b + 1, l:r + 1] = F.interpolate(
                        levels[:, :, pt:pb + 1, pl:pr + 1], size=(b - t + 1, r - l + 1),
                        mode="bilinear", align_corners=True)
                if net.channels_last:
                    levels = levels.contiguous(memory_format=torch.channels_last)
                scores = net.body(levels.to(next(net.parameters()).dtype))[:, 0].float().cpu().numpy()
                del levels
                for j, i in enumerate(chunk):
                    results[i] = _positions_to_rects(scores[j], rects, opt, threshold, upsample)
    return results


def detect_rects(image: np.ndarray, threshold: float = 0.0, device: str = "cpu", upsample: int = 0):
    """dlib's detections as ``cnn_face_detection_model_v1(path)(image, upsample)`` returns them:
    [(left, top, right, bottom, score)], inclusive integer corners (which may lie outside the
    photo), highest score first."""
    return detect_rects_batch([image], threshold, device, upsample)[0]


def _clipped(rects, h: int, w: int) -> list[tuple[Box, float]]:
    return [(Box(max(0, l), max(0, t), min(w, r + 1), min(h, b + 1)), score)
            for l, t, r, b, score in rects]


def detect_boxes_batch(images: list[np.ndarray], upsample: int = 0, threshold: float = 0.0,
                       device: str = "cpu", batch_size: int = 16) -> list[list[tuple[Box, float]]]:
    """:func:`detect_boxes` for several photos, batched as :func:`detect_rects_batch` does."""
    found = detect_rects_batch(images, threshold, device, upsample, batch_size)
    return [_clipped(rects, *np.asarray(im).shape[:2]) for im, rects in zip(images, found)]


def detect_boxes(image: np.ndarray, upsample: int = 0, threshold: float = 0.0,
                 device: str = "cpu") -> list[tuple[Box, float]]:
    """Face boxes and scores from dlib's CNN detector, highest score first, clipped to the photo
    (right and bottom exclusive, as :meth:`iffse_lib.faces.FaceDetector.detect_batch` gives them).
    ``upsample`` doubles the photo that many times first, as dlib does: faces down to about 40 px
    with 1, 20 px with 2, at about 4x the cost per step."""
    return detect_boxes_batch([image], upsample, threshold, device, 1)[0]

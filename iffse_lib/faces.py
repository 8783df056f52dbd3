"""Detection, 68-point landmarks and alignment with dlib.

- :class:`FaceDetector` is the one way faces are found: dlib's HOG detector, or dlib's CNN (MMOD)
  detector run in PyTorch (:mod:`iffse_lib.cnn_detector`), batched, on a CPU or a GPU; its
  :meth:`~FaceDetector.detect` adds dlib's 68 landmarks (:func:`landmarks_for_box`).
- :func:`face_chips` makes the 150 px chips the embedder takes (dlib's ``get_face_chip``) from the
  points :func:`chip_points` picks: the 68 landmarks in HOG boxes, the 5-point predictor's
  points in CNN boxes (:data:`CHIP_POINTS`; README, "Choosing the landmarks and the
  augmentation").
- :func:`openface_crop` makes the 96 px OpenFace crop IFFSE used: the outer eye corners and the
  nose tip mapped onto OpenFace's template by an affine transform (for display).

Models load on first use, once per process.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import config
from .models import model_path
from .records import Box, Detection

log = logging.getLogger(__name__)

#: The 68-point layout, region by region (half-open index ranges), for plots.
REGIONS = {
    "jaw": (0, 17),
    "right_brow": (17, 22),
    "left_brow": (22, 27),
    "nose": (27, 36),
    "right_eye": (36, 42),
    "left_eye": (42, 48),
    "lips": (48, 68),
}

#: OpenFace's OUTER_EYES_AND_NOSE landmarks (right eye outer corner, left eye outer corner,
#: nose tip) and where its min-max normalised template puts them in the unit square.
OPENFACE_LANDMARKS = (36, 45, 33)
_TPL_MIN = np.array([0.0792396913815, 0.182360984545])
_TPL_MAX = np.array([0.971193274221, 1.06080371126])
OPENFACE_TEMPLATE = (np.array([
    (0.252418718401, 0.331052263829),
    (0.782865376271, 0.321305281656),
    (0.520712933176, 0.634268222208),
]) - _TPL_MIN) / (_TPL_MAX - _TPL_MIN)


@functools.cache
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _shape_predictor(path: str):
    import dlib

    log.info("loading dlib's landmark model from %s", path)
    return dlib.shape_predictor(path)


def shape_predictor():
    return _shape_predictor(str(model_path(config.SHAPE_PREDICTOR_68_FILE)))


def shape_predictor_5():
    return _shape_predictor(str(model_path(config.SHAPE_PREDICTOR_5_FILE)))


def _full_object_detection(landmarks: np.ndarray, box: Box | None = None):
    import dlib

    pts = np.asarray(landmarks, dtype=np.float64)
    if box is None:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        box = Box(int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1)
    rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
    parts = dlib.points()
    for x, y in np.rint(pts).astype(int):
        parts.append(dlib.point(int(x), int(y)))
    return dlib.full_object_detection(rect, parts)


def _hog_boxes(image: np.ndarray, upsample: int) -> list[tuple[Box, float]]:
    """Face boxes and scores from dlib's HOG detector (use :class:`FaceDetector`)."""
    image = np.ascontiguousarray(image)
    rects, scores, _ = _hog_detector().run(image, upsample, 0.0)
    h, w = image.shape[:2]
    # dlib rectangles are inclusive and may stick out of the image; clip, right/bottom exclusive.
    return [(Box(max(0, r.left()), max(0, r.top()), min(w, r.right() + 1), min(h, r.bottom() + 1)), float(s))
            for r, s in zip(rects, scores)]


#: The detectors a pipeline can use (see :class:`FaceDetector`).
DETECTORS = ("hog", "cnn")


def largest_first(found: list[tuple[Box, float]]) -> list[tuple[Box, float]]:
    """Boxes ordered as the catalogue numbers faces: largest first, then higher score."""
    return sorted(found, key=lambda bs: (-(bs[0].width * bs[0].height), -bs[1]))


@dataclass(frozen=True)
class FaceDetector:
    """Which detector finds the faces, and how: what the pipeline runs and the catalogue records.

    - ``hog``: dlib's HOG detector (CPU, one photo at a time); frontal faces of about 80 px,
      40 px with ``upsample=1``.
    - ``cnn``: dlib's CNN (MMOD) detector, the network read from dlib's own model file and run
      in PyTorch (:mod:`iffse_lib.cnn_detector`): the same boxes as dlib's
      ``cnn_face_detection_model_v1``, photos batched, on ``device`` ``"cpu"`` or ``"cuda"``.
      It also finds turned and tilted faces that HOG misses.

    ``upsample`` doubles the photo that many times before detecting (smaller faces, about 4x the
    cost per step). :attr:`tag` (``hog-up1``, ``cnn-up0``) is stored with every face; the device
    is not part of it, as it does not change the boxes.
    """

    kind: str = "hog"
    upsample: int = config.DEFAULT_UPSAMPLE
    device: str = "cpu"

    def __post_init__(self):
        if self.kind not in DETECTORS:
            raise ValueError(f"unknown detector {self.kind!r}; choose one of {list(DETECTORS)}")
        if not isinstance(self.upsample, int) or self.upsample < 0:
            raise ValueError(f"upsample must be an integer >= 0, not {self.upsample!r}")
        if self.kind == "hog" and str(self.device) != "cpu":
            raise ValueError(f"dlib's HOG detector runs on the CPU only; use kind='cnn' for device={self.device!r}")

    @property
    def tag(self) -> str:
        return f"{self.kind}-up{self.upsample}"

    def finds(self, scale: float = 1.0) -> str:
        """What it finds, for messages: "frontal faces of about 40 x 40 pixels and larger"; in a
        photo detected on a copy at ``scale`` (:func:`bounded_scale`), in the photo's pixels."""
        side = round(80 / 2 ** self.upsample / scale)
        what = f"{'frontal ' if self.kind == 'hog' else ''}faces of about {side} x {side} pixels and larger"
        return what if scale >= 1.0 else f"{what} (found on a copy scaled by {scale:.2f})"

    @classmethod
    def from_tag(cls, tag: str, device: str = "cpu") -> "FaceDetector":
        """The detector a catalogue tag names (``hog-up1``, ``cnn-up0``); ``device`` for a CNN one."""
        kind, sep, up = tag.partition("-up")
        if not sep or not up.isdigit() or kind not in DETECTORS:
            raise ValueError(f"{tag!r} is not a detector tag such as 'hog-up1' or 'cnn-up0'")
        return cls(kind, int(up), device if kind == "cnn" else "cpu")

    def detect_batch(self, images: list[np.ndarray]) -> list[list[tuple[Box, float]]]:
        """Boxes and scores for each of several (H, W, 3) uint8 RGB photos, largest face first."""
        if self.kind == "hog":
            found = [_hog_boxes(image, self.upsample) for image in images]
        else:
            from . import cnn_detector

            # On a GPU a pass may hold many photos (cnn_detector.MAX_BATCH_PIXELS caps its memory);
            # on a CPU large passes are no faster.
            per_pass = 256 if str(self.device).startswith("cuda") else 16
            found = cnn_detector.detect_boxes_batch(list(images), self.upsample, device=self.device,
                                                    batch_size=per_pass)
        return [largest_first(f) for f in found]

    def detect(self, image: np.ndarray, max_side: int | None = None) -> list[Detection]:
        """Every face in one (H, W, 3) uint8 RGB photo, largest first, with its 68 landmarks.

        ``max_side``: a photo longer than that is detected on a copy scaled down to it, the boxes
        mapped back (:func:`bounded_scale`; detection costs about its pixels, so a 12-megapixel
        phone photo would take seconds); the landmarks still come from the photo itself."""
        shape_predictor()  # a missing model file fails here, whether or not a face is found
        h, w = image.shape[:2]
        scale = bounded_scale(image.shape, max_side)
        if scale == 1.0:
            (found,) = self.detect_batch([image])
        else:
            small = Image.fromarray(np.ascontiguousarray(image)).resize(
                (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
            found = largest_first([(Box(max(0, round(b.left / scale)), max(0, round(b.top / scale)),
                                        min(w, round(b.right / scale)), min(h, round(b.bottom / scale))), s)
                                   for b, s in self.detect_batch([np.asarray(small)])[0]])
        return [Detection(box=box, score=score, landmarks=landmarks_for_box(image, box)) for box, score in found]


def bounded_scale(shape: tuple[int, ...], max_side: int | None) -> float:
    """The scale of the copy :meth:`FaceDetector.detect` detects on: 1.0 for a photo no longer
    than ``max_side`` (or None), else ``max_side`` / its longest side."""
    longest = max(shape[:2])
    return 1.0 if max_side is None or longest <= max_side else max_side / longest


def default_detector() -> FaceDetector:
    """The detector used where none is given: dlib's HOG at ``config.DEFAULT_UPSAMPLE``."""
    return FaceDetector("hog", config.DEFAULT_UPSAMPLE)


def landmarks_for_box(image: np.ndarray, box: Box, points: int = 68) -> np.ndarray:
    """The 68 landmarks inside a given box (``points=5``: the 5-point predictor's, eye corners and
    the base of the nose), (points, 2) float32 pixels."""
    import dlib

    if points not in (5, 68):
        raise ValueError(f"points must be 5 or 68, not {points!r}")
    rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
    predictor = shape_predictor() if points == 68 else shape_predictor_5()
    shape = predictor(np.ascontiguousarray(image), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


#: The landmarks each detector's chips are cut from. dlib's 68-point predictor was trained on
#: boxes shaped like HOG's; on the CNN detector's boxes (higher and tighter) its points, and so the
#: chips, are off, and the 5-point predictor (trained on both kinds of box) gives better vectors:
#: measured in ``benchmarks/tta.py`` (README, "Choosing the landmarks and the augmentation").
#: The 68 points are still found and stored for every face, for display and the OpenFace crop.
CHIP_POINTS = {"hog": 68, "cnn": 5}


def chip_points(image: np.ndarray, box: Box, landmarks: np.ndarray, detector: str,
                points: int | None = None) -> np.ndarray:
    """The points a face's chip is cut from: ``landmarks`` (its 68) where :data:`CHIP_POINTS`
    says 68 for ``detector`` (a kind, ``cnn``, or a tag, ``cnn-up0``), else the 5-point
    predictor's points in ``box``. They are found again from the photo and the box whenever a
    chip is cut (the predictor is deterministic), so the catalogue stores only the 68.
    ``points`` overrides the rule (for measuring)."""
    kind = detector.split("-")[0]
    if points is None:
        try:
            points = CHIP_POINTS[kind]
        except KeyError:
            raise ValueError(f"unknown detector {detector!r}; choose one of {list(DETECTORS)}") from None
    return np.asarray(landmarks, np.float32) if points == 68 else landmarks_for_box(image, box, points)


def face_chips(image: np.ndarray, landmarks: list[np.ndarray] | np.ndarray,
               size: int = config.CHIP_SIZE, padding: float = config.CHIP_PADDING) -> np.ndarray:
    """dlib's aligned face chips, (N, size, size, 3) uint8, one per landmark set (68 or 5 points)."""
    import dlib

    if len(landmarks) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    dets = dlib.full_object_detections()
    for pts in landmarks:
        dets.append(_full_object_detection(pts))
    chips = dlib.get_face_chips(np.ascontiguousarray(image), dets, size=size, padding=padding)
    return np.stack([np.asarray(c, dtype=np.uint8) for c in chips])


def openface_crop(image: np.ndarray, landmarks: np.ndarray, size: int = config.OPENFACE_SIZE) -> np.ndarray:
    """The OpenFace-style crop IFFSE used: outer eyes and nose tip mapped onto OpenFace's template."""
    src = np.asarray(landmarks, dtype=np.float64)[list(OPENFACE_LANDMARKS)]
    dst = OPENFACE_TEMPLATE * size
    # PIL wants the map from output to input pixels: solve input = A @ [x_out, y_out, 1].
    design = np.hstack([dst, np.ones((3, 1))])
    coeffs = np.linalg.solve(design, src)  # (3, 2)
    data = tuple(coeffs[:, 0]) + tuple(coeffs[:, 1])
    out = Image.fromarray(np.ascontiguousarray(image)).transform(
        (size, size), Image.Transform.AFFINE, data=data, resample=Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)

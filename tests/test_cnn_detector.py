"""dlib's CNN face detector in PyTorch (iffse_lib.cnn_detector) against dlib's own.

dlib's CNN detector costs seconds of CPU a photo here (4x that upsampled), so a few small photos
only: one, two and three faces, one where dlib's CNN finds none, one with a box reaching past the
photo's left edge, and two upsampled.
benchmarks/cnn_detector.py makes the same check on every photo of ../shared/data/faces.
"""

from __future__ import annotations

import numpy as np
import pytest

from iffse_lib import config, images
from iffse_lib.errors import IffseError

from conftest import FACES

#: torch against dlib's own CNN detector on every fixture photo; make test-fast leaves these out
pytestmark = pytest.mark.slow

dlib = pytest.importorskip("dlib")
torch = pytest.importorskip("torch")

from iffse_lib import align_torch, cnn_detector, dlibnet  # noqa: E402

PHOTOS = [
    "tilted/lfw_Hugo_Chavez_0006.jpg",
    "people/deepface_person13/deepface_img25.jpg",
    "multi/2008_001009.jpg",
    "multi/2008_001322.jpg",
    "multi/2008_002470.jpg",
    "multi/deepface_selfie-many-people.jpg",  # a box from x = -4.5: dlib 20 rounds it to -5
]


def _iou(a, b) -> float:
    """Intersection over union of inclusive (left, top, right, bottom) rectangles."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inner = max(0, w) * max(0, h)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inner / (area(a) + area(b) - inner)


@pytest.fixture(scope="module")
def dlib_cnn():
    return dlib.cnn_face_detection_model_v1(str(config.MODELS_DIR / config.CNN_DETECTOR_FILE))


def _check_same(name, dlib_cnn, upsample):
    image = images.load_image(FACES / name)
    theirs = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
              for d in dlib_cnn(image, upsample)]
    ours = cnn_detector.detect_rects(image, upsample=upsample)
    print(f"\n{name} upsample {upsample}: dlib {theirs}\n{' ' * len(name)}  torch {ours}")
    assert len(ours) == len(theirs)
    for rect in theirs:
        best = max(ours, key=lambda o: _iou(o[:4], rect[:4]))
        assert _iou(best[:4], rect[:4]) >= 0.9
        assert abs(best[4] - rect[4]) <= 0.01
    return ours


@pytest.mark.parametrize("name", PHOTOS)
def test_same_detections_as_dlib(name, dlib_cnn):
    _check_same(name, dlib_cnn, 0)


def test_upsampled_detections_as_dlib(dlib_cnn):
    """dlib's binding doubles the photo (pyramid_up) before detecting and maps the boxes back
    (rect_down). In the group photo the faces are too small for the detector without it."""
    assert len(_check_same("tilted/lfw_Hugo_Chavez_0006.jpg", dlib_cnn, 1)) == 1
    group = "multi/2008_002470.jpg"
    assert cnn_detector.detect_rects(images.load_image(FACES / group)) == []
    assert len(_check_same(group, dlib_cnn, 1)) >= 5


def test_rectangles_rounded_as_dlib_rounds_them():
    """drectangle -> rectangle: halves away from zero, also below zero."""
    values = np.array([-4.5, -3.5, -0.5, 0.5, 2.5, -4.4999999, -4.5000001, 7.2, -7.7, 0.49999999999999994])
    theirs = [dlib.rectangle(dlib.drectangle(v, v, 10.0, 10.0)).left() for v in values]
    assert cnn_detector._round_rect(values).tolist() == theirs


def test_pyramid_up_is_dlibs_to_the_bit():
    """(2H + 1) x (2W + 2) and every value as dlib's bilinear resize_image gives it (dlib's
    float32 SIMD loop with truncation, the last columns in double)."""
    for name in ("tilted/lfw_Hugo_Chavez_0006.jpg", "multi/2008_002470.jpg",
                 "people/angelina_jolie/deepface_img5.jpg"):
        image = images.load_image(FACES / name)
        h, w, _ = image.shape
        ours = cnn_detector._pyramid_up(torch.from_numpy(image.copy())[None])[0].numpy()
        assert ours.shape == (2 * h + 1, 2 * w + 2, 3)
        np.testing.assert_array_equal(ours, dlib.resize_image(image, 2 * h + 1, 2 * w + 2))
    # Every width from 1 to 64 (where the four-lane loop hands over to the double one varies)
    rng = np.random.default_rng(0)
    for w in range(1, 65):
        image = rng.integers(0, 256, (5, w, 3), dtype=np.uint8)
        ours = cnn_detector._pyramid_up(torch.from_numpy(image)[None])[0].numpy()
        np.testing.assert_array_equal(ours, dlib.resize_image(image, 11, 2 * w + 2), err_msg=f"width {w}")


def test_batches_give_the_same_detections_as_one_by_one():
    """Twelve 250 x 250 LFW photos (three passes) and larger photos of four other sizes, in
    mixed order: rectangles equal and scores within float rounding, photo by photo."""
    lfw = sorted((FACES.parent / "lfw").rglob("*.jpg"))[:10] + sorted((FACES / "tilted").glob("lfw_*.jpg"))
    others = [FACES / n for n in ("multi/2008_001322.jpg", "multi/2008_002470.jpg",
                                  "people/deepface_person13/deepface_img25.jpg",
                                  "people/angelina_jolie/deepface_img5.jpg")]
    paths = lfw[:6] + others[:2] + lfw[6:] + others[2:]
    photos = [images.load_image(p) for p in paths]
    assert len({p.shape for p in photos}) == 5
    for upsample, subset in ((0, photos), (1, photos[4:10])):
        one_by_one = [cnn_detector.detect_rects(p, upsample=upsample) for p in subset]
        batched = cnn_detector.detect_rects_batch(subset, upsample=upsample, batch_size=5)
        assert sum(map(len, one_by_one)) >= len(subset)
        for alone, together in zip(one_by_one, batched):
            assert [d[:4] for d in together] == [d[:4] for d in alone]
            np.testing.assert_allclose([d[4] for d in together], [d[4] for d in alone], atol=1e-4)
        boxes = cnn_detector.detect_boxes_batch(subset, upsample=upsample, batch_size=5)
        assert [len(b) for b in boxes] == [len(r) for r in batched]


def test_options_read_from_the_file():
    net, options = dlibnet.build_mmod_detector()
    assert options.window == (80, 80)
    assert (options.stride, options.offset) == (8, 14)  # three stride-2 5x5 convolutions
    assert (options.pyramid_padding, options.pyramid_outer_padding) == (10, 11)
    assert 0.3 < options.nms_iou_thresh < 0.4 and options.nms_percent_covered_thresh == 1.0
    assert net.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)


def test_pyramid_layout():
    """The first level at the outer padding, every level 5/6 of the one before, none overlapping."""
    rects, rows, cols = cnn_detector._pyramid_rects(375, 500, 10, 11)
    assert rects[0] == (11, 11, 510, 385) and cols == 500 + 22
    for (l0, t0, r0, b0), (l1, t1, r1, b1) in zip(rects, rects[1:]):
        assert (r1 - l1 + 1, b1 - t1 + 1) == (int(5 / 6 * (r0 - l0 + 1)), int(5 / 6 * (b0 - t0 + 1)))
    for i, a in enumerate(rects):
        assert 0 <= a[0] <= a[2] < cols and 0 <= a[1] <= a[3] < rows
        for b in rects[i + 1:]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_boxes_are_clipped_and_bad_arguments_refused():
    image = images.load_image(FACES / PHOTOS[0])
    boxes = cnn_detector.detect_boxes(image)
    assert len(boxes) == 1
    box, score = boxes[0]
    assert 0 <= box.left < box.right <= image.shape[1] and 0 <= box.top < box.bottom <= image.shape[0]
    assert score > 0
    # A face at the corner: dlib's rectangle reaches outside the photo, the box is clipped.
    corner = np.ascontiguousarray(image[100:, 95:])
    (l, t, r, b, s), = cnn_detector.detect_rects(corner)
    (cbox, cscore), = cnn_detector.detect_boxes(corner)
    assert min(l, t) < 0
    assert (cbox.left, cbox.top, cbox.right, cbox.bottom) == (max(l, 0), max(t, 0), r + 1, b + 1)
    assert cscore == s
    with pytest.raises(ValueError, match="upsample"):
        cnn_detector.detect_boxes(image, upsample=-1)
    with pytest.raises(ValueError, match="batch_size"):
        cnn_detector.detect_boxes_batch([image], batch_size=0)
    with pytest.raises(ValueError, match="uint8"):
        cnn_detector.detect_rects(image.astype(np.float32))
    assert cnn_detector.detect_boxes_batch([]) == []


def test_device_checked_and_tf32_off_on_gpus_then_restored():
    """A device this torch cannot use is refused with what to do. On a GPU the convolutions run
    in IEEE float32 (cuDNN would use TF32 by default), and torch's setting comes back after."""
    image = images.load_image(FACES / PHOTOS[0])
    with pytest.raises(IffseError, match="device"):
        cnn_detector.detect_boxes(image, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(IffseError, match="device='cpu'"):
            cnn_detector.detect_boxes(image, device="cuda")
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(conv, "fp32_precision"):
        get = lambda: conv.fp32_precision  # noqa: E731
    else:
        get = lambda: torch.backends.cudnn.allow_tf32  # noqa: E731
    before = get()
    with cnn_detector._ieee_float32(torch, "cuda"):
        assert get() in ("ieee", False)
    assert get() == before


def test_face_chips_match_dlib_get_face_chip():
    """Every HOG face (upsample 0) of ../shared/data/faces: chips made with grid_sample (and, for
    faces much larger than the chip, dlib's pyramid in torch) against dlib.get_face_chip."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(config.MODELS_DIR / config.SHAPE_PREDICTOR_68_FILE))
    diffs, levels = [], []
    for path in sorted(FACES.rglob("*")):
        if path.suffix.lower() not in config.IMAGE_EXTENSIONS:
            continue
        image = images.load_image(path)
        shapes = [predictor(image, rect) for rect in detector(image, 0)]
        if not shapes:
            continue
        landmarks = [np.array([(p.x, p.y) for p in s.parts()], np.float64) for s in shapes]
        ours = align_torch.face_chips(image, landmarks).numpy()
        assert ours.shape == (len(shapes), config.CHIP_SIZE, config.CHIP_SIZE, 3)
        for shape, lm, chip in zip(shapes, landmarks, ours):
            ref = np.asarray(dlib.get_face_chip(image, shape, size=config.CHIP_SIZE,
                                                padding=config.CHIP_PADDING))
            diffs.append(np.abs(ref.astype(int) - chip.astype(int)).mean())
            levels.append(align_torch._chip_plan(lm, *image.shape[:2], config.CHIP_SIZE,
                                                  config.CHIP_PADDING)[1])
    print(f"\n{len(diffs)} chips ({sum(lv >= 0 for lv in levels)} from pyramid levels): mean absolute "
          f"pixel difference at most {max(diffs):.4f}, on average {np.mean(diffs):.5f}")
    assert len(diffs) >= 100
    assert min(levels) == -1 and max(levels) >= 0  # both ways of sampling were checked
    assert max(diffs) <= 2


def test_face_chips_without_faces():
    image = np.zeros((50, 60, 3), np.uint8)
    assert tuple(align_torch.face_chips(image, []).shape) == (0, config.CHIP_SIZE, config.CHIP_SIZE, 3)

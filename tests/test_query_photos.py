"""Query photos (an upload to search or compare) longer than config.QUERY_MAX_SIDE px are
detected on a bounded copy, boxes mapped back to the photo (FaceDetector.detect's max_side)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from iffse_lib import config, faces, images

from conftest import FACES


def _iou(a, b) -> float:
    w = max(0, min(a.right, b.right) - max(a.left, b.left))
    h = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    return w * h / (a.width * a.height + b.width * b.height - w * h)


def test_a_bounded_copy_finds_the_same_faces_in_the_photos_pixels():
    """On the group photos longer than 640 px, detecting on a copy 640 px long finds the same
    faces as the full photo, in its pixels, and nearly the same vectors (landmarks and chips come
    from the full photo)."""
    from iffse_lib.embedders import get_embedder

    detector = faces.default_detector()
    embedder = get_embedder()
    big = [p for p in sorted((FACES / "multi").glob("*.jpg")) if max(Image.open(p).size) > 640]
    assert len(big) >= 5
    for path in big:
        image = images.load_image(path)
        full = detector.detect(image)
        found = detector.detect(image, max_side=640)
        assert faces.bounded_scale(image.shape, 640) == 640 / max(image.shape[:2])
        assert len(found) == len(full), path.name
        for d in full:
            assert max(_iou(d.box, f.box) for f in found) > 0.5, (path.name, d.box)
            assert all(0 <= f.box.left < f.box.right <= image.shape[1] for f in found)
        # The largest face's vector moves by far less than the 0.6 same-person distance.
        twin = max(found, key=lambda f: _iou(full[0].box, f.box))
        a, b = embedder.embed(faces.face_chips(image, [full[0].landmarks, twin.landmarks]))
        assert np.linalg.norm(a - b) < 0.1, path.name


def test_photos_no_longer_than_the_bound_are_detected_whole():
    detector = faces.default_detector()
    image = images.load_image(FACES / "multi" / "2008_001322.jpg")  # 500 px
    whole = detector.detect(image)
    assert max(image.shape[:2]) <= config.QUERY_MAX_SIDE and faces.bounded_scale(image.shape, None) == 1.0
    for got in (detector.detect(image, config.QUERY_MAX_SIDE), detector.detect(image, max(image.shape[:2]))):
        assert [(d.box, d.score) for d in got] == [(d.box, d.score) for d in whole]
        assert all(np.array_equal(g.landmarks, d.landmarks) for g, d in zip(got, whole))
    assert detector.finds(0.5) == "frontal faces of about 80 x 80 pixels and larger (found on a copy scaled by 0.50)"
    assert detector.finds() == "frontal faces of about 40 x 40 pixels and larger"

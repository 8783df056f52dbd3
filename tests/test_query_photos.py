"""Query photos (an upload to search or compare) are detected on a copy at most
config.QUERY_MAX_SIDE px long, boxes mapped back to the photo (faces.detect_scaled)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from iffse_lib import config, faces, images

from conftest import FACES


def _iou(a, b) -> float:
    w = max(0, min(a.right, b.right) - max(a.left, b.left))
    h = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    return w * h / (a.width * a.height + b.width * b.height - w * h)


def test_query_photos_detect_on_a_bounded_copy_and_find_the_same_faces():
    """Query photos are detected on a copy at most QUERY_MAX_SIDE px long, boxes mapped back: on
    the group photos longer than that, the same faces as on the full photo, in its pixels, and
    nearly the same vectors (landmarks and chips come from the full photo)."""
    from iffse_lib.embedders import get_embedder

    detector = faces.default_detector()
    embedder = get_embedder()
    big = [p for p in sorted((FACES / "multi").glob("*.jpg")) if max(Image.open(p).size) > config.QUERY_MAX_SIDE]
    assert len(big) >= 5
    for path in big:
        image = images.load_image(path)
        full = detector.detect_batch([image])[0]
        found, scale = faces.detect_scaled(detector, image)
        assert scale == config.QUERY_MAX_SIDE / max(image.shape[:2])
        assert len(found) == len(full), path.name
        for box, _ in full:
            assert max(_iou(box, b) for b, _ in found) > 0.5, (path.name, box)
        # The largest face's vector moves by far less than the 0.6 same-person distance.
        twin = max(found, key=lambda bs: _iou(full[0][0], bs[0]))[0]
        chips = [faces.face_chips(image, [faces.landmarks_for_box(image, box)]) for box in (full[0][0], twin)]
        a, b = embedder.embed(np.concatenate(chips))
        assert np.linalg.norm(a - b) < 0.1, path.name
    small = images.load_image(FACES / "multi" / "2008_001322.jpg")  # 500 px: detected as it is
    assert faces.detect_scaled(detector, small) == (detector.detect_batch([small])[0], 1.0)
    assert faces.detect_scaled(detector, image, None) == (full, 1.0)
    assert "scaled by 0.50, so faces of about 80 x 80 pixels" in faces.finds_in(detector, 0.5)

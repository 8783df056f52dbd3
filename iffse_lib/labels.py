"""Which face of a labelled photo its identity names.

A photo collected with an identity (an LFW file name, a folder of one person) is a photo *of*
that person; other faces in it are bystanders. The catalogue labels one face per photo, its
**subject**, and leaves the others unlabelled (``faces.identity`` is NULL for them):

- LFW photos (``source_kind == "lfw"``): LFW's rule, as :mod:`iffse_lib.evaluate.lfw_vectors` picks a
  photo's face: the face nearest the image centre, provided its box covers the centre. When the
  detector missed the subject and found only bystanders, no face is labelled.
- Other photos: the face nearest the centre (a photo of a person shows them in the middle).

Pure functions on boxes; :mod:`iffse_lib.catalog` applies :func:`subject_labels` when faces are
stored, when a catalogue of schema 2 (identities on photos only) is upgraded, and when such a
catalogue is read without upgrading it.
"""

from __future__ import annotations

import math
from itertools import groupby
from typing import Iterable

from .records import Box


def central_index(boxes: Iterable, width: int, height: int) -> int:
    """Index of the box whose centre is nearest the image centre (ties: the earlier); -1 if none."""
    cx, cy = width / 2.0, height / 2.0
    best, best_d = -1, math.inf
    for i, b in enumerate(boxes):
        bx, by = (b.left + b.right) / 2.0, (b.top + b.bottom) / 2.0
        dist = (bx - cx) ** 2 + (by - cy) ** 2
        if dist < best_d:
            best, best_d = i, dist
    return best


def subject_index(boxes: Iterable, width: int, height: int, source_kind: str = "lfw") -> int:
    """The index of the face a photo's identity names, or -1 when none of ``boxes`` is it."""
    boxes = list(boxes)
    i = central_index(boxes, width, height)
    if i < 0 or source_kind != "lfw":
        return i
    b = boxes[i]
    return i if b.left <= width / 2.0 < b.right and b.top <= height / 2.0 < b.bottom else -1


def subject_labels(rows: Iterable[tuple]) -> dict[int, str | None]:
    """``{face_id: label}``: a photo's identity on its subject face, None on its other faces.

    ``rows`` are ``(face_id, photo_id, identity, width, height, source_kind, left, top, right,
    bottom)``, grouped by photo and in face order within a photo."""
    out: dict[int, str | None] = {}
    for _, group in groupby(rows, key=lambda r: r[1]):
        faces = list(group)
        _, _, identity, width, height, kind = faces[0][:6]
        i = subject_index([Box(*r[6:10]) for r in faces], width, height, kind) if identity else -1
        out.update((r[0], identity if j == i else None) for j, r in enumerate(faces))
    return out

"""Small typed records passed between stages."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np


@dataclass(frozen=True)
class Box:
    """A face rectangle in pixels of the (EXIF-rotated) photo; right and bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


@dataclass(frozen=True)
class PhotoRecord:
    """What a source yields: the bytes (or a path to them) and what the source knows.

    ``source_id`` is unique within ``kind`` (a path, an LFW file name, an Instagram shortcode
    plus image number); the catalogue uses it to skip records it has seen before.
    """

    kind: str
    source_id: str
    path: Path | None = None
    data: bytes | None = None
    identity: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: (size, mtime_ns) of the file when listed: a rerun reads a seen file again when they change
    stamp: tuple[int, int] | None = None

    def read_bytes(self) -> bytes:
        """The photo's bytes; a file is read only if it is a regular file within the size limit
        (BadImage otherwise)."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError(f"photo record {self.kind}:{self.source_id} has neither data nor path")
        from .images import read_photo_file

        return read_photo_file(self.path)


@dataclass(frozen=True)
class Detection:
    """One face found in a photo: its box, detector score and 68 landmarks (x, y pixels)."""

    box: Box
    score: float
    landmarks: np.ndarray  # (68, 2) float32


@dataclass(frozen=True)
class Face:
    """A face row of the catalogue."""

    face_id: int
    photo_id: int
    box: Box
    score: float
    landmarks: np.ndarray  # (68, 2) float32


def text_of_name(name: str) -> str:
    """A file name as text SQLite can store: itself when it is valid UTF-8, else its bytes
    percent-encoded (the exact bytes go in the photo's ``meta["name_hex"]``)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return quote(os.fsencode(name), safe="/ !$&'()+,;=@[]^`{}~")


@dataclass(frozen=True)
class Match:
    """One search result: a catalogued face at ``distance`` from the query face, ``rank`` 1 the
    nearest. ``identity`` is the face's label (None for a bystander or an unlabelled photo);
    ``path`` the photo's absolute path; the box is the face's in that photo. Search returns a
    pandas DataFrame whose columns are these fields, in this order (:data:`MATCH_COLUMNS`)."""

    rank: int
    distance: float
    face_id: int
    photo_id: int
    identity: str | None
    path: str
    left: int
    top: int
    right: int
    bottom: int


#: The columns of a search's DataFrame: :class:`Match`'s fields.
MATCH_COLUMNS = [f.name for f in fields(Match)]

"""Every error iffse raises on purpose. Messages say what to do next."""

from __future__ import annotations


class IffseError(Exception):
    """Base class for every error iffse raises on purpose."""


class DependencyMissing(IffseError, ImportError):
    """An optional package is not installed."""


class ModelFileMissing(IffseError):
    """A model file is not in models/."""


class ModelFileCorrupt(IffseError):
    """A model file exists but is not what iffse expects (checksum or format)."""


class BadImage(IffseError):
    """A file could not be used as a photo.

    ``kind`` is one of: ``empty``, ``truncated``, ``not_image``, ``too_large``,
    ``unsupported``, ``unreadable``, ``missing``, ``not_file`` (see iffse_lib/images.py).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class NoFaceFound(IffseError):
    """A query photo holds no face the detector can find."""


class CatalogError(IffseError):
    """The catalogue on disk is missing, locked or inconsistent."""


class CatalogLocked(CatalogError):
    """Another writer holds the catalogue (or this one is open for reading only)."""


class CatalogDamaged(CatalogError):
    """A file of the catalogue is damaged, missing, or belongs to another catalogue."""


class DiskFull(CatalogError):
    """The disk holding the catalogue has no space left; what was committed is kept."""


class ModelMismatch(IffseError):
    """Vectors, an index or a query come from different models."""


class IndexMismatch(IffseError):
    """A saved index does not match the catalogue."""


class IndexMissing(IffseError):
    """No index has been built yet."""


class SourceError(IffseError):
    """A photo source cannot be read (a missing folder, a failed download)."""

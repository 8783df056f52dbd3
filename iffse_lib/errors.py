"""Every error iffse raises on purpose. Messages say what to do next.

An error that carries a ``kind`` (a short code recorded in the catalogue or counted by a crawl)
takes its message first and the kind by keyword: ``BadImage("x.jpg: empty", kind="empty")``.
"""

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

    def __init__(self, message: str, *, kind: str):
        super().__init__(message)
        self.kind = kind


class NoFaceFound(IffseError):
    """A query photo holds no face the detector can find. ``finds``: which faces it finds in that
    photo (:meth:`iffse_lib.faces.FaceDetector.finds`), for a message that says what to try."""

    def __init__(self, message: str, finds: str | None = None):
        super().__init__(message)
        self.finds = finds


class CatalogError(IffseError):
    """The catalogue on disk is missing, locked or inconsistent."""


class CatalogLocked(CatalogError):
    """Another writer holds the catalogue (or this one is open for reading only)."""


class CatalogDamaged(CatalogError):
    """A file of the catalogue is damaged, missing, or belongs to another catalogue."""


class WriterInWorker(CatalogLocked):
    """A worker process tried to open the catalogue for writing: it was importing the main script
    again (a script that indexes at import time, outside ``if __name__ == "__main__":``)."""


class WorkerDied(IffseError):
    """A worker process of a local pool died before it finished its work."""


class DiskFull(CatalogError):
    """The disk holding the catalogue has no space left; what was committed is kept."""


class ModelMismatch(IffseError):
    """Vectors, an index or a query come from different models."""


class IndexMismatch(IffseError):
    """A saved index does not match the catalogue."""


class IndexAlreadyBuilt(IffseError):
    """``build`` was called on an index that is built already."""


class IndexMissing(IffseError):
    """No index has been built yet."""


class SourceError(IffseError):
    """A photo source cannot be read (a missing folder, a failed download)."""


# -- evaluation -----------------------------------------------------------------------------
class PairsFileError(IffseError):
    """A pairs file that does not follow LFW's official format."""


class PhotoMissing(IffseError):
    """A photo named in a pairs file is neither in the catalogue nor in the LFW folder."""


# -- Instagram ------------------------------------------------------------------------------
class InstagramError(SourceError):
    """Instagram answered in a way the collector cannot go on from. ``kind`` names it."""

    def __init__(self, message: str, *, kind: str = "instagram"):
        super().__init__(message)
        self.kind = kind


class LoginRequired(InstagramError):
    """Instagram wants a logged-in session: a redirect to /accounts/login/, ``login_required``, or a
    401 with ``require_login`` (the session is no longer accepted)."""


class CheckpointRequired(InstagramError):
    """Instagram put the account behind a checkpoint or challenge; a person must clear it in a browser."""


class RateLimited(InstagramError):
    """Instagram kept answering 429 or "please wait" after every retry."""


class QueryIdNotFound(InstagramError):
    """The legacy tag page's Commons bundle holds no hashtag ``query_id``."""


class RetryableAnswer(InstagramError):
    """An answer worth asking for again (a 429, a 5xx, HTML where JSON was expected). The client's
    request loop catches it and retries, after ``wait`` seconds when that is given; when the
    retries run out it raises :class:`InstagramError` or :class:`RateLimited` instead."""

    def __init__(self, message: str, *, kind: str, wait: float | None = None):
        super().__init__(message, kind=kind)
        self.wait = wait


class BadDownload(IffseError):
    """An image download that will not get better by retrying (recorded against its post).

    ``retryable`` downloads (an expired signed URL that could not be refreshed) are recorded as
    errors, not rejections, so that a later run tries them again.
    """

    def __init__(self, message: str, *, kind: str, retryable: bool = False):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


class BadPost(IffseError):
    """A post whose fields make no sense (a ``taken_at`` of 1e20, a string width); recorded, then skipped."""

    def __init__(self, message: str, *, shortcode: str | None):
        super().__init__(message)
        self.shortcode = shortcode
        self.kind = "bad_post"

"""Where photos come from.

A source is an iterable of :class:`~iffse_lib.records.PhotoRecord` with a ``kind`` and a length
(:class:`~.folder.FolderSource`, :class:`~.lfw.LFWSource`): each record carries the photo's bytes
(``data``) or a path to them, a ``kind`` and a ``source_id`` unique within that kind, the identity
when the source knows it, and free-form metadata. The catalogue stores the bytes once per content
hash and remembers every (kind, source_id) it has seen, so collecting the same source again skips
what is already there. Instagram is crawled rather than iterated (:mod:`.instagram`), and checks
what the catalogue has seen before downloading, by shortcode.

:func:`collect_photos` collects from any of them by name, as notebook 01 does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SOURCES = ("lfw", "folder", "instagram")


def collect_photos(catalog, source: str = "lfw", *, lfw_dir: str | Path | None = None,
                   folder: str | Path | None = None, identity_from_folder: bool = True,
                   tags: str = "selfie", api: str = "web", cookies: str | Path | None = None,
                   base_url: str | None = None, max_photos: int | None = None,
                   lfw_parameter: str = "lfw_dir", progress: bool = True) -> dict[str, Any]:
    """Collect the photos of ``source`` into ``catalog``; returns the counts of the collector.

    - ``lfw``: LFW from ``lfw_dir`` (None: ``$IFFSE_LFW_DIR``, else scikit-learn's download, whose
      error names ``lfw_parameter``), its first ``max_photos`` photos.
    - ``folder``: the photos under ``folder``; with ``identity_from_folder``, ``NAME/photo.jpg``
      is a photo of NAME.
    - ``instagram``: the hashtags ``tags`` through ``api`` (``web`` or ``legacy``), at most
      ``max_photos`` posts a tag, with a logged-in session's ``cookies`` from ``base_url``
      (None: instagram.com). With neither cookies nor ``base_url``: iffse's local imitation of
      Instagram, logged in with its fake cookies and without politeness pauses (the server runs
      on this machine).
    """
    if source not in SOURCES:
        raise ValueError(f'source must be "lfw", "folder" or "instagram", not {source!r}')
    if source != "instagram":
        from ..pipeline import collect

        if source == "lfw":
            from .lfw import LFWSource, lfw_folder

            photos = LFWSource(lfw_folder(lfw_dir, parameter=lfw_parameter), limit=max_photos)
        else:
            from .folder import FolderSource

            photos = FolderSource(folder, identity_from_folder=identity_from_folder)
        return collect(catalog, photos, progress=progress)
    from . import instagram

    if cookies is None and base_url is None:
        from ..testing import fake_instagram
        from .ratelimit import RateLimiter

        with fake_instagram.serve(tag=tags) as url:
            return instagram.collect_hashtag(catalog, tags, api=api, base_url=url, cookies=fake_instagram.FAKE_COOKIES,
                                             max_posts=max_photos, limiter=RateLimiter({}, jitter={}),
                                             progress=progress)
    return instagram.collect_hashtag(catalog, tags, api=api, cookies=cookies, max_posts=max_photos,
                                     progress=progress, **({"base_url": base_url} if base_url else {}))

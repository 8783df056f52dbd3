"""Where photos come from.

A source is an iterable of :class:`~iffse_lib.records.PhotoRecord`: each record carries the
photo's bytes (``data``) or a path to them, a ``kind`` and a ``source_id`` unique within that
kind, the identity when the source knows it, and free-form metadata. The catalogue stores the
bytes once per content hash and remembers every (kind, source_id) it has seen, so collecting the
same source again skips what is already there. A source may also offer ``seen(source_id)``
checks before downloading (Instagram does, by shortcode).
"""

from __future__ import annotations

from typing import Iterable, Protocol

from ..records import PhotoRecord


class Source(Protocol):
    kind: str

    def __iter__(self) -> Iterable[PhotoRecord]: ...

    def __len__(self) -> int: ...

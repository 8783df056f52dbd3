"""Sources and photos: what collecting stores, and removing photos (``forget``) so that nothing
of them is left on disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import CatalogError
from ..records import PhotoRecord
from ..storage import write_atomically
from .db import Database, ids_json, now
from .sql import SQL, script

#: rejection kinds that may pass on a later run with the file unchanged (unreadable for a while,
#: gone for a while); a file still being copied is read again because its size or mtime changes
RETRYABLE = frozenset({"unreadable", "missing"})
#: crawl-state source of the owners and shortcodes removed with :meth:`Photos.forget`
OPTOUT_SOURCE = "instagram-optout"
#: the largest integer SQLite stores
MAX_ID = 2**63 - 1


class Photos(Database):
    """The photos of the catalogue and the sources they came from."""

    def has_source(self, kind: str, source_id: str) -> bool:
        return self.scalar(SQL.source_exists, (kind, source_id)) is not None

    def seen_sources(self, kind: str) -> set[str]:
        return set(self.source_states(kind))

    def source_states(self, kind: str) -> dict[str, tuple[int | None, int | None, bool]]:
        """``{source_id: (size, mtime_ns, retry)}`` of every source of ``kind`` seen before:
        the file's size and mtime when it was read, and whether its failure may pass on a rerun."""
        return {r[0]: (r[1], r[2], bool(r[3])) for r in self.query(SQL.source_states, (kind,))}

    def source_state(self, kind: str, source_id: str) -> tuple[int | None, int | None, bool] | None:
        """(size, mtime_ns, retry) of one source seen before (see :meth:`source_states`), or None."""
        rows = self.query(SQL.source_state, (kind, source_id))
        return (rows[0][0], rows[0][1], bool(rows[0][2])) if rows else None

    def photo_path(self, photo_id: int) -> Path:
        rel = self.scalar(SQL.photo_path, (photo_id,))
        if rel is None:
            raise CatalogError(f"no photo {photo_id} in {self.root}")
        return self.root / rel

    def photo_files(self) -> list[tuple[int, str, Path]]:
        """(photo id, sha256, absolute path) of every photo, by id."""
        return [(r[0], r[1], self.root / r[2]) for r in self.query(SQL.photo_files)]

    def photo_sizes(self) -> dict[int, tuple[int, int]]:
        """``{photo_id: (width, height)}`` of every photo."""
        return {r[0]: (r[1], r[2]) for r in self.query(SQL.photo_sizes)}

    def store_photo(self, record: PhotoRecord, data: bytes, width: int, height: int, ext: str) -> tuple[int, bool]:
        """Store validated photo bytes from ``record``; returns (photo_id, newly stored).

        Identical bytes are stored once: a second source of the same bytes is linked to the first
        photo. The file is on disk (fsynced, renamed into place) before its row commits.
        """
        digest = hashlib.sha256(data).hexdigest()
        rel = f"raw/{digest[:2]}/{digest}{ext}"
        target = self.root / rel
        existing = self.query(SQL.photo_with_sha256, (digest,))
        wrote = not existing and write_atomically(target, data, self.root / "tmp")
        size, mtime_ns = record.stamp or (None, None)
        try:
            with self.transaction() as db:
                row = db.execute(SQL.photo_with_sha256, (digest,)).fetchone()
                created = row is None
                if created:
                    photo_id = db.execute(SQL.photo_add, (
                        digest, rel, width, height, len(data), record.kind, record.source_id, record.identity,
                        json.dumps(record.meta, default=str, sort_keys=True), now(), self.run_id)).lastrowid
                else:
                    photo_id = row[0]
                db.execute(SQL.source_set, (record.kind, record.source_id, photo_id, None, now(), size, mtime_ns, 0))
        except BaseException:
            if wrote:  # no row points at the file we just wrote: leave no orphan behind
                with contextlib.suppress(OSError):
                    target.unlink()
            raise
        return photo_id, created

    def reject_source(self, record: PhotoRecord, stage: str, kind: str, message: str) -> None:
        """Record that a source's photo was rejected. A rerun reads it again when it may pass now
        (``kind`` in :data:`RETRYABLE`) or when the file's size or mtime changed."""
        size, mtime_ns = record.stamp or (None, None)
        with self.transaction() as db:
            db.execute(SQL.source_set, (record.kind, record.source_id, None, kind, now(), size, mtime_ns,
                                        int(kind in RETRYABLE)))
            self.record_error(stage, kind, message, source_kind=record.kind, source_id=record.source_id, db=db)

    def remove_photos(self, photo_ids: Iterable[int]) -> int:
        """Remove photos with their faces and vectors, and erase them: the photo files are deleted,
        the vectors' bytes overwritten with zeros, the database's freed pages zeroed (SQLite's
        ``secure_delete``) and its ``-wal`` emptied. The next ``iffse index`` rewrites the index
        without them. Returns how many photos went."""
        ids = ids_json(i for i in photo_ids if 0 <= int(i) <= MAX_ID)
        if ids == "[]":
            return 0
        erased: dict[str, list[int]] = {}
        with self.transaction() as db:
            paths = [r[0] for r in db.execute(SQL.photo_paths, (ids,))]
            for model, row in db.execute(SQL.vector_rows_of_photos, (ids,)):
                erased.setdefault(model, []).append(row)
            for statement in script("delete_faces_of_photos") + script("delete_photos"):
                db.execute(statement, (ids,))
            db.execute(SQL.meta_set, ("index_stale", "1"))
            for model in erased:  # the next `iffse index` rewrites this model's index without them
                db.execute(SQL.meta_set, (f"index_erase:{model}", "1"))
            for model, rows in erased.items():
                self._writable_vector_file(model).zero_rows(np.array(rows))
        for rel in paths:
            with contextlib.suppress(FileNotFoundError):
                (self.root / rel).unlink()
        with self._lock, self._sql_errors():
            self.db.execute(SQL.empty_wal)
        return len(paths)

    def forget(self, *, owner: str | None = None, photo: str | int | None = None) -> int:
        """Remove an owner's photos (``owner``: an Instagram username or owner id) or one photo, and
        erase them (:meth:`remove_photos`); returns how many photos were removed.

        ``photo`` is a catalogue photo id or an Instagram shortcode (every image of that post). An
        owner or shortcode is remembered so that later Instagram crawls skip their posts. A name
        or photo the catalogue does not hold raises CatalogError and remembers nothing.
        """
        if (owner is None) == (photo is None):
            raise ValueError("give exactly one of owner= or photo=")
        if owner is not None:
            name = owner.strip().lstrip("@")
            ids = [r[0] for r in self.query(SQL.photos_of_owner, {"name": name})]
            if not ids:
                raise CatalogError(f"no photos of owner {name!r} in {self.root}; nothing was removed (to skip an "
                                   "owner in future crawls, list them in a file given to --opt-out)")
            key = name.lower()
        else:
            text = str(photo).strip()
            if text.isdigit() and int(text) <= MAX_ID and self.scalar(SQL.photo_path, (int(text),)) is not None:
                ids, key = [int(text)], None
            else:
                ids, key = [r[0] for r in self.query(SQL.photos_of_shortcode, (text,))], text.lower()
            if not ids:
                raise CatalogError(f"no photo {text!r} (photo id or shortcode) in {self.root}; nothing was removed")
        if key is not None:
            self.set_state(OPTOUT_SOURCE, key, {"forgotten_at": now(), "photos": len(ids)})
        return self.remove_photos(ids)

    def forgotten_names(self) -> set[str]:
        """Owners and shortcodes removed with :meth:`forget`; Instagram crawls skip them from then on."""
        return {r[0].lower() for r in self.query(SQL.state_keys, (OPTOUT_SOURCE,))}

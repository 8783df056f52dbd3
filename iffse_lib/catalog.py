"""The catalogue on disk: one data folder, one writer, any number of readers.

::

    data/
      catalog.sqlite    photos, sources, faces, vectors, models, runs, errors, crawl state (WAL mode)
      catalog.id        the catalogue's id (also in the database; an index records it too)
      catalog.lock      the writer's lock (see storage.WriterLock)
      raw/ab/abcd….jpg  collected photos, named by the sha256 of their bytes, never modified
      tmp/              photo files being written (renamed into raw/ when complete)
      vectors/<model>.npy   float32 (rows, dim) per model tag, append-only, memory-mapped to read
      index/<model>.*   the index and its id map (see index.py)

One writer at a time: ``Catalog(path)`` takes an exclusive OS lock on ``catalog.lock`` for as long
as it is open (a second writer waits, saying who it waits for, or with ``wait=False`` raises
CatalogLocked). ``Catalog(path, readonly=True)`` opens the database read-only and never writes,
repairs or truncates anything, so searches, stats and notebooks run while an index is being
built; a :meth:`Catalog.snapshot` sees one consistent state (SQLite's WAL snapshot).

Crash safety: a photo file is written to a temporary name, fsynced and renamed before its row is
committed; vectors are appended and fsynced inside the transaction that commits the rows pointing
at them and the file's new committed row count, so rows past that count belong to a batch that
never committed and the next writer overwrites them. A process killed at any moment therefore
leaves a consistent catalogue, and the same command run again skips the work that was committed.

Damage is found, never used: a database that is not one, or whose id differs from ``catalog.id``
(a ``-wal`` file or database copied in from another catalogue), a folder with photos or vectors
but no database, vector files shorter than the catalogue says, each raise CatalogDamaged with what
to run. ``iffse check`` verifies every file (:mod:`iffse_lib.check`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator
from urllib.parse import quote

import numpy as np

from . import config
from .errors import CatalogDamaged, CatalogError, CatalogLocked, IffseError, ModelMismatch, WriterInWorker
from .labels import subject_labels
from .records import Box, Detection, Face, PhotoRecord
from .storage import (ID_FILE, VectorFile, VectorFiles, WriterLock, check_data_folder, disk_errors,
                      importing_main_again, prepare_folder, read_id_file, sqlite_errors, write_atomically,
                      write_id_file)

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 3

#: The tables and indexes (catalog_schema.sql, read by this module only), created if missing.
SCHEMA = (Path(__file__).with_name("catalog_schema.sql")).read_text()



def _label_subjects(db: sqlite3.Connection, photo_ids: Iterable[int] | None = None) -> None:
    """Set ``faces.identity``: a labelled photo's identity on its subject face only (the rule of
    :mod:`iffse_lib.labels`), NULL on every other face; for ``photo_ids``, or every photo."""
    sql = ("SELECT f.id, p.id, p.identity, p.width, p.height, p.source_kind, f.left, f.top, f.right, f.bottom "
           "FROM photos p JOIN faces f ON f.photo_id = p.id {where} ORDER BY p.id, f.idx")
    if photo_ids is None:
        rows = db.execute(sql.format(where="")).fetchall()
    else:
        ids = [int(i) for i in photo_ids]
        rows = []
        for part, marks in _chunks(ids):
            rows += db.execute(sql.format(where=f"WHERE p.id IN ({marks})"), part).fetchall()
    db.executemany("UPDATE faces SET identity=? WHERE id=?",
                   [(label, face_id) for face_id, label in subject_labels(rows).items()])


#: schema 1 -> 2: sources remember the file's size and mtime, and whether a failure may pass;
#: 2 -> 3: identities label faces (the subject of a labelled photo), not every face of the photo.
#: A step is an SQL statement or a function of the connection (a data migration).
MIGRATIONS: dict[int, list[str | Callable[[sqlite3.Connection], None]]] = {
    1: ["ALTER TABLE sources ADD COLUMN size INTEGER",
        "ALTER TABLE sources ADD COLUMN mtime_ns INTEGER",
        "ALTER TABLE sources ADD COLUMN retry INTEGER NOT NULL DEFAULT 0"],
    2: ["ALTER TABLE faces ADD COLUMN identity TEXT", _label_subjects],
}

#: rejection kinds that may pass on a later run with the file unchanged (unreadable for a while,
#: gone for a while); a file still being copied is read again because its size or mtime changes
RETRYABLE = frozenset({"unreadable", "missing"})
#: crawl-state source of the owners and shortcodes removed with :meth:`Catalog.forget`
OPTOUT_SOURCE = "instagram-optout"

_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_LOCK_FILE = "catalog.lock"
#: the largest integer SQLite stores
_MAX_ID = 2**63 - 1


def _chunks(ids: list[int], size: int = 500) -> Iterator[tuple[list[int], str]]:
    """``ids`` in parts small enough for one statement, each with its ``?,?,…`` placeholders."""
    for start in range(0, len(ids), size):
        part = ids[start:start + size]
        yield part, ",".join("?" * len(part))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stderr(message: str) -> None:
    print(f"iffse: {message}", file=sys.stderr, flush=True)


class Catalog:
    """The catalogue in ``data_dir``.

    Writers (the default) hold the catalogue's lock until :meth:`close`; ``create`` makes a new
    catalogue where there is none. ``readonly=True`` opens an existing catalogue for reading
    only: nothing on disk is written. ``wait=False`` raises CatalogLocked instead of waiting
    for another writer; ``on_wait`` gets the waiting message (default: printed on stderr).
    Methods may be called from several threads; writes are serialised by a lock.
    """

    def __init__(self, data_dir: str | Path | None = None, *, create: bool = True, readonly: bool = False,
                 wait: bool = True, command: str = "iffse", on_wait: Callable[[str], None] | None = _stderr):
        self.root = Path(data_dir if data_dir is not None else config.DATA_DIR).expanduser().resolve()
        self.db_path = self.root / "catalog.sqlite"
        self.readonly = readonly
        self.run_id: int | None = None
        self._vector_files = VectorFiles(self.root / "vectors")
        self._lock = threading.RLock()
        self._writer: WriterLock | None = None
        self.db = None
        check_data_folder(self.root, self.db_path, may_create=create and not readonly)
        if not readonly and importing_main_again():
            # It would wait for the lock its own parent holds, and the parent for it: a hang.
            raise WriterInWorker(
                f"a worker process imported the main script again and it opens {self.root} for writing: "
                "in a script, call index_photos (and open the Catalog) under `if __name__ == \"__main__\":`")
        if not readonly:
            with disk_errors(self.root):
                self.root.mkdir(parents=True, exist_ok=True)
            self._writer = WriterLock(self.root / _LOCK_FILE, command, wait=wait, on_wait=on_wait).acquire()
        try:
            self._open_db()
        except BaseException:
            self.close()
            raise

    # -- opening ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(self.db_path, timeout=60, check_same_thread=False, isolation_level=None)
        uri = "file:" + quote(str(self.db_path))
        try:
            db = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=60, check_same_thread=False,
                                 isolation_level=None)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.OperationalError:
            # A folder nobody may write (a shared, finished collection): nothing can change it, so
            # SQLite may read it as immutable, without the -shm file it cannot create.
            return sqlite3.connect(uri + "?immutable=1", uri=True, check_same_thread=False, isolation_level=None)

    def _open_db(self) -> None:
        if not self.readonly and self.db_path.exists() and self.db_path.stat().st_size > 0:
            # Check what the files hold through a read-only connection first: one that may write
            # would copy a foreign -wal file into the database when it closes.
            probe = Catalog(self.root, readonly=True)
            probe.close()
        with self._sql_errors():
            self.db = self._connect()
            self.db.row_factory = sqlite3.Row
            if self.readonly:
                self.db.execute("PRAGMA query_only=ON")
            else:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros
            self.db.execute("PRAGMA foreign_keys=ON")
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            self._check_identity()  # before anything is repaired on the word of a foreign database
        if self.readonly:
            version = int(self.get_meta("schema_version", "0")) if "meta" in tables else 0
            if not 1 <= version <= SCHEMA_VERSION:
                raise CatalogDamaged(f"{self.db_path} is not an iffse catalogue this version reads "
                                     f"(schema {version}). Run `iffse check --data {self.root}`.")
        else:
            self._prepare_for_writing(tables)

    def _prepare_for_writing(self, tables: set[str]) -> None:
        """Create or upgrade the schema, give the catalogue its id, and repair what a killed writer
        left: temporary files, runs still marked running, vector rows that never committed."""
        prepare_folder(self.root)
        with self.transaction() as db:
            if "meta" in tables:
                version = int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise CatalogError(f"{self.db_path} has schema version {version}; this iffse reads up to "
                                       f"{SCHEMA_VERSION}. Upgrade iffse.")
                for old in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[old]:
                        statement(db) if callable(statement) else db.execute(statement)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            if db.execute("SELECT value FROM meta WHERE key='catalog_id'").fetchone() is None:
                db.execute("INSERT INTO meta VALUES ('catalog_id', ?)", (read_id_file(self.root) or uuid.uuid4().hex,))
            db.execute("UPDATE runs SET status='killed', finished_at=? WHERE status='running'", (now(),))
        write_id_file(self.root, self.catalog_id)
        with self.transaction() as db:
            for tag, dim, n_rows in db.execute("SELECT tag, dim, n_rows FROM models").fetchall():
                with contextlib.suppress(CatalogDamaged):  # reported where the vectors are used
                    self._writable_vector_file(tag, dim, n_rows).cut_to_committed()

    def _check_identity(self) -> None:
        expected = read_id_file(self.root)
        if expected and expected != self.catalog_id:
            raise CatalogDamaged(
                f"{self.db_path} belongs to another catalogue (id {self.catalog_id}, but {self.root / ID_FILE} says "
                f"{expected}): a database or -wal file was copied in from elsewhere. Restore this catalogue's "
                "own catalog.sqlite (and remove a foreign catalog.sqlite-wal), then run `iffse check`.")

    @property
    def catalog_id(self) -> str:
        """A random id given to the catalogue when it was made; an index records it."""
        return self.get_meta("catalog_id", "") or ""

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r}{', readonly=True' if self.readonly else ''})"

    # -- plumbing ---------------------------------------------------------------------------
    def _sql_errors(self) -> contextlib.AbstractContextManager:
        return sqlite_errors(self.db_path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error. Writers only.

        Every transaction also counts itself in ``meta``, so that each commit's pages in the
        ``-wal`` file include the catalogue's id (a foreign ``-wal`` is then recognised)."""
        if self.readonly:
            raise CatalogLocked(f"{self.root} is open for reading only; open it without readonly=True to write")
        with self._lock, self._sql_errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("INSERT INTO meta VALUES ('commits', '1') ON CONFLICT(key) "
                                "DO UPDATE SET value = CAST(value AS INTEGER) + 1")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Catalog"]:
        """Reads inside see one consistent state of the catalogue, whatever a writer commits meanwhile."""
        with self._lock, self._sql_errors():
            if self.db.in_transaction:
                yield self
                return
            self.db.execute("BEGIN")
            try:
                yield self
            finally:
                self.db.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query; ``params`` positional (``?``) or named (``:name``)."""
        with self._lock, self._sql_errors():
            return self.db.execute(sql, params if isinstance(params, dict) else tuple(params)).fetchall()

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    # -- runs and errors --------------------------------------------------------------------
    def start_run(self, command: str, args: dict[str, Any] | None = None) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO runs (command, args, started_at) VALUES (?, ?, ?)",
                             (command, json.dumps(args or {}, default=str, sort_keys=True), now()))
        self.run_id = cur.lastrowid
        return self.run_id

    def finish_run(self, status: str = "ok", summary: dict[str, Any] | None = None) -> None:
        if self.run_id is None:
            return
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at=?, status=?, summary=? WHERE id=?",
                       (now(), status, json.dumps(summary or {}, default=str), self.run_id))
        self.run_id = None

    @contextlib.contextmanager
    def run(self, command: str, args: dict[str, Any] | None = None) -> Iterator[int]:
        """A run recorded in ``runs``: finished ``ok`` (unless :meth:`finish_run` was called with a
        summary inside), ``interrupted`` on Ctrl-C, or ``failed`` with the error's name."""
        run_id = self.start_run(command, args)
        try:
            yield run_id
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            with contextlib.suppress(IffseError, sqlite3.Error):
                self.finish_run(status, {"error": type(exc).__name__, "message": str(exc)[:500]})
            raise
        self.finish_run("ok")

    def record_error(self, stage: str, kind: str, message: str, *, source_kind: str | None = None,
                     source_id: str | None = None, photo_id: int | None = None, db=None) -> None:
        sql = ("INSERT INTO errors (run_id, stage, kind, source_kind, source_id, photo_id, message, at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        params = (self.run_id, stage, kind, source_kind, source_id, photo_id, message, now())
        if db is not None:
            db.execute(sql, params)
        else:
            with self.transaction() as db2:
                db2.execute(sql, params)

    # -- photos -----------------------------------------------------------------------------
    def has_source(self, kind: str, source_id: str) -> bool:
        return self.scalar("SELECT 1 FROM sources WHERE kind=? AND source_id=?", (kind, source_id)) is not None

    def seen_sources(self, kind: str) -> set[str]:
        return {r[0] for r in self.query("SELECT source_id FROM sources WHERE kind=?", (kind,))}

    def source_states(self, kind: str) -> dict[str, tuple[int | None, int | None, bool]]:
        """``{source_id: (size, mtime_ns, retry)}`` of every source of ``kind`` seen before:
        the file's size and mtime when it was read, and whether its failure may pass on a rerun."""
        return {r[0]: (r[1], r[2], bool(r[3])) for r in self.query(
            "SELECT source_id, size, mtime_ns, retry FROM sources WHERE kind=?", (kind,))}

    def source_state(self, kind: str, source_id: str) -> tuple[int | None, int | None, bool] | None:
        """(size, mtime_ns, retry) of one source seen before (see :meth:`source_states`), or None."""
        rows = self.query("SELECT size, mtime_ns, retry FROM sources WHERE kind=? AND source_id=?", (kind, source_id))
        return (rows[0][0], rows[0][1], bool(rows[0][2])) if rows else None

    def photo_path(self, photo_id: int) -> Path:
        rel = self.scalar("SELECT path FROM photos WHERE id=?", (photo_id,))
        if rel is None:
            raise CatalogError(f"no photo {photo_id} in {self.root}")
        return self.root / rel

    def photo_files(self) -> list[tuple[int, str, Path]]:
        """(photo id, sha256, absolute path) of every photo, by id."""
        return [(r[0], r[1], self.root / r[2]) for r in self.query("SELECT id, sha256, path FROM photos ORDER BY id")]

    def store_photo(self, record: PhotoRecord, data: bytes, width: int, height: int, ext: str) -> tuple[int, bool]:
        """Store validated photo bytes from ``record``; returns (photo_id, newly stored).

        Identical bytes are stored once: a second source of the same bytes is linked to the first
        photo. The file is on disk (fsynced, renamed into place) before its row commits.
        """
        digest = hashlib.sha256(data).hexdigest()
        rel = f"raw/{digest[:2]}/{digest}{ext}"
        target = self.root / rel
        existing = self.query("SELECT id FROM photos WHERE sha256=?", (digest,))
        wrote = not existing and write_atomically(target, data, self.root / "tmp")
        size, mtime_ns = record.stamp or (None, None)
        try:
            with self.transaction() as db:
                row = db.execute("SELECT id FROM photos WHERE sha256=?", (digest,)).fetchone()
                created = row is None
                if created:
                    cur = db.execute(
                        "INSERT INTO photos (sha256, path, width, height, nbytes, source_kind, source_id, identity, "
                        "meta, added_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (digest, rel, width, height, len(data), record.kind, record.source_id, record.identity,
                         json.dumps(record.meta, default=str, sort_keys=True), now(), self.run_id))
                    photo_id = cur.lastrowid
                else:
                    photo_id = row[0]
                db.execute("INSERT OR REPLACE INTO sources (kind, source_id, photo_id, error, added_at, size, "
                           "mtime_ns, retry) VALUES (?, ?, ?, NULL, ?, ?, ?, 0)",
                           (record.kind, record.source_id, photo_id, now(), size, mtime_ns))
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
            db.execute("INSERT OR REPLACE INTO sources (kind, source_id, photo_id, error, added_at, size, mtime_ns, "
                       "retry) VALUES (?, ?, NULL, ?, ?, ?, ?, ?)",
                       (record.kind, record.source_id, kind, now(), size, mtime_ns, int(kind in RETRYABLE)))
            self.record_error(stage, kind, message, source_kind=record.kind, source_id=record.source_id, db=db)

    def remove_photos(self, photo_ids: Iterable[int]) -> int:
        """Remove photos with their faces and vectors, and erase them: the photo files are deleted,
        the vectors' bytes overwritten with zeros, the database's freed pages zeroed (SQLite's
        ``secure_delete``) and its ``-wal`` emptied. The next ``iffse index`` rewrites the index
        without them. Returns how many photos went."""
        ids = [int(i) for i in photo_ids if 0 <= int(i) <= _MAX_ID]
        if not ids:
            return 0
        paths: list[str] = []
        erased: dict[str, list[int]] = {}
        with self.transaction() as db:
            for part, marks in _chunks(ids):
                paths += [r[0] for r in db.execute(f"SELECT path FROM photos WHERE id IN ({marks})", part)]
                for model, row in db.execute(
                        f"SELECT model, row FROM vectors WHERE face_id IN (SELECT id FROM faces WHERE photo_id IN "
                        f"({marks}))", part):
                    erased.setdefault(model, []).append(row)
                db.execute(f"DELETE FROM vectors WHERE face_id IN (SELECT id FROM faces WHERE photo_id IN ({marks}))",
                           part)
                db.execute(f"DELETE FROM faces WHERE photo_id IN ({marks})", part)
                db.execute(f"DELETE FROM detections WHERE photo_id IN ({marks})", part)
                db.execute(f"DELETE FROM errors WHERE photo_id IN ({marks})", part)
                db.execute(f"UPDATE sources SET photo_id=NULL, error='forgotten', retry=0 WHERE photo_id IN ({marks})",
                           part)
                db.execute(f"DELETE FROM photos WHERE id IN ({marks})", part)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")
            for model in erased:  # the next `iffse index` rewrites this model's index without them
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (f"index_erase:{model}",))
            for model, rows in erased.items():
                self._writable_vector_file(model).zero_rows(np.array(rows))
        for rel in paths:
            with contextlib.suppress(FileNotFoundError):
                (self.root / rel).unlink()
        with self._lock, self._sql_errors():
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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
            ids = [r[0] for r in self.query(
                "SELECT id FROM photos WHERE lower(json_extract(meta, '$.username')) = lower(?) "
                "OR json_extract(meta, '$.owner_id') = ?", (name, name))]
            if not ids:
                raise CatalogError(f"no photos of owner {name!r} in {self.root}; nothing was removed (to skip an "
                                   "owner in future crawls, list them in a file given to --opt-out)")
            key = name.lower()
        else:
            text = str(photo).strip()
            ids = []
            if text.isdigit() and int(text) <= _MAX_ID and self.scalar("SELECT 1 FROM photos WHERE id=?", (int(text),)):
                ids, key = [int(text)], None
            else:
                ids = [r[0] for r in self.query("SELECT id FROM photos WHERE json_extract(meta, '$.shortcode') = ?",
                                                (text,))]
                key = text.lower()
            if not ids:
                raise CatalogError(f"no photo {text!r} (photo id or shortcode) in {self.root}; nothing was removed")
        if key is not None:
            self.set_state(OPTOUT_SOURCE, key, {"forgotten_at": now(), "photos": len(ids)})
        return self.remove_photos(ids)

    def forgotten_names(self) -> set[str]:
        """Owners and shortcodes removed with :meth:`forget`; Instagram crawls skip them from then on."""
        return {r[0].lower() for r in self.query("SELECT key FROM crawl_state WHERE source=?", (OPTOUT_SOURCE,))}

    # -- faces and vectors ------------------------------------------------------------------
    def model_info(self, tag: str) -> dict[str, Any] | None:
        rows = self.query("SELECT tag, dim, n_rows FROM models WHERE tag=?", (tag,))
        return dict(rows[0]) if rows else None

    def model_tags(self) -> list[str]:
        return [r[0] for r in self.query("SELECT tag FROM models ORDER BY tag")]

    def _writable_vector_file(self, tag: str, dim: int | None = None, n_rows: int | None = None) -> VectorFile:
        """The writer's vector file of ``tag`` at the committed row count (read inside the caller's
        transaction when ``n_rows`` is not given)."""
        if dim is None or n_rows is None:
            dim, n_rows = self.db.execute("SELECT dim, n_rows FROM models WHERE tag=?", (tag,)).fetchone()
        return self._vector_files.writable(tag, dim, n_rows)

    def vector_file(self, tag: str, dim: int | None = None) -> VectorFile:
        """The committed vectors of model ``tag`` (ModelMismatch when the catalogue has none, or
        they are not ``dim``-dimensional)."""
        if not _TAG_RE.match(tag):
            raise ValueError(f"model tag {tag!r} may hold letters, digits and . _ + - only")
        info = self.model_info(tag)
        if info is None:
            raise ModelMismatch(f"no vectors of model {tag!r} in {self.root}; models here: {self.model_tags()}")
        if dim is not None and info["dim"] != dim:
            raise ModelMismatch(f"model {tag!r} has {info['dim']}-d vectors in this catalogue, not {dim}-d")
        if self.readonly:
            return VectorFile(self.root / "vectors" / f"{tag}.npy", info["dim"], info["n_rows"])
        with self._lock:
            return self._vector_files.current(tag, info["dim"], info["n_rows"])

    def save_batch(self, detector: str, detected: dict[int, list[Detection] | str],
                   model: str | None, vectors: np.ndarray | None, vector_faces: list[tuple[int, int]]) -> None:
        """Commit one pipeline batch atomically.

        ``detected`` maps photo_id -> its new detections (or an error kind for a photo that failed);
        ``vector_faces`` lists, row by row of ``vectors``, the face each belongs to as
        (photo_id, idx) so that faces detected in this same batch can be referenced. The vectors
        are appended (and fsynced) at the committed row count read inside the transaction.
        """
        if model is not None and not _TAG_RE.match(model):
            raise ValueError(f"model tag {model!r} may hold letters, digits and . _ + - only")
        with self.transaction() as db:
            replaced: dict[str, list[int]] = {}
            for photo_id, result in detected.items():
                if isinstance(result, str):
                    db.execute("INSERT OR REPLACE INTO detections (photo_id, detector, n_faces, error, run_id) "
                               "VALUES (?, ?, 0, ?, ?)", (photo_id, detector, result, self.run_id))
                    continue
                # A photo detected again (another detector): its old faces and their vectors go.
                for old_model, old_row in db.execute(
                        "SELECT model, row FROM vectors WHERE face_id IN (SELECT id FROM faces WHERE photo_id=?)",
                        (photo_id,)).fetchall():
                    replaced.setdefault(old_model, []).append(old_row)
                db.execute("DELETE FROM vectors WHERE face_id IN (SELECT id FROM faces WHERE photo_id=?)", (photo_id,))
                db.execute("DELETE FROM faces WHERE photo_id=?", (photo_id,))
                db.execute("INSERT OR REPLACE INTO detections (photo_id, detector, n_faces, error, run_id) "
                           "VALUES (?, ?, ?, NULL, ?)", (photo_id, detector, len(result), self.run_id))
                db.executemany(
                    "INSERT INTO faces (photo_id, idx, left, top, right, bottom, score, landmarks, detector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(photo_id, i, d.box.left, d.box.top, d.box.right, d.box.bottom, d.score,
                      np.asarray(d.landmarks, "<f4").tobytes(), detector) for i, d in enumerate(result)])
                _label_subjects(db, [photo_id])
            if replaced:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")
            if model is not None and vectors is not None and len(vectors):
                db.execute("INSERT OR IGNORE INTO models (tag, dim, n_rows, created_at) VALUES (?, ?, 0, ?)",
                           (model, int(vectors.shape[1]), now()))
                dim = db.execute("SELECT dim FROM models WHERE tag=?", (model,)).fetchone()[0]
                if dim != vectors.shape[1]:
                    raise ModelMismatch(f"model {model!r} has {dim}-d vectors in this catalogue, "
                                        f"not {vectors.shape[1]}-d")
                vf = self._writable_vector_file(model)
                start = vf.append(vectors)  # fsynced before the rows that point at it commit
                photo_ids = sorted({int(key[0]) for key in vector_faces})
                face_id: dict[tuple[int, int], int] = {}
                for part, marks in _chunks(photo_ids):
                    face_id.update({(r[0], r[1]): r[2] for r in db.execute(
                        f"SELECT photo_id, idx, id FROM faces WHERE photo_id IN ({marks})", part)})
                db.executemany("INSERT INTO vectors (face_id, model, row, run_id) VALUES (?, ?, ?, ?)",
                               [(face_id[(int(key[0]), int(key[1]))], model, start + i, self.run_id)
                                for i, key in enumerate(vector_faces)])
                db.execute("UPDATE models SET n_rows=? WHERE tag=?", (vf.rows, model))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")
            for old_model, rows in replaced.items():  # the replaced vectors are erased, not left behind
                self._writable_vector_file(old_model).zero_rows(np.array(rows))

    def pending_photos(self, model: str, redetect: str | None = None) -> list[tuple[int, Path, bool]]:
        """(photo id, absolute path, detected) of the photos that need work for ``model``: never
        detected, detected by another detector than ``redetect``, failed for a reason that may pass
        (:data:`RETRYABLE`), or with faces that lack a ``model`` vector."""
        retry = sorted(RETRYABLE)
        rows = self.query(f"""
            SELECT p.id, p.path,
                   d.photo_id IS NOT NULL AND d.error IS NULL AND (? IS NULL OR d.detector = ?) AS detected
            FROM photos p LEFT JOIN detections d ON d.photo_id = p.id
            WHERE d.photo_id IS NULL
               OR d.error IN ({','.join('?' * len(retry))})
               OR (? IS NOT NULL AND d.detector != ?)
               OR EXISTS (SELECT 1 FROM faces f WHERE f.photo_id = p.id
                          AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.face_id = f.id AND v.model = ?))
            ORDER BY p.id""", [redetect, redetect, *retry, redetect, redetect, model])
        return [(r[0], self.root / r[1], bool(r[2])) for r in rows]

    def faces_to_embed(self, photo_ids: list[int], model: str) -> dict[int, list[tuple[np.ndarray, int, Box, str]]]:
        """For detected photos: ``{photo_id: [(landmarks, face index, box, detector tag), …]}`` of
        the faces without a ``model`` vector (one query for all of them)."""
        out: dict[int, list[tuple[np.ndarray, int, Box, str]]] = {pid: [] for pid in photo_ids}
        for part, marks in _chunks(photo_ids):
            for r in self.query(
                    f"SELECT f.photo_id, f.idx, f.landmarks, f.left, f.top, f.right, f.bottom, f.detector "
                    f"FROM faces f WHERE f.photo_id IN ({marks}) AND NOT EXISTS "
                    "(SELECT 1 FROM vectors v WHERE v.face_id = f.id AND v.model = ?) ORDER BY f.photo_id, f.idx",
                    [*part, model]):
                out[r[0]].append((np.frombuffer(r[2], "<f4").reshape(68, 2).copy(), r[1],
                                  Box(r[3], r[4], r[5], r[6]), r[7]))
        return out

    def face_rows(self, face_ids: Iterable[int]) -> dict[int, sqlite3.Row]:
        """``{face_id: row}`` with each face's photo_id, box, identity (the face's label: None for a
        bystander) and (relative) path."""
        wanted = [int(f) for f in face_ids]
        out: dict[int, sqlite3.Row] = {}
        # a schema-2 catalogue read without upgrading has labels on photos only
        label = "f.identity" if int(self.get_meta("schema_version", "0")) >= 3 else "p.identity AS identity"
        for part, marks in _chunks(wanted):
            for r in self.query(f"SELECT f.id, f.photo_id, f.left, f.top, f.right, f.bottom, {label}, p.path "
                                f"FROM faces f JOIN photos p ON p.id=f.photo_id WHERE f.id IN "
                                f"({marks})", part):
                out[r[0]] = r
        return out

    def first_face_of_a_repeated_identity(self, model: str) -> sqlite3.Row | None:
        """(face id, identity, path) of the first face with a ``model`` vector whose identity has
        several photos (the demo's example query), or None."""
        rows = self.query(
            "SELECT f.id, p.identity, p.path FROM faces f JOIN photos p ON p.id=f.photo_id "
            "JOIN vectors v ON v.face_id=f.id AND v.model=? WHERE p.identity IN "
            "(SELECT identity FROM photos GROUP BY identity HAVING COUNT(*) > 1) ORDER BY f.id LIMIT 1", (model,))
        return rows[0] if rows else None

    def other_detector_photos(self, tag: str) -> int:
        """Photos whose faces were found by a detector other than ``tag``."""
        return int(self.scalar("SELECT COUNT(*) FROM detections WHERE detector != ? AND error IS NULL", (tag,)))

    def main_detector(self) -> str | None:
        """The tag of the detector that found most of the catalogue's faces (None without faces)."""
        return self.scalar("SELECT detector FROM faces GROUP BY detector ORDER BY COUNT(*) DESC LIMIT 1")

    def vector_rows(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids, vector-file rows) of every face with a ``model`` vector, by face id."""
        rows = self.query("SELECT face_id, row FROM vectors WHERE model=? ORDER BY face_id", (model,))
        return (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64))

    def vectors(self, model: str, face_ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids, vectors) of ``model``, ordered by face id; vectors are a float32 copy."""
        with self.snapshot():
            vf = self.vector_file(model)
            if face_ids is None:
                ids, rownums = self.vector_rows(model)
            else:
                wanted = [int(f) for f in face_ids if 0 <= int(f) <= _MAX_ID]
                rows = []
                for part, marks in _chunks(wanted):
                    rows += self.query(f"SELECT face_id, row FROM vectors WHERE model=? AND face_id IN "
                                       f"({marks})", [model, *part])
                rows.sort(key=lambda r: r[0])
                ids = np.array([r[0] for r in rows], dtype=np.int64)
                rownums = np.array([r[1] for r in rows], dtype=np.int64)
            return ids, np.asarray(vf.array()[rownums], dtype=np.float32)

    def drop_vectors(self, model: str, face_ids: Iterable[int]) -> int:
        """Delete these faces' ``model`` vectors and zero their bytes (``iffse index`` computes them
        again from the raw photos); returns how many went."""
        wanted = [int(f) for f in face_ids]
        gone: list[int] = []
        with self.transaction() as db:
            for part, marks in _chunks(wanted):
                gone += [r[0] for r in db.execute(f"SELECT row FROM vectors WHERE model=? AND face_id IN ({marks})",
                                                  [model, *part])]
                db.execute(f"DELETE FROM vectors WHERE model=? AND face_id IN ({marks})", [model, *part])
            if gone:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")
                self._writable_vector_file(model).zero_rows(np.array(gone))
        return len(gone)

    def cut_vectors(self, model: str, rows: int) -> int:
        """Keep only the first ``rows`` rows of ``model``'s vector file (it lost the rest): vectors
        past them are deleted, to be computed again. Returns how many vectors went."""
        with self.transaction() as db:
            gone = db.execute("DELETE FROM vectors WHERE model=? AND row >= ?", (model, rows)).rowcount
            db.execute("UPDATE models SET n_rows=? WHERE tag=?", (rows, model))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")
            self._vector_files.forget(model)
            self._writable_vector_file(model).cut_to_committed()
        return gone

    def erase_vector_rows(self, model: str, rows: np.ndarray) -> None:
        """Zero rows of ``model``'s vector file that no face refers to (left by an older iffse)."""
        with self.transaction() as db:
            used = {r[0] for r in db.execute("SELECT row FROM vectors WHERE model=?", (model,))}
            rows = np.array([r for r in np.asarray(rows, np.int64).tolist() if r not in used], np.int64)
            self._writable_vector_file(model).zero_rows(rows)

    def integrity_problems(self) -> list[str]:
        """What SQLite's ``integrity_check`` and ``foreign_key_check`` find (empty when sound)."""
        found = [r[0] for r in self.query("PRAGMA integrity_check") if r[0] != "ok"]
        found += [f"row {r[1]} of {r[0]} points at a missing {r[2]}" for r in self.query("PRAGMA foreign_key_check")]
        return found

    def face(self, face_id: int) -> Face:
        rows = self.query("SELECT * FROM faces WHERE id=?", (face_id,))
        if not rows:
            raise CatalogError(f"no face {face_id} in {self.root}")
        return _face_from_row(rows[0])

    def faces_of_photo(self, photo_id: int) -> list[Face]:
        return [_face_from_row(r) for r in self.query("SELECT * FROM faces WHERE photo_id=? ORDER BY idx", (photo_id,))]

    # -- crawl state ------------------------------------------------------------------------
    def get_state(self, source: str, key: str) -> dict[str, Any] | None:
        value = self.scalar("SELECT state FROM crawl_state WHERE source=? AND key=?", (source, key))
        return json.loads(value) if value is not None else None

    def set_state(self, source: str, key: str, state: dict[str, Any] | None) -> None:
        with self.transaction() as db:
            if state is None:
                db.execute("DELETE FROM crawl_state WHERE source=? AND key=?", (source, key))
            else:
                db.execute("INSERT OR REPLACE INTO crawl_state VALUES (?, ?, ?, ?)",
                           (source, key, json.dumps(state, sort_keys=True), now()))

    # -- flags ------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM meta WHERE key=?", (key,))
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- views for notebooks ----------------------------------------------------------------
    #: Post metadata shown as columns by :meth:`photos` (None where a source does not give it;
    #: hashtags and mentions as JSON lists).
    PHOTO_META_COLUMNS = ("shortcode", "username", "taken_at", "like_count", "comment_count", "hashtags",
                          "mentions", "location", "original_width", "original_height", "accessibility_caption",
                          "product_type", "tab")

    def photos(self) -> pd.DataFrame:
        """Photos as a pandas DataFrame (one row per photo, with its face count; absolute paths),
        with the post metadata of :attr:`PHOTO_META_COLUMNS`."""
        import pandas as pd

        meta = "".join(f", json_extract(p.meta, '$.{c}') AS {c}" for c in self.PHOTO_META_COLUMNS)
        df = pd.read_sql_query(
            "SELECT p.id AS photo_id, p.source_kind, p.source_id, p.identity, p.width, p.height, p.nbytes, "
            f"p.path, p.sha256, p.added_at, d.n_faces, d.error AS detect_error{meta} FROM photos p "
            "LEFT JOIN detections d ON d.photo_id = p.id ORDER BY p.id", self.db)
        df["path"] = [str(self.root / p) for p in df["path"]]
        return df

    def faces(self, model: str | None = None) -> pd.DataFrame:
        """Faces as a pandas DataFrame: box, score, landmarks (68 x 2), photo path and identity.

        ``identity`` is the face's label: the photo's identity on its subject face, None on the
        other faces of the photo (bystanders; :mod:`iffse_lib.labels`); ``photo_identity`` is the
        photo's. With ``model``, only faces that have a vector of that model, with a ``row`` column.
        """
        if int(self.get_meta("schema_version", "0")) < 3:  # read-only, not upgraded yet
            df = self._faces_v2(model)
            df["landmarks"] = [np.frombuffer(b, "<f4").reshape(68, 2) for b in df["landmarks"]]
            df["path"] = [str(self.root / p) for p in df["path"]]
            return df
        sql = ("SELECT f.id AS face_id, f.photo_id, f.idx, f.left, f.top, f.right, f.bottom, f.score, f.landmarks, "
               "f.detector, f.identity, p.identity AS photo_identity, p.path, p.source_kind, p.source_id{extra} "
               "FROM faces f "
               "JOIN photos p ON p.id = f.photo_id {join} ORDER BY f.id")
        df = self._faces_query(sql, model)
        df["landmarks"] = [np.frombuffer(b, "<f4").reshape(68, 2) for b in df["landmarks"]]
        df["path"] = [str(self.root / p) for p in df["path"]]
        return df

    def _faces_query(self, sql: str, model: str | None) -> pd.DataFrame:
        """``sql`` (with ``{extra}`` and ``{join}``) as a DataFrame; with ``model``, only faces that
        have a vector of that model, with a ``row`` column."""
        import pandas as pd

        if model is None:
            return pd.read_sql_query(sql.format(extra="", join=""), self.db)
        return pd.read_sql_query(sql.format(extra=", v.row", join="JOIN vectors v ON v.face_id = f.id AND v.model = ?"),
                                 self.db, params=(model,))

    def _faces_v2(self, model: str | None) -> pd.DataFrame:
        """:meth:`faces` of a schema-2 catalogue opened read-only: the face labels computed as the
        upgrade would store them."""
        import pandas as pd

        sql = ("SELECT f.id AS face_id, f.photo_id, f.idx, f.left, f.top, f.right, f.bottom, f.score, f.landmarks, "
               "f.detector, p.identity AS photo_identity, p.path, p.source_kind, p.source_id{extra} "
               "FROM faces f JOIN photos p ON p.id = f.photo_id {join} ORDER BY f.id")
        df = self._faces_query(sql, model)
        label = subject_labels(self.query(
            "SELECT f.id, p.id, p.identity, p.width, p.height, p.source_kind, f.left, f.top, f.right, f.bottom "
            "FROM faces f JOIN photos p ON p.id = f.photo_id ORDER BY p.id, f.idx"))
        df.insert(10, "identity", pd.Series([label.get(int(f)) for f in df["face_id"]], index=df.index, dtype=object))
        return df

    def errors(self) -> pd.DataFrame:
        """Recorded errors as a pandas DataFrame."""
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM errors ORDER BY id", self.db)

    def counts(self) -> dict[str, Any]:
        """How many photos, sources, faces, vectors per model, and errors by kind."""
        out: dict[str, Any] = {
            "photos": self.scalar("SELECT COUNT(*) FROM photos"),
            "photos_detected": self.scalar("SELECT COUNT(*) FROM detections"),
            "photos_without_faces": self.scalar("SELECT COUNT(*) FROM detections WHERE n_faces=0 AND error IS NULL"),
            "faces": self.scalar("SELECT COUNT(*) FROM faces"),
            "identities": self.scalar("SELECT COUNT(DISTINCT identity) FROM photos WHERE identity IS NOT NULL"),
            "vectors": {r[0]: r[1] for r in self.query("SELECT model, COUNT(*) FROM vectors GROUP BY model")},
            "errors": {r[0]: r[1] for r in self.query(
                "SELECT stage || ':' || kind, COUNT(*) FROM errors GROUP BY stage, kind ORDER BY 1")},
        }
        return out

    # -- reads for evaluation (iffse_lib.evaluate) ---------------------------------------------------

    def photo_sizes(self) -> dict[int, tuple[int, int]]:
        """``{photo_id: (width, height)}`` of every photo."""
        return {r[0]: (r[1], r[2]) for r in self.query("SELECT id, width, height FROM photos")}

    def lfw_photos(self) -> list[sqlite3.Row]:
        """The LFW photos: ``source_id`` (the LFW file name), photo ``id``, ``path``, ``width``,
        ``height`` and their detection's ``n_faces``, ``error`` and ``detector`` (None if not detected)."""
        return self.query("SELECT s.source_id, p.id, p.path, p.width, p.height, d.n_faces, d.error, d.detector "
                          "FROM sources s JOIN photos p ON p.id = s.photo_id "
                          "LEFT JOIN detections d ON d.photo_id = p.id WHERE s.kind = 'lfw'")

    def lfw_faces(self, model: str) -> list[sqlite3.Row]:
        """The faces of the LFW photos in photo order: ``photo_id``, face ``id``, ``left``, ``top``,
        ``right``, ``bottom``, whether it has a ``model`` vector, and its ``landmarks`` (bytes)."""
        return self.query("SELECT f.photo_id, f.id, f.left, f.top, f.right, f.bottom, v.face_id IS NOT NULL, "
                          "f.landmarks FROM faces f LEFT JOIN vectors v ON v.face_id = f.id AND v.model = ? "
                          "WHERE f.photo_id IN (SELECT photo_id FROM sources WHERE kind = 'lfw') "
                          "ORDER BY f.photo_id, f.idx", (model,))


def _face_from_row(row: sqlite3.Row) -> Face:
    return Face(face_id=row["id"], photo_id=row["photo_id"],
                box=Box(row["left"], row["top"], row["right"], row["bottom"]), score=row["score"],
                landmarks=np.frombuffer(row["landmarks"], "<f4").reshape(68, 2).copy())

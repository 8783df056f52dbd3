"""The catalogue on disk: one data folder, one writer.

::

    data/
      catalog.sqlite    photos, sources, faces, vectors, models, runs, errors, crawl state (WAL mode)
      raw/ab/abcd….jpg  collected photos, named by the sha256 of their bytes, never modified
      tmp/              photo files being written (renamed into raw/ when complete)
      vectors/<model>.npy   float32 (rows, dim) per model tag, append-only, memory-mapped to read
      index/<model>.*   the Annoy index and its id map (see index.py)

Crash safety: a photo file is written to a temporary name, fsynced and renamed before its row is
committed; vectors are appended and fsynced before the rows that point at them are committed, and
the committed row count of each vector file lives in the database, so on open a file is cut back to
what the database knows. A process killed at any moment therefore leaves a consistent catalogue, and
the same command run again skips the work that was committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from . import config
from .errors import CatalogError, ModelMismatch
from .records import Box, Detection, Face, PhotoRecord

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{}',
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    summary TEXT
);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    source_kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    identity TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    added_at TEXT NOT NULL,
    run_id INTEGER REFERENCES runs(id)
);
CREATE INDEX IF NOT EXISTS photos_identity ON photos(identity);
CREATE TABLE IF NOT EXISTS sources (
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    photo_id INTEGER REFERENCES photos(id) ON DELETE CASCADE,
    error TEXT,
    added_at TEXT NOT NULL,
    PRIMARY KEY (kind, source_id)
);
CREATE INDEX IF NOT EXISTS sources_photo ON sources(photo_id);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    stage TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_kind TEXT,
    source_id TEXT,
    photo_id INTEGER REFERENCES photos(id) ON DELETE CASCADE,
    message TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detections (
    photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    detector TEXT NOT NULL,
    n_faces INTEGER NOT NULL,
    error TEXT,
    run_id INTEGER REFERENCES runs(id)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    score REAL NOT NULL,
    landmarks BLOB NOT NULL,
    detector TEXT NOT NULL,
    UNIQUE (photo_id, idx)
);
CREATE TABLE IF NOT EXISTS models (
    tag TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    n_rows INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES models(tag),
    row INTEGER NOT NULL,
    run_id INTEGER REFERENCES runs(id),
    PRIMARY KEY (face_id, model),
    UNIQUE (model, row)
);
CREATE TABLE IF NOT EXISTS crawl_state (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, key)
);
"""

_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_NPY_HEADER_LEN = 128


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class VectorFile:
    """An append-only float32 ``.npy`` file of shape (rows, dim) whose header is rewritten in place.

    The header is padded to a fixed 128 bytes, so numpy reads the file as it is
    (``np.load(path, mmap_mode="r")``) and appending never moves the data.
    """

    def __init__(self, path: Path, dim: int, committed_rows: int):
        self.path = Path(path)
        self.dim = dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._write_header(0)
        header_rows, header_dim = self._read_header()
        if header_dim != dim:
            raise CatalogError(f"{self.path}: vectors of dimension {header_dim}, expected {dim}")
        rowbytes = 4 * dim
        on_disk = (self.path.stat().st_size - _NPY_HEADER_LEN) // rowbytes
        if on_disk < committed_rows:
            raise CatalogError(
                f"{self.path} holds {on_disk} vectors but the catalogue has {committed_rows}: "
                "the file was truncated or replaced. Delete the model's vectors with "
                "`iffse index --rebuild-vectors` to recompute them.")
        if on_disk != committed_rows or header_rows != committed_rows:
            # Rows past the committed count belong to a batch that never committed.
            with open(self.path, "r+b") as fh:
                fh.truncate(_NPY_HEADER_LEN + committed_rows * rowbytes)
            self._write_header(committed_rows)
        self.rows = committed_rows

    def _header_bytes(self, rows: int) -> bytes:
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, self.dim)
        body = text.encode("latin1")
        pad = _NPY_HEADER_LEN - 10 - len(body) - 1
        return b"\x93NUMPY\x01\x00" + (_NPY_HEADER_LEN - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"

    def _write_header(self, rows: int) -> None:
        mode = "r+b" if self.path.exists() else "wb"
        with open(self.path, mode) as fh:
            fh.seek(0)
            fh.write(self._header_bytes(rows))
            fh.flush()
            os.fsync(fh.fileno())

    def _read_header(self) -> tuple[int, int]:
        with open(self.path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version != (1, 0):
                    raise ValueError(f"npy format version {version}")
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            except ValueError as exc:
                raise CatalogError(f"{self.path} is not a vector file ({exc})") from None
            if fh.tell() != _NPY_HEADER_LEN or dtype != np.dtype("<f4") or fortran or len(shape) != 2:
                raise CatalogError(f"{self.path} is not an iffse vector file (header {shape}, {dtype})")
        return int(shape[0]), int(shape[1])

    def append(self, vectors: np.ndarray) -> int:
        """Append (n, dim) vectors, fsync, and return the first new row number."""
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        start = self.rows
        with open(self.path, "r+b") as fh:
            fh.seek(_NPY_HEADER_LEN + start * 4 * self.dim)
            fh.write(vectors.tobytes())
            fh.seek(0)
            fh.write(self._header_bytes(start + len(vectors)))
            fh.flush()
            os.fsync(fh.fileno())
        self.rows = start + len(vectors)
        return start

    def array(self) -> np.ndarray:
        """The committed rows as a read-only memory map."""
        if self.rows == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.memmap(self.path, dtype="<f4", mode="r", offset=_NPY_HEADER_LEN, shape=(self.rows, self.dim))


class Catalog:
    """The catalogue in ``data_dir``; created on first use.

    One process writes at a time (SQLite serialises writers; a second writer waits up to 60 s).
    Methods may be called from several threads; writes are serialised by a lock.
    """

    def __init__(self, data_dir: str | Path | None = None, *, create: bool = True):
        self.root = Path(data_dir if data_dir is not None else config.DATA_DIR).resolve()
        self.db_path = self.root / "catalog.sqlite"
        if not self.db_path.exists() and not create:
            raise CatalogError(
                f"no catalogue in {self.root}. Collect photos first, e.g. `iffse collect lfw --data {self.root}`.")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "raw").mkdir(exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self._remove_stale_temporaries()
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.db_path, timeout=60, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise CatalogError(f"{self.db_path} has schema version {row[0]}; this iffse reads {SCHEMA_VERSION}")
        self._vector_files: dict[str, VectorFile] = {}
        self.run_id: int | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def _remove_stale_temporaries(self) -> None:
        """Delete half-written photo files left by a process that was killed."""
        for tmp in (self.root / "tmp").glob("*.tmp"):
            try:
                pid = int(tmp.name.split(".")[-3])
                os.kill(pid, 0)  # the writer is still alive: leave its file alone
            except (ValueError, IndexError, ProcessLookupError):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            except PermissionError:
                pass

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query; ``params`` positional (``?``) or named (``:name``)."""
        with self._lock:
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

    def photo_path(self, photo_id: int) -> Path:
        rel = self.scalar("SELECT path FROM photos WHERE id=?", (photo_id,))
        if rel is None:
            raise CatalogError(f"no photo {photo_id} in {self.root}")
        return self.root / rel

    def store_photo(self, record: PhotoRecord, data: bytes, width: int, height: int, ext: str) -> tuple[int, bool]:
        """Store validated photo bytes from ``record``; returns (photo_id, newly stored).

        Identical bytes are stored once: a second source of the same bytes is linked to the first
        photo. The file is on disk (fsynced, renamed into place) before its row commits.
        """
        digest = hashlib.sha256(data).hexdigest()
        rel = f"raw/{digest[:2]}/{digest}{ext}"
        target = self.root / rel
        existing = self.query("SELECT id FROM photos WHERE sha256=?", (digest,))
        if not existing and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.root / "tmp" / f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
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
            db.execute("INSERT OR REPLACE INTO sources (kind, source_id, photo_id, error, added_at) "
                       "VALUES (?, ?, ?, NULL, ?)", (record.kind, record.source_id, photo_id, now()))
        return photo_id, created

    def reject_source(self, record: PhotoRecord, stage: str, kind: str, message: str) -> None:
        """Record that a source's photo was rejected, so a rerun skips it and reports it."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO sources (kind, source_id, photo_id, error, added_at) "
                       "VALUES (?, ?, NULL, ?, ?)", (record.kind, record.source_id, kind, now()))
            self.record_error(stage, kind, message, source_kind=record.kind, source_id=record.source_id, db=db)

    def remove_photos(self, photo_ids: Iterable[int]) -> int:
        """Remove photos, their faces and vector rows, and their files. Returns how many went."""
        ids = [int(i) for i in photo_ids]
        if not ids:
            return 0
        paths = []
        with self.transaction() as db:
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                marks = ",".join("?" * len(part))
                paths += [r[0] for r in db.execute(f"SELECT path FROM photos WHERE id IN ({marks})", part)]
                db.execute(f"DELETE FROM vectors WHERE face_id IN (SELECT id FROM faces WHERE photo_id IN ({marks}))", part)
                db.execute(f"DELETE FROM faces WHERE photo_id IN ({marks})", part)
                db.execute(f"DELETE FROM detections WHERE photo_id IN ({marks})", part)
                db.execute(f"DELETE FROM errors WHERE photo_id IN ({marks})", part)
                db.execute(f"UPDATE sources SET photo_id=NULL, error='forgotten' WHERE photo_id IN ({marks})", part)
                db.execute(f"DELETE FROM photos WHERE id IN ({marks})", part)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")
        for rel in paths:
            with contextlib.suppress(FileNotFoundError):
                (self.root / rel).unlink()
        return len(paths)

    # -- faces and vectors ------------------------------------------------------------------
    def model_info(self, tag: str) -> dict[str, Any] | None:
        rows = self.query("SELECT tag, dim, n_rows FROM models WHERE tag=?", (tag,))
        return dict(rows[0]) if rows else None

    def model_tags(self) -> list[str]:
        return [r[0] for r in self.query("SELECT tag FROM models ORDER BY tag")]

    def vector_file(self, tag: str, dim: int | None = None) -> VectorFile:
        if not _TAG_RE.match(tag):
            raise ValueError(f"model tag {tag!r} may hold letters, digits and . _ + - only")
        info = self.model_info(tag)
        if info is None:
            if dim is None:
                raise ModelMismatch(f"no vectors of model {tag!r} in {self.root}; models here: {self.model_tags()}")
            with self.transaction() as db:
                db.execute("INSERT OR IGNORE INTO models (tag, dim, n_rows, created_at) VALUES (?, ?, 0, ?)",
                           (tag, dim, now()))
            info = self.model_info(tag)
        if dim is not None and info["dim"] != dim:
            raise ModelMismatch(f"model {tag!r} has {info['dim']}-d vectors in this catalogue, not {dim}-d")
        vf = self._vector_files.get(tag)
        if vf is None or vf.rows != info["n_rows"]:
            vf = VectorFile(self.root / "vectors" / f"{tag}.npy", info["dim"], info["n_rows"])
            self._vector_files[tag] = vf
        return vf

    def save_batch(self, detector: str, detected: dict[int, list[Detection] | str],
                   model: str | None, vectors: np.ndarray | None, vector_faces: list[tuple[int, int]]) -> None:
        """Commit one pipeline batch atomically.

        ``detected`` maps photo_id -> its new detections (or an error kind for a photo that failed);
        ``vector_faces`` lists, row by row of ``vectors``, the face each belongs to as
        (photo_id, idx) so that faces detected in this same batch can be referenced.
        """
        vf = None
        start = 0
        if model is not None and vectors is not None and len(vectors):
            vf = self.vector_file(model, vectors.shape[1])
            start = vf.append(vectors)  # fsynced before the rows that point at it commit
        with self.transaction() as db:
            for photo_id, result in detected.items():
                if isinstance(result, str):
                    db.execute("INSERT OR REPLACE INTO detections (photo_id, detector, n_faces, error, run_id) "
                               "VALUES (?, ?, 0, ?, ?)", (photo_id, detector, result, self.run_id))
                    continue
                # A photo detected again (another detector): its old faces and their vectors go.
                if db.execute("DELETE FROM vectors WHERE face_id IN (SELECT id FROM faces WHERE photo_id=?)",
                              (photo_id,)).rowcount:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")
                db.execute("DELETE FROM faces WHERE photo_id=?", (photo_id,))
                db.execute("INSERT OR REPLACE INTO detections (photo_id, detector, n_faces, error, run_id) "
                           "VALUES (?, ?, ?, NULL, ?)", (photo_id, detector, len(result), self.run_id))
                db.executemany(
                    "INSERT INTO faces (photo_id, idx, left, top, right, bottom, score, landmarks, detector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(photo_id, i, d.box.left, d.box.top, d.box.right, d.box.bottom, d.score,
                      np.asarray(d.landmarks, "<f4").tobytes(), detector) for i, d in enumerate(result)])
            if vf is not None:
                face_ids = [db.execute("SELECT id FROM faces WHERE photo_id=? AND idx=?", key).fetchone()[0]
                            for key in vector_faces]
                db.executemany("INSERT INTO vectors (face_id, model, row, run_id) VALUES (?, ?, ?, ?)",
                               [(fid, model, start + i, self.run_id) for i, fid in enumerate(face_ids)])
                db.execute("UPDATE models SET n_rows=? WHERE tag=?", (vf.rows, model))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('index_stale', '1')")

    def vectors(self, model: str, face_ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids, vectors) of ``model``, ordered by face id; vectors are a float32 copy."""
        vf = self.vector_file(model)
        if face_ids is None:
            rows = self.query("SELECT face_id, row FROM vectors WHERE model=? ORDER BY face_id", (model,))
        else:
            wanted = [int(f) for f in face_ids]
            rows = []
            for chunk in range(0, len(wanted), 500):
                part = wanted[chunk:chunk + 500]
                rows += self.query(f"SELECT face_id, row FROM vectors WHERE model=? AND face_id IN "
                                   f"({','.join('?' * len(part))})", [model, *part])
            rows.sort(key=lambda r: r[0])
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        rownums = np.array([r[1] for r in rows], dtype=np.int64)
        return ids, np.asarray(vf.array()[rownums], dtype=np.float32)

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
    def photos(self) -> pd.DataFrame:
        """Photos as a pandas DataFrame (one row per photo, with its face count; absolute paths)."""
        import pandas as pd

        df = pd.read_sql_query(
            "SELECT p.id AS photo_id, p.source_kind, p.source_id, p.identity, p.width, p.height, p.nbytes, "
            "p.path, p.sha256, p.added_at, d.n_faces, d.error AS detect_error FROM photos p "
            "LEFT JOIN detections d ON d.photo_id = p.id ORDER BY p.id", self.db)
        df["path"] = [str(self.root / p) for p in df["path"]]
        return df

    def faces(self, model: str | None = None) -> pd.DataFrame:
        """Faces as a pandas DataFrame: box, score, landmarks (68 x 2), photo path and identity.

        With ``model``, only faces that have a vector of that model, with a ``row`` column.
        """
        import pandas as pd

        sql = ("SELECT f.id AS face_id, f.photo_id, f.idx, f.left, f.top, f.right, f.bottom, f.score, f.landmarks, "
               "f.detector, p.identity, p.path, p.source_kind, p.source_id{extra} FROM faces f "
               "JOIN photos p ON p.id = f.photo_id {join} ORDER BY f.id")
        if model is None:
            df = pd.read_sql_query(sql.format(extra="", join=""), self.db)
        else:
            df = pd.read_sql_query(sql.format(extra=", v.row", join="JOIN vectors v ON v.face_id = f.id AND v.model = ?"),
                                   self.db, params=(model,))
        df["landmarks"] = [np.frombuffer(b, "<f4").reshape(68, 2) for b in df["landmarks"]]
        df["path"] = [str(self.root / p) for p in df["path"]]
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


def _face_from_row(row: sqlite3.Row) -> Face:
    return Face(face_id=row["id"], photo_id=row["photo_id"],
                box=Box(row["left"], row["top"], row["right"], row["bottom"]), score=row["score"],
                landmarks=np.frombuffer(row["landmarks"], "<f4").reshape(68, 2).copy())

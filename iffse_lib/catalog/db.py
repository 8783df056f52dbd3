"""The catalogue's database: opening it (one writer, any number of readers), its schema and
migrations, transactions, and the small tables every part uses (meta, runs, errors, crawl
state). :class:`Database` is the base of :class:`iffse_lib.catalog.Catalog`."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from .. import config
from ..errors import CatalogDamaged, CatalogError, CatalogLocked, IffseError, ModelMismatch, WriterInWorker
from ..labels import subject_labels
from ..storage import (ID_FILE, VectorFile, VectorFiles, WriterLock, check_data_folder, disk_errors,
                       importing_main_again, prepare_folder, read_id_file, sqlite_errors, write_id_file)
from .sql import SQL, script

SCHEMA_VERSION = 3

_LOCK_FILE = "catalog.lock"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def ids_json(ids: Iterable[int]) -> str:
    """Ids as the one JSON-array parameter a statement reads with ``json_each``."""
    return json.dumps([int(i) for i in ids])


def label_subjects(db: sqlite3.Connection, photo_ids: Iterable[int] | None = None) -> None:
    """Set ``faces.identity``: a labelled photo's identity on its subject face only (the rule of
    :mod:`iffse_lib.labels`), NULL on every other face; for ``photo_ids``, or every photo."""
    rows = (db.execute(SQL.labels_of_all) if photo_ids is None
            else db.execute(SQL.labels_of_photos, (ids_json(photo_ids),))).fetchall()
    db.executemany(SQL.face_label_set, [(label, face_id) for face_id, label in subject_labels(rows).items()])


#: schema 1 -> 2: sources remember the file's size and mtime, and whether a failure may pass;
#: 2 -> 3: identities label faces (the subject of a labelled photo), not every face of the photo.
#: A step is a script of catalog.sql or a function of the connection (a data migration).
MIGRATIONS: dict[int, list[str | Callable[[sqlite3.Connection], None]]] = {
    1: ["migrate_1"],
    2: ["migrate_2", label_subjects],
}


def _stderr(message: str) -> None:
    print(f"iffse: {message}", file=sys.stderr, flush=True)


class Database:
    """The connection to ``catalog.sqlite`` in ``data_dir``, its writer's lock and vector files
    (see :class:`iffse_lib.catalog.Catalog`, which adds what the catalogue holds)."""

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
            db.execute(SQL.probe).fetchall()
            return db
        except sqlite3.OperationalError:
            # A folder nobody may write (a shared, finished collection): nothing can change it, so
            # SQLite may read it as immutable, without the -shm file it cannot create.
            return sqlite3.connect(uri + "?immutable=1", uri=True, check_same_thread=False, isolation_level=None)

    def _open_db(self) -> None:
        if not self.readonly and self.db_path.exists() and self.db_path.stat().st_size > 0:
            # Check what the files hold through a read-only connection first: one that may write
            # would copy a foreign -wal file into the database when it closes.
            type(self)(self.root, readonly=True).close()
        with self._sql_errors():
            self.db = self._connect()
            self.db.row_factory = sqlite3.Row
            for statement in script("reader_settings" if self.readonly else "writer_settings"):
                self.db.execute(statement)
            tables = {r[0] for r in self.db.execute(SQL.tables)}
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
        """Make or upgrade the schema, give the catalogue its id, and repair what a killed writer
        left: temporary files, runs still marked running, vector rows that never committed."""
        prepare_folder(self.root)
        with self.transaction() as db:
            if "meta" in tables:
                version = int(db.execute(SQL.meta_get, ("schema_version",)).fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise CatalogError(f"{self.db_path} has schema version {version}; this iffse reads up to "
                                       f"{SCHEMA_VERSION}. Upgrade iffse.")
                for old in range(version, SCHEMA_VERSION):
                    for step in MIGRATIONS[old]:
                        if callable(step):
                            step(db)
                        else:
                            for statement in script(step):
                                db.execute(statement)
            for statement in script("schema"):
                db.execute(statement)
            db.execute(SQL.meta_set, ("schema_version", str(SCHEMA_VERSION)))
            if db.execute(SQL.meta_get, ("catalog_id",)).fetchone() is None:
                db.execute(SQL.meta_set, ("catalog_id", read_id_file(self.root) or uuid.uuid4().hex))
            db.execute(SQL.runs_killed, (now(),))
        write_id_file(self.root, self.catalog_id)
        with self.transaction() as db:
            for tag, dim, n_rows in db.execute(SQL.models).fetchall():
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

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}{', readonly=True' if self.readonly else ''})"

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
            self.db.execute(SQL.begin_write)
            try:
                yield self.db
                self.db.execute(SQL.count_commit)
            except BaseException:
                self.db.execute(SQL.rollback)
                raise
            self.db.execute(SQL.commit)

    @contextlib.contextmanager
    def snapshot(self):
        """Reads inside see one consistent state of the catalogue, whatever a writer commits meanwhile."""
        with self._lock, self._sql_errors():
            if self.db.in_transaction:
                yield self
                return
            self.db.execute(SQL.begin_read)
            try:
                yield self
            finally:
                self.db.execute(SQL.commit)

    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query; ``params`` positional (``?``) or named (``:name``)."""
        with self._lock, self._sql_errors():
            return self.db.execute(sql, params if isinstance(params, dict) else tuple(params)).fetchall()

    def scalar(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def integrity_problems(self) -> list[str]:
        """What SQLite's ``integrity_check`` and ``foreign_key_check`` find (empty when sound)."""
        found = [r[0] for r in self.query(SQL.integrity_check) if r[0] != "ok"]
        found += [f"row {r[1]} of {r[0]} points at a missing {r[2]}" for r in self.query(SQL.foreign_key_check)]
        return found

    # -- runs and errors --------------------------------------------------------------------
    def start_run(self, command: str, args: dict[str, Any] | None = None) -> int:
        with self.transaction() as db:
            cur = db.execute(SQL.run_start, (command, json.dumps(args or {}, default=str, sort_keys=True), now()))
        self.run_id = cur.lastrowid
        return self.run_id

    def finish_run(self, status: str = "ok", summary: dict[str, Any] | None = None) -> None:
        if self.run_id is None:
            return
        with self.transaction() as db:
            db.execute(SQL.run_finish, (now(), status, json.dumps(summary or {}, default=str), self.run_id))
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
        params = (self.run_id, stage, kind, source_kind, source_id, photo_id, message, now())
        if db is not None:
            db.execute(SQL.error_add, params)
        else:
            with self.transaction() as db2:
                db2.execute(SQL.error_add, params)

    # -- crawl state and flags ----------------------------------------------------------------
    def get_state(self, source: str, key: str) -> dict[str, Any] | None:
        value = self.scalar(SQL.state_get, (source, key))
        return json.loads(value) if value is not None else None

    def set_state(self, source: str, key: str, state: dict[str, Any] | None) -> None:
        with self.transaction() as db:
            if state is None:
                db.execute(SQL.state_delete, (source, key))
            else:
                db.execute(SQL.state_set, (source, key, json.dumps(state, sort_keys=True), now()))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar(SQL.meta_get, (key,))
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(SQL.meta_set, (key, value))

    # -- models and their vector files --------------------------------------------------------
    def model_info(self, tag: str) -> dict[str, Any] | None:
        rows = self.query(SQL.model_get, (tag,))
        return dict(rows[0]) if rows else None

    def model_tags(self) -> list[str]:
        return [r[0] for r in self.query(SQL.models)]

    def _writable_vector_file(self, tag: str, dim: int | None = None, n_rows: int | None = None) -> VectorFile:
        """The writer's vector file of ``tag`` at the committed row count (read inside the caller's
        transaction when ``n_rows`` is not given)."""
        if dim is None or n_rows is None:
            _, dim, n_rows = self.db.execute(SQL.model_get, (tag,)).fetchone()
        return self._vector_files.writable(tag, dim, n_rows)

    def vector_file(self, tag: str, dim: int | None = None) -> VectorFile:
        """The committed vectors of model ``tag`` (ModelMismatch when the catalogue has none, or
        they are not ``dim``-dimensional)."""
        check_tag(tag)
        info = self.model_info(tag)
        if info is None:
            raise ModelMismatch(f"no vectors of model {tag!r} in {self.root}; models here: {self.model_tags()}")
        if dim is not None and info["dim"] != dim:
            raise ModelMismatch(f"model {tag!r} has {info['dim']}-d vectors in this catalogue, not {dim}-d")
        if self.readonly:
            return VectorFile(self.root / "vectors" / f"{tag}.npy", info["dim"], info["n_rows"])
        with self._lock:
            return self._vector_files.current(tag, info["dim"], info["n_rows"])


_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_tag(tag: str) -> None:
    """A model tag names a file: letters, digits and . _ + - only (ValueError otherwise)."""
    if not _TAG.match(tag):
        raise ValueError(f"model tag {tag!r} may hold letters, digits and . _ + - only")

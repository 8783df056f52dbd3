"""The files a catalogue owns beside its database: the writer lock, the id file, the photo and
temporary folders, and the vector files.

:class:`WriterLock` is an OS lock (``flock``) on ``catalog.lock``: the one writer holds it for as
long as its :class:`~iffse_lib.catalog.Catalog` is open, and writes its pid and command into the
file so that a second writer can say who it waits for. The lock goes with the process, so a
killed writer never leaves a stale lock behind.

:class:`VectorFile` is an append-only float32 ``.npy`` file of shape (rows, dim). Only rows below
the catalogue's committed row count are ever read; rows past it belong to a batch that has not
committed (yet, or ever) and are overwritten by the writer's next append.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import CatalogDamaged, CatalogError, CatalogLocked, DiskFull

NPY_HEADER_LEN = 128
#: errno values that mean the disk (or a file size limit) is full
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def disk_errors(where: Path) -> Iterator[None]:
    """Turn a full disk while writing under ``where`` into :class:`DiskFull` (one line)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise DiskFull(f"no space left to write under {where} ({exc.strerror}): free some space and run the "
                           "same command again; what was committed is kept") from None
        raise


@contextlib.contextmanager
def sqlite_errors(db_path: Path) -> Iterator[None]:
    """SQLite's errors as one-line iffse errors: a full disk, a lock held too long, or a damaged database."""
    root = db_path.parent
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "full" in text:
            raise DiskFull(f"no space left to write {db_path} ({text}): free some space and run the same "
                           "command again; what was committed is kept") from None
        if "locked" in text or "busy" in text:
            raise CatalogLocked(f"{db_path} stayed locked by another process ({text}); try again") from None
        if "readonly" in text or "read-only" in text:
            raise CatalogLocked(f"{db_path} cannot be written here ({text})") from None
        raise CatalogDamaged(f"{db_path} cannot be read ({text}). Run `iffse check --data {root}`.") from None
    except sqlite3.DatabaseError as exc:
        raise CatalogDamaged(f"{db_path} is damaged ({exc}): restore it from a backup; "
                             f"`iffse check --data {root}` says more") from None


def check_data_folder(root: Path, db_path: Path, may_create: bool) -> None:
    """Refuse a data folder that is a file, one whose database is gone while photos or vectors
    remain (it is not a new catalogue), and a missing catalogue unless ``may_create``."""
    if root.exists() and not root.is_dir():
        raise CatalogError(f"{root} is a file, not a catalogue folder: pass --data a folder")
    if db_path.is_file() and db_path.stat().st_size > 0:
        return
    if any(p.is_file() for sub in ("raw", "vectors") if (root / sub).is_dir() for p in (root / sub).rglob("*")):
        what = "empty" if db_path.exists() else "missing"
        raise CatalogDamaged(
            f"{root} holds photos or vectors but its {db_path.name} is {what}, so it is not a new "
            "catalogue: restore it from a backup, or move the folder aside to start afresh")
    if not may_create:
        raise CatalogError(
            f"no catalogue in {root}. Collect photos first, e.g. `iffse collect lfw --data {root}`.")


ID_FILE = "catalog.id"


def importing_main_again() -> bool:
    """True while multiprocessing imports the main script again in a worker process (spawn and
    forkserver workers do, as ``__mp_main__``): such a process must not become a writer."""
    import multiprocessing

    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def prepare_folder(root: Path) -> None:
    """Make ``raw/`` and ``tmp/`` and remove the temporary files a killed writer left in ``tmp/``
    (call it holding the writer's lock: every writer before is gone)."""
    (root / "raw").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    for tmp in (root / "tmp").glob("*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_id_file(root: Path) -> str:
    """The catalogue id written in ``catalog.id`` ("" when there is none)."""
    path = root / ID_FILE
    return path.read_text().strip() if path.exists() else ""


def write_id_file(root: Path, ident: str) -> None:
    """Write ``catalog.id`` (through ``tmp/`` and a rename) unless it exists."""
    if (root / ID_FILE).exists():
        return
    with disk_errors(root):
        tmp = root / "tmp" / ID_FILE
        tmp.write_text(ident + "\n")
        os.replace(tmp, root / ID_FILE)


def write_atomically(target: Path, data: bytes, tmp_dir: Path) -> bool:
    """Write ``data`` to ``target`` unless it exists: to a temporary file in ``tmp_dir``, fsynced,
    then renamed into place (the directory fsynced too). Returns whether it wrote."""
    if target.exists():
        return False
    with disk_errors(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.replace(tmp, target)
        fsync_dir(target.parent)
    return True


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class WriterLock:
    """The exclusive lock of the one writer of a catalogue (``flock`` on ``path``).

    A second writer waits, after saying so through ``on_wait``, or with ``wait=False`` raises
    :class:`CatalogLocked`. Opening a second writer of the same catalogue in one process is an
    error rather than a deadlock.
    """

    _held: dict[str, "WriterLock"] = {}  # this process's locks, by path

    def __init__(self, path: Path, command: str, *, wait: bool = True,
                 on_wait: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.command = command
        self.wait = wait
        self.on_wait = on_wait
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (``iffse index (pid 123)``)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"{info['command']} (pid {info['pid']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "process"

    def acquire(self) -> "WriterLock":
        key = str(self.path)
        if key in WriterLock._held:
            raise CatalogLocked(f"this process already has {self.path.parent} open for writing: close that "
                                "Catalog first, or open this one with readonly=True")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CatalogLocked(f"{self.path.parent} cannot be written here ({exc.strerror}); commands that only "
                                "read it (search, stats, check) still work") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.holder()
                if not self.wait:
                    raise CatalogLocked(f"{self.path.parent} is being written by another {holder}; run the command "
                                        "again when it has finished, or without --no-wait to wait for it") from None
                message = f"waiting for the catalogue: another {holder} holds it"
                if self.on_wait is not None:
                    self.on_wait(message)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": self.command}).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        WriterLock._held[key] = self
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        WriterLock._held.pop(str(self.path), None)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


class VectorFile:
    """A float32 ``.npy`` file of shape (rows, dim) whose first ``rows`` rows are committed.

    The header is padded to a fixed 128 bytes, so numpy reads the file as it is
    (``np.load(path, mmap_mode="r")``) and appending never moves the data. Readers only map the
    committed rows; only a writer inside a catalogue transaction appends, zeroes or truncates.
    """

    def __init__(self, path: Path, dim: int, committed_rows: int, *, writable: bool = False):
        self.path = Path(path)
        self.dim = dim
        self.writable = writable
        if not self.path.exists():
            if committed_rows:
                raise CatalogDamaged(f"{self.path} is missing but the catalogue has {committed_rows} vectors in it. "
                                     "Run `iffse check --repair` to recompute them from the raw photos.")
            if writable:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with disk_errors(self.path.parent):
                    self._write_header(0)
        else:
            header_rows, header_dim = self.read_header(self.path)
            if header_dim != dim:
                raise CatalogDamaged(f"{self.path} holds vectors of dimension {header_dim}, the catalogue says {dim}. "
                                     "Run `iffse check --repair`.")
            if self.rows_on_disk() < committed_rows:
                raise CatalogDamaged(
                    f"{self.path} holds {self.rows_on_disk()} vectors but the catalogue has {committed_rows}: the "
                    "file was truncated or replaced. Run `iffse check --repair` to recompute the missing vectors "
                    "from the raw photos.")
        self.rows = committed_rows

    @property
    def rowbytes(self) -> int:
        return 4 * self.dim

    def rows_on_disk(self) -> int:
        if not self.path.exists():
            return 0
        return max(0, (self.path.stat().st_size - NPY_HEADER_LEN) // self.rowbytes)

    def _header_bytes(self, rows: int) -> bytes:
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, self.dim)
        body = text.encode("latin1")
        pad = NPY_HEADER_LEN - 10 - len(body) - 1
        return b"\x93NUMPY\x01\x00" + (NPY_HEADER_LEN - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"

    def _write_header(self, rows: int) -> None:
        mode = "r+b" if self.path.exists() else "wb"
        with open(self.path, mode) as fh:
            fh.seek(0)
            fh.write(self._header_bytes(rows))
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def read_header(path: Path) -> tuple[int, int]:
        """(rows, dim) from a vector file's header; CatalogDamaged when it is not one."""
        with open(path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version != (1, 0):
                    raise ValueError(f"npy format version {version}")
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            except (ValueError, EOFError) as exc:
                raise CatalogDamaged(f"{path} is not a vector file ({exc}). Run `iffse check --repair`.") from None
            if fh.tell() != NPY_HEADER_LEN or dtype != np.dtype("<f4") or fortran or len(shape) != 2:
                raise CatalogDamaged(f"{path} is not an iffse vector file (header {shape}, {dtype}). "
                                     "Run `iffse check --repair`.")
        return int(shape[0]), int(shape[1])

    def _check_writable(self) -> None:
        if not self.writable:
            raise CatalogLocked(f"{self.path} is open for reading only")

    def append(self, vectors: np.ndarray) -> int:
        """Write (n, dim) vectors after the committed rows, drop anything past them, fsync; return
        the first new row. Call inside the catalogue transaction that commits the new count."""
        self._check_writable()
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        start = self.rows
        with disk_errors(self.path.parent), open(self.path, "r+b") as fh:
            fh.seek(NPY_HEADER_LEN + start * self.rowbytes)
            fh.write(vectors.tobytes())
            fh.truncate(NPY_HEADER_LEN + (start + len(vectors)) * self.rowbytes)
            fh.seek(0)
            fh.write(self._header_bytes(start + len(vectors)))
            fh.flush()
            os.fsync(fh.fileno())
        self.rows = start + len(vectors)
        return start

    def cut_to_committed(self) -> int:
        """Cut off rows past the committed count (a batch that never committed); returns how many went."""
        self._check_writable()
        extra = self.rows_on_disk() - self.rows
        header_rows = self.read_header(self.path)[0] if self.path.exists() else 0
        if extra or header_rows != self.rows:
            with open(self.path, "r+b") as fh:
                fh.truncate(NPY_HEADER_LEN + self.rows * self.rowbytes)
            self._write_header(self.rows)
        return max(extra, 0)

    def zero_rows(self, rows: np.ndarray) -> None:
        """Overwrite these rows with zeros and fsync (erasing vectors nothing refers to any more)."""
        self._check_writable()
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        rows = rows[(rows >= 0) & (rows < self.rows_on_disk())]
        if not len(rows):
            return
        zero = bytes(self.rowbytes)
        with disk_errors(self.path.parent), open(self.path, "r+b") as fh:
            for r in rows.tolist():
                fh.seek(NPY_HEADER_LEN + r * self.rowbytes)
                fh.write(zero)
            fh.flush()
            os.fsync(fh.fileno())

    def array(self) -> np.ndarray:
        """The committed rows as a read-only memory map."""
        if self.rows == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.memmap(self.path, dtype="<f4", mode="r", offset=NPY_HEADER_LEN, shape=(self.rows, self.dim))


class VectorFiles:
    """A writer's open vector files, one per model tag, under ``folder`` (``vectors/``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._open: dict[str, VectorFile] = {}

    def writable(self, tag: str, dim: int, n_rows: int) -> VectorFile:
        """The writable file of ``tag`` at ``n_rows`` committed rows."""
        vf = self._open.get(tag)
        if vf is None or not vf.writable:
            vf = VectorFile(self.folder / f"{tag}.npy", dim, n_rows, writable=True)
            self._open[tag] = vf
        vf.rows = n_rows
        return vf

    def current(self, tag: str, dim: int, n_rows: int) -> VectorFile:
        """The open file of ``tag`` if it is at ``n_rows`` rows, else the file opened again."""
        vf = self._open.get(tag)
        if vf is None or vf.rows != n_rows:
            vf = VectorFile(self.folder / f"{tag}.npy", dim, n_rows, writable=True)
            self._open[tag] = vf
        return vf

    def forget(self, tag: str) -> None:
        """Forget the open file of ``tag`` (its length changed on disk)."""
        self._open.pop(tag, None)

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

The package, one concern a module: :mod:`~iffse_lib.catalog.db` (opening, schema, transactions,
runs, errors, crawl state), :mod:`~iffse_lib.catalog.photos` (sources, photos, ``forget``),
:mod:`~iffse_lib.catalog.vectors` (faces and vectors: what indexing reads and commits),
:mod:`~iffse_lib.catalog.views` (faces by id, the tables notebooks show, counts). Every SQL
statement they run is written out in ``catalog.sql`` (:mod:`~iffse_lib.catalog.sql`), nowhere else.
"""

from __future__ import annotations

from .db import MIGRATIONS, SCHEMA_VERSION, now
from .photos import OPTOUT_SOURCE, RETRYABLE, Photos
from .vectors import Vectors
from .views import Views

__all__ = ["Catalog", "MIGRATIONS", "OPTOUT_SOURCE", "RETRYABLE", "SCHEMA_VERSION", "now"]


class Catalog(Photos, Vectors, Views):
    """The catalogue in ``data_dir``.

    Writers (the default) hold the catalogue's lock until :meth:`close`; ``create`` makes a new
    catalogue where there is none. ``readonly=True`` opens an existing catalogue for reading
    only: nothing on disk is written. ``wait=False`` raises CatalogLocked instead of waiting
    for another writer; ``on_wait`` gets the waiting message (default: printed on stderr).
    Methods may be called from several threads; writes are serialised by a lock.
    """

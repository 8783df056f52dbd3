"""Reads of what the catalogue holds: faces by id, the tables notebooks show (photos, faces,
errors), counts, and the LFW rows evaluation works from."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..errors import CatalogError
from ..labels import subject_labels
from ..records import Box, Face
from .db import Database, ids_json
from .sql import SQL

if TYPE_CHECKING:
    import pandas as pd


class Views(Database):
    """Faces, tables and counts."""

    #: Post metadata shown as columns by :meth:`photos` (None where a source does not give it;
    #: hashtags and mentions as JSON lists).
    PHOTO_META_COLUMNS = ("shortcode", "username", "taken_at", "like_count", "comment_count", "hashtags",
                          "mentions", "location", "original_width", "original_height", "accessibility_caption",
                          "product_type", "tab")

    def _schema_version(self) -> int:
        return int(self.get_meta("schema_version", "0"))

    def face(self, face_id: int) -> Face:
        rows = self.query(SQL.face, (face_id,))
        if not rows:
            raise CatalogError(f"no face {face_id} in {self.root}")
        return _face_from_row(rows[0])

    def faces_of_photo(self, photo_id: int) -> list[Face]:
        return [_face_from_row(r) for r in self.query(SQL.faces_of_photo, (photo_id,))]

    def face_rows(self, face_ids: Iterable[int]) -> dict[int, sqlite3.Row]:
        """``{face_id: row}`` with each face's photo_id, box, identity (the face's label: None for a
        bystander) and (relative) path."""
        # a schema-2 catalogue read without upgrading has labels on photos only
        sql = SQL.face_rows if self._schema_version() >= 3 else SQL.face_rows_v2
        return {r[0]: r for r in self.query(sql, (ids_json(face_ids),))}

    def first_face_of_a_repeated_identity(self, model: str) -> sqlite3.Row | None:
        """(face id, identity, path) of the first face with a ``model`` vector whose identity has
        several photos (the demo's example query), or None."""
        rows = self.query(SQL.first_face_of_a_repeated_identity, (model,))
        return rows[0] if rows else None

    # -- tables for notebooks -------------------------------------------------------------------
    def photos(self) -> pd.DataFrame:
        """Photos as a pandas DataFrame (one row per photo, with its face count; absolute paths),
        with the post metadata of :attr:`PHOTO_META_COLUMNS`."""
        import pandas as pd

        df = pd.read_sql_query(SQL.photos_table, self.db)
        df["path"] = [str(self.root / p) for p in df["path"]]
        return df

    def faces(self, model: str | None = None) -> pd.DataFrame:
        """Faces as a pandas DataFrame: box, score, landmarks (68 x 2), photo path and identity.

        ``identity`` is the face's label: the photo's identity on its subject face, None on the
        other faces of the photo (bystanders; :mod:`iffse_lib.labels`); ``photo_identity`` is the
        photo's. With ``model``, only faces that have a vector of that model, with a ``row`` column.
        """
        import pandas as pd

        v2 = self._schema_version() < 3  # read-only, not upgraded yet: labels computed as the upgrade would
        df = pd.read_sql_query(SQL.faces_table_v2 if v2 else SQL.faces_table, self.db, params={"model": model})
        if model is None:
            df = df.drop(columns="row")
        if v2:
            label = subject_labels(self.query(SQL.labels_of_all))
            df.insert(10, "identity", pd.Series([label.get(int(f)) for f in df["face_id"]], index=df.index,
                                                dtype=object))
        df["landmarks"] = [np.frombuffer(b, "<f4").reshape(68, 2) for b in df["landmarks"]]
        df["path"] = [str(self.root / p) for p in df["path"]]
        return df

    def errors(self) -> pd.DataFrame:
        """Recorded errors as a pandas DataFrame."""
        import pandas as pd

        return pd.read_sql_query(SQL.errors_table, self.db)

    def counts(self) -> dict[str, Any]:
        """How many photos, sources, faces, vectors per model, and errors by kind."""
        out: dict[str, Any] = dict(self.query(SQL.counts)[0])
        out["vectors"] = {r[0]: r[1] for r in self.query(SQL.vectors_per_model)}
        out["errors"] = {r[0]: r[1] for r in self.query(SQL.errors_per_kind)}
        return out

    # -- reads for evaluation (iffse_lib.evaluate) ----------------------------------------------
    def lfw_photos(self) -> list[sqlite3.Row]:
        """The LFW photos: ``source_id`` (the LFW file name), photo ``id``, ``path``, ``width``,
        ``height`` and their detection's ``n_faces``, ``error`` and ``detector`` (None if not detected)."""
        return self.query(SQL.lfw_photos)

    def lfw_faces(self, model: str) -> list[sqlite3.Row]:
        """The faces of the LFW photos in photo order: ``photo_id``, face ``id``, ``left``, ``top``,
        ``right``, ``bottom``, whether it has a ``model`` vector, and its ``landmarks`` (bytes)."""
        return self.query(SQL.lfw_faces, (model,))


def _face_from_row(row: sqlite3.Row) -> Face:
    return Face(face_id=row["id"], photo_id=row["photo_id"],
                box=Box(row["left"], row["top"], row["right"], row["bottom"]), score=row["score"],
                landmarks=np.frombuffer(row["landmarks"], "<f4").reshape(68, 2).copy())

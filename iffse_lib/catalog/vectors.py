"""Faces and their vectors: what indexing reads (the photos that need work, the faces still to
embed) and commits (one batch per transaction), and the vectors read, dropped or cut back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ModelMismatch
from ..records import Box, Detection
from .db import Database, check_tag, ids_json, label_subjects, now
from .photos import MAX_ID, RETRYABLE
from .sql import SQL, script


class Vectors(Database):
    """Faces and vectors of the catalogue."""

    def save_batch(self, detector: str, detected: dict[int, list[Detection] | str],
                   model: str | None, vectors: np.ndarray | None, vector_faces: list[tuple[int, int]]) -> None:
        """Commit one pipeline batch atomically.

        ``detected`` maps photo_id -> its new detections (or an error kind for a photo that failed);
        ``vector_faces`` lists, row by row of ``vectors``, the face each belongs to as
        (photo_id, idx) so that faces detected in this same batch can be referenced. The vectors
        are appended (and fsynced) at the committed row count read inside the transaction.
        """
        if model is not None:
            check_tag(model)
        with self.transaction() as db:
            replaced: dict[str, list[int]] = {}
            for photo_id, result in detected.items():
                if isinstance(result, str):
                    db.execute(SQL.detection_set, (photo_id, detector, 0, result, self.run_id))
                    continue
                # A photo detected again (another detector): its old faces and their vectors go.
                one = ids_json([photo_id])
                for old_model, old_row in db.execute(SQL.vector_rows_of_photos, (one,)).fetchall():
                    replaced.setdefault(old_model, []).append(old_row)
                for statement in script("delete_faces_of_photos"):
                    db.execute(statement, (one,))
                db.execute(SQL.detection_set, (photo_id, detector, len(result), None, self.run_id))
                db.executemany(SQL.face_add, [
                    (photo_id, i, d.box.left, d.box.top, d.box.right, d.box.bottom, d.score,
                     np.asarray(d.landmarks, "<f4").tobytes(), detector) for i, d in enumerate(result)])
                label_subjects(db, [photo_id])
            if replaced:
                db.execute(SQL.meta_set, ("index_stale", "1"))
            if model is not None and vectors is not None and len(vectors):
                db.execute(SQL.model_add, (model, int(vectors.shape[1]), now()))
                _, dim, _ = db.execute(SQL.model_get, (model,)).fetchone()
                if dim != vectors.shape[1]:
                    raise ModelMismatch(f"model {model!r} has {dim}-d vectors in this catalogue, "
                                        f"not {vectors.shape[1]}-d")
                vf = self._writable_vector_file(model)
                start = vf.append(vectors)  # fsynced before the rows that point at it commit
                photos = ids_json(sorted({int(key[0]) for key in vector_faces}))
                face_id = {(r[0], r[1]): r[2] for r in db.execute(SQL.face_ids_of_photos, (photos,))}
                db.executemany(SQL.vector_add, [(face_id[(int(key[0]), int(key[1]))], model, start + i, self.run_id)
                                                for i, key in enumerate(vector_faces)])
                db.execute(SQL.model_rows_set, (vf.rows, model))
                db.execute(SQL.meta_set, ("index_stale", "1"))
            for old_model, rows in replaced.items():  # the replaced vectors are erased, not left behind
                self._writable_vector_file(old_model).zero_rows(np.array(rows))

    def pending_photos(self, model: str, redetect: str | None = None) -> list[tuple[int, Path, bool]]:
        """(photo id, absolute path, detected) of the photos that need work for ``model``: never
        detected, detected by another detector than ``redetect``, failed for a reason that may pass
        (:data:`RETRYABLE`), or with faces that lack a ``model`` vector."""
        rows = self.query(SQL.pending_photos, {"redetect": redetect, "model": model,
                                                "retry": json.dumps(sorted(RETRYABLE))})
        return [(r[0], self.root / r[1], bool(r[2])) for r in rows]

    def faces_to_embed(self, photo_ids: list[int], model: str) -> dict[int, list[tuple[np.ndarray, int, Box, str]]]:
        """For detected photos: ``{photo_id: [(landmarks, face index, box, detector tag), …]}`` of
        the faces without a ``model`` vector (one query for all of them)."""
        out: dict[int, list[tuple[np.ndarray, int, Box, str]]] = {pid: [] for pid in photo_ids}
        for r in self.query(SQL.faces_to_embed, (ids_json(photo_ids), model)):
            out[r[0]].append((np.frombuffer(r[2], "<f4").reshape(68, 2).copy(), r[1], Box(r[3], r[4], r[5], r[6]), r[7]))
        return out

    def other_detector_photos(self, tag: str) -> int:
        """Photos whose faces were found by a detector other than ``tag``."""
        return int(self.scalar(SQL.other_detector_photos, (tag,)))

    def main_detector(self) -> str | None:
        """The tag of the detector that found most of the catalogue's faces (None without faces)."""
        return self.scalar(SQL.main_detector)

    # -- vectors ------------------------------------------------------------------------------
    def vector_rows(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids, vector-file rows) of every face with a ``model`` vector, by face id."""
        rows = self.query(SQL.vector_rows, (model,))
        return (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64))

    def vectors(self, model: str, face_ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids, vectors) of ``model``, ordered by face id; vectors are a float32 copy."""
        with self.snapshot():
            vf = self.vector_file(model)
            if face_ids is None:
                ids, rownums = self.vector_rows(model)
            else:
                wanted = ids_json(f for f in face_ids if 0 <= int(f) <= MAX_ID)
                rows = self.query(SQL.vector_rows_of_faces, (model, wanted))
                ids = np.array([r[0] for r in rows], dtype=np.int64)
                rownums = np.array([r[1] for r in rows], dtype=np.int64)
            return ids, np.asarray(vf.array()[rownums], dtype=np.float32)

    def drop_vectors(self, model: str, face_ids: Iterable[int]) -> int:
        """Remove these faces' ``model`` vectors and zero their bytes (``iffse index`` computes them
        again from the raw photos); returns how many went."""
        wanted = ids_json(face_ids)
        with self.transaction() as db:
            gone = [r[1] for r in db.execute(SQL.vector_rows_of_faces, (model, wanted))]
            db.execute(SQL.vectors_delete_of_faces, (model, wanted))
            if gone:
                db.execute(SQL.meta_set, ("index_stale", "1"))
                self._writable_vector_file(model).zero_rows(np.array(gone))
        return len(gone)

    def cut_vectors(self, model: str, rows: int) -> int:
        """Keep only the first ``rows`` rows of ``model``'s vector file (it lost the rest): vectors
        past them are deleted, to be computed again. Returns how many vectors went."""
        with self.transaction() as db:
            gone = db.execute(SQL.vectors_delete_from_row, (model, rows)).rowcount
            db.execute(SQL.model_rows_set, (rows, model))
            db.execute(SQL.meta_set, ("index_stale", "1"))
            self._vector_files.forget(model)
            self._writable_vector_file(model).cut_to_committed()
        return gone

    def erase_vector_rows(self, model: str, rows: np.ndarray) -> None:
        """Zero rows of ``model``'s vector file that no face refers to (left by an older iffse)."""
        with self.transaction() as db:
            used = {r[0] for r in db.execute(SQL.vector_rows_in_use, (model,))}
            rows = np.array([r for r in np.asarray(rows, np.int64).tolist() if r not in used], np.int64)
            self._writable_vector_file(model).zero_rows(rows)

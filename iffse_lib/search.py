"""A query photo (or a catalogued face) -> ranked matches from the index.

:meth:`Searcher.search` returns one pandas DataFrame per face found in the query photo, largest
face first, whose rows are :class:`~iffse_lib.records.Match` records (columns ``rank, distance,
face_id, photo_id, identity, path, left, top, right, bottom``); ``df.attrs`` holds the query
face's box, score and landmarks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import config, faces, images
from .catalog import Catalog
from .embed import Embedder
from .embedders import query_embedder
from .errors import NoFaceFound
from .index import FaceIndex
from .records import MATCH_COLUMNS, Match

if TYPE_CHECKING:
    import pandas as pd

def catalog_detector(catalog: Catalog, device: str = "cpu") -> faces.FaceDetector | None:
    """The detector that found most of the catalogue's faces (a CNN one on ``device``), or None."""
    tag = catalog.main_detector()
    return faces.FaceDetector.from_tag(tag, device) if tag else None


class Searcher:
    """Holds a catalogue, its index and an embedder for repeated queries (widgets, notebooks)."""

    def __init__(self, catalog: Catalog, embedder: Embedder | None = None, index: FaceIndex | None = None,
                 detector: faces.FaceDetector | None = None, client=None,
                 max_side: int | None = config.QUERY_MAX_SIDE):
        """``embedder``: by default :func:`~iffse_lib.embedders.query_embedder` (one thread: a
        query embeds a few chips). ``detector`` finds the faces of query photos; by default the one that found most of
        the catalogue's faces (:func:`~iffse_lib.faces.default_detector` when the catalogue has
        no faces), so that queries and catalogue are aligned alike. A photo longer than
        ``max_side`` pixels is detected on a copy that long (None: every photo whole; see
        :meth:`~iffse_lib.faces.FaceDetector.detect`); landmarks and chips come from the photo.

        ``client`` (a ``dask.distributed.Client``): search the index shards that ``iffse index
        --shards N`` built, each kept loaded on a worker (:class:`iffse_lib.shards.ShardedIndex`);
        every query's faces go to each shard in one call."""
        from .catalog_index import load_index, load_shards

        self.catalog = catalog
        self.embedder = embedder or query_embedder()
        if index is None:
            index = (load_shards(client, catalog, self.embedder.model_tag) if client is not None
                     else load_index(catalog, self.embedder.model_tag))
        self.index = index
        if self.index.model_tag != self.embedder.model_tag:
            from .errors import ModelMismatch

            raise ModelMismatch(f"the index holds {self.index.model_tag!r} vectors but the embedder makes "
                                f"{self.embedder.model_tag!r} vectors")
        if detector is None:
            detector = catalog_detector(catalog) or faces.default_detector()
        self.detector = detector
        self.max_side = max_side

    def _bounded_k(self, k: int) -> int:
        """``k`` capped at the faces the index holds (a huge k costs memory, never more matches)."""
        if k < 1:
            raise ValueError(f"k must be 1 or more, not {k}")
        return min(int(k), max(len(self.index), 1))

    def _matches(self, ids: np.ndarray, dists: np.ndarray, threshold: float | None, k: int) -> pd.DataFrame:
        import pandas as pd

        keep = ids >= 0
        if threshold is not None:
            keep &= dists <= threshold
        ids, dists = ids[keep][:k], dists[keep][:k]
        info = self.catalog.face_rows(ids.tolist())
        # a face removed since the index was built never comes back
        found = [(int(f), float(d), info[int(f)]) for f, d in zip(ids, dists) if int(f) in info]
        matches = [Match(rank=rank, distance=d, face_id=f, photo_id=r["photo_id"], identity=r["identity"],
                         path=str(self.catalog.root / r["path"]), left=r["left"], top=r["top"], right=r["right"],
                         bottom=r["bottom"]) for rank, (f, d, r) in enumerate(found, start=1)]
        return pd.DataFrame([dataclasses.astuple(m) for m in matches], columns=MATCH_COLUMNS)

    def search_image(self, image: np.ndarray, k: int = config.DEFAULT_K, threshold: float | None = None,
                     exclude_face_ids: set[int] | None = None) -> list[pd.DataFrame]:
        """One DataFrame of matches per face in ``image`` (largest face first)."""
        found = self.detector.detect(image, self.max_side)
        if not found:
            finds = self.detector.finds(faces.bounded_scale(image.shape, self.max_side))
            raise NoFaceFound(f"no face found in the query photo ({self.detector.tag} finds {finds})", finds)
        chips = faces.face_chips(image, [faces.chip_points(image, d.box, d.landmarks, self.detector.tag)
                                         for d in found])
        vectors = self.embedder.embed(chips)
        k = self._bounded_k(k)
        extra = len(exclude_face_ids or ())
        ids, dists = self.index.query(vectors, k + extra)
        out = []
        for d, row_ids, row_d in zip(found, ids, dists):
            if exclude_face_ids:
                keep = ~np.isin(row_ids, list(exclude_face_ids))
                row_ids, row_d = row_ids[keep], row_d[keep]
            df = self._matches(row_ids, row_d, threshold, k)
            df.attrs.update({"query_box": d.box, "query_score": d.score, "query_landmarks": d.landmarks})
            out.append(df)
        return out

    def search(self, photo: str | Path | bytes, k: int = config.DEFAULT_K,
               threshold: float | None = None) -> list[pd.DataFrame]:
        """Search with a photo given as a path or as encoded bytes; BadImage / NoFaceFound on bad input."""
        return self.search_image(images.load_image(photo), k, threshold)

    def search_face(self, face_id: int, k: int = config.DEFAULT_K, threshold: float | None = None) -> pd.DataFrame:
        """Matches of a catalogued face (itself left out), from its stored vector."""
        _, vec = self.catalog.vectors(self.index.model_tag, [face_id])
        if len(vec) == 0:
            raise NoFaceFound(f"face {face_id} has no {self.index.model_tag!r} vector in the catalogue")
        k = self._bounded_k(k)
        ids, dists = self.index.query(vec, k + 1)
        keep = ids[0] != face_id
        df = self._matches(ids[0][keep], dists[0][keep], threshold, k)
        df.attrs["query_face_id"] = face_id
        return df

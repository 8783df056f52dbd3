"""Retrieval quality (:func:`evaluate_retrieval`): every labelled face whose identity has other
labelled faces queries the catalogue; precision@1, precision@5 and mAP@``depth`` are measured with
exact search and with the Annoy index, side by side, with the index's recall of the exact neighbours.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from ..errors import IffseError
from ..labels import central_index

if TYPE_CHECKING:
    import pandas as pd


def average_precision(relevant: np.ndarray, n_relevant: int, depth: int | None = None) -> float:
    """AP of one ranked list: the mean, over the first ``min(n_relevant, depth)`` relevant items one
    could retrieve, of the precision at each relevant item's rank (0 for those not retrieved)."""
    rel = np.asarray(relevant, dtype=bool)
    if depth is not None:
        rel = rel[:depth]
    denom = n_relevant if depth is None else min(n_relevant, depth)
    if denom <= 0:
        raise ValueError("average precision needs at least one relevant item")
    hits = np.cumsum(rel)
    ranks = np.arange(1, len(rel) + 1)
    return float(np.sum((hits / ranks)[rel]) / denom)


@dataclass
class RetrievalResult:
    """Precision@1, precision@5 and mAP@depth with exact search and with the index.

    ``table`` is a DataFrame (metric x {exact, index}); ``queries`` has one row per query face.
    """

    model_tag: str
    depth: int
    table: object
    queries: object
    index_recall: float
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model_tag": self.model_tag, "depth": self.depth,
                "exact": {k: round(float(v), 6) for k, v in self.table["exact"].items()},
                "index": {k: round(float(v), 6) for k, v in self.table["index"].items()},
                f"index_recall@{self.depth}": round(self.index_recall, 6), **self.counts}

    def summary(self) -> str:
        c = self.counts
        head = (f"retrieval, {self.model_tag}: {c['queries']} query faces of {c['identities']} identities "
                f"with other faces, among {c['faces']} faces")
        body = self.table.to_string(float_format=lambda v: f"{v:.4f}")
        return (f"{head}\n{body}\nindex ({c['index_backend']}) recall of the exact top {self.depth}: "
                f"{self.index_recall:.4f}\nprecision@5 ceiling (queries with fewer than 5 other faces): "
                f"{c['precision@5_ceiling']:.4f}")


def labelled_faces(catalog, model_tag: str) -> pd.DataFrame:
    """The faces of ``model_tag`` with the label each carries for retrieval.

    A photo's identity labels one face: the face nearest the photo's centre (a collection's photo
    of a person shows that person in the middle; the others in the frame are bystanders). The other
    faces of the photo stay in the gallery, unlabelled.
    """
    import pandas as pd

    from ..records import Box

    df = catalog.faces(model_tag)
    sizes = catalog.photo_sizes()
    label = [None] * len(df)
    pos_by_photo: dict[int, list[int]] = defaultdict(list)
    for pos, pid in enumerate(df["photo_id"]):
        pos_by_photo[pid].append(pos)
    for pid, positions in pos_by_photo.items():
        w, h = sizes[pid]
        boxes = [Box(int(df["left"].iat[p]), int(df["top"].iat[p]), int(df["right"].iat[p]), int(df["bottom"].iat[p]))
                 for p in positions]
        central = positions[central_index(boxes, w, h)]
        label[central] = df["identity"].iat[central]
    df["label"] = pd.Series(label, index=df.index, dtype=object)
    return df


def evaluate_retrieval(catalog, model_tag: str | None = None, depth: int = 100, index=None,
                       max_queries: int | None = None, seed: int = 0, progress: bool = True) -> RetrievalResult:
    """Every labelled face whose identity has other labelled faces queries the whole catalogue.

    Precision@k is the share of the first k results (the query face itself left out) of the query's
    identity; mAP@``depth`` averages :func:`average_precision` over the queries, each normalised by
    ``min(relevant, depth)`` (the Google Landmarks convention), so exact search and the index are
    measured alike. ``index`` defaults to the catalogue's saved index. Exact search costs
    queries x faces distances: on a large catalogue, ``max_queries`` draws that many queries at
    random (``seed``); the whole catalogue is still searched.
    """
    import pandas as pd

    from ..embedders import get_embedder
    from ..index import exact_search
    from ..catalog_index import load_index

    if depth < 5:
        raise ValueError("depth must be >= 5 (precision@5 needs five results)")
    model_tag = model_tag or get_embedder().model_tag
    faces_df = labelled_faces(catalog, model_tag)
    face_ids, X = catalog.vectors(model_tag)
    if not np.array_equal(face_ids, faces_df["face_id"].to_numpy()):
        raise IffseError("the catalogue's faces and vectors disagree; run `iffse index` again")
    labels = np.array([lb if isinstance(lb, str) else None for lb in faces_df["label"]], dtype=object)
    counts = pd.Series([lb for lb in labels if lb is not None]).value_counts()
    n_rel = np.array([counts.get(lb, 0) - 1 if lb is not None else 0 for lb in labels])
    q_pos = np.flatnonzero(n_rel > 0)
    if len(q_pos) == 0:
        raise IffseError(f"no identity in {catalog.root} has two labelled faces; retrieval needs labelled photos "
                         "(e.g. `iffse collect folder DIR --identity-from-folder` or `iffse collect lfw`)")
    if max_queries is not None and len(q_pos) > max_queries:
        q_pos = np.sort(np.random.default_rng(seed).choice(q_pos, max_queries, replace=False))
    index = index if index is not None else load_index(catalog, model_tag)
    pos_of_face = {int(f): i for i, f in enumerate(face_ids)}

    def score(ranked_pos: np.ndarray, qp: int) -> tuple[float, float, float]:
        ranked_pos = ranked_pos[(ranked_pos >= 0) & (ranked_pos != qp)][:depth]
        rel = labels[ranked_pos] == labels[qp]
        p1 = float(rel[:1].sum())
        p5 = float(rel[:5].sum()) / 5.0
        return p1, p5, average_precision(rel, int(n_rel[qp]), depth)

    rows = []
    overlap = []
    batch = max(8, min(256, 50_000_000 // max(len(X), 1)))  # the distance block stays under ~200 MB
    bar = tqdm(total=len(q_pos), desc=f"retrieval ({model_tag})", unit="query", disable=not progress)
    for start in range(0, len(q_pos), batch):
        qs = q_pos[start:start + batch]
        exact_pos, _ = exact_search(X[qs], X, depth + 1)
        idx_ids, _ = index.query(X[qs], depth + 1)
        for qp, epos, iids in zip(qs, exact_pos, idx_ids):
            ipos = np.array([pos_of_face.get(int(f), -1) for f in iids], dtype=np.int64)
            e, i = score(epos, qp), score(ipos, qp)
            etop = set(epos[(epos >= 0) & (epos != qp)][:depth].tolist())
            itop = set(ipos[(ipos >= 0) & (ipos != qp)][:depth].tolist())
            overlap.append(len(etop & itop) / max(len(etop), 1))
            rows.append({"face_id": int(face_ids[qp]), "identity": labels[qp], "relevant": int(n_rel[qp]),
                         "exact_p1": e[0], "exact_p5": e[1], "exact_ap": e[2],
                         "index_p1": i[0], "index_p5": i[1], "index_ap": i[2]})
        bar.update(len(qs))
    bar.close()
    queries = pd.DataFrame(rows)
    metrics = {"precision@1": "p1", "precision@5": "p5", f"mAP@{depth}": "ap"}
    table = pd.DataFrame({kind: {name: queries[f"{kind}_{col}"].mean() for name, col in metrics.items()}
                          for kind in ("exact", "index")})
    n_ids = int(len(set(labels[q_pos])))
    info = {"queries": int(len(q_pos)), "identities": n_ids, "faces": int(len(face_ids)),
            "index_backend": getattr(index, "backend", "annoy"),
            # precision@5 cannot pass this: a query with R < 5 other faces of its identity scores R/5 at best
            "precision@5_ceiling": float(np.mean(np.minimum(n_rel[q_pos], 5) / 5.0)),
            "unlabelled_faces": int(sum(lb is None for lb in labels))}
    return RetrievalResult(model_tag, depth, table, queries, float(np.mean(overlap)), info)

"""How good the vectors and the search are, in the terms the field uses.

**LFW verification** (:func:`evaluate_lfw_pairs`), as papers report it (Huang et al. 2007, "View 2"):

- The pairs file has LFW's official format (:func:`read_pairs`): a first line with the number of
  folds and the pairs per fold (``10 300``); then, fold by fold, that many same-person lines
  ``name i j`` followed by as many different-person lines ``name1 i name2 j``.
- Each distinct photo is embedded once. A photo is aligned from the 68 landmarks of the detected
  face **nearest the image centre** whose box covers the centre (LFW photos are 250 x 250 crops
  centred on the named person; the other faces are bystanders). When the detector finds no face,
  or only off-centre ones (a bystander, the subject missed), the 68-point predictor runs in a fixed
  central box (:data:`FALLBACK_BOX`, measured on the photos where detection succeeds) and the chip
  is aligned from those landmarks, so no pair is dropped; the result says how many photos needed
  it.
- Ten folds: the distance threshold is chosen on nine (the candidate that maximises their accuracy,
  candidates being the midpoints between consecutive sorted distances), accuracy is measured on the
  tenth. Reported: mean accuracy, its standard deviation over the folds (ddof=1, as dlib reports
  99.38% ± 0.27%) and standard error, the ten thresholds, and ROC AUC over all pairs.

With a catalogue (``catalog=``) the vectors it already holds for LFW photos (``source_id`` = LFW
file name) are reused and only the rest are computed; without one everything is computed from the
LFW folder.

**Retrieval** (:func:`evaluate_retrieval`): every labelled face whose identity has other labelled
faces queries the catalogue; precision@1, precision@5 and mAP@``depth`` are measured with exact
search and with the Annoy index, side by side, with the index's recall of the exact neighbours.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from . import config
from .errors import IffseError
# The photo -> vector step lives in lfw_vectors.py; these names stay importable from here.
from .lfw_vectors import (FALLBACK_BOX, PhotoMissing, PhotoVectors, central_index, fallback_box,  # noqa: F401
                          measure_central_box, photo_vectors, subject_index)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FALLBACK_BOX", "PhotoMissing", "PhotoVectors", "central_index", "fallback_box", "measure_central_box",
           "photo_vectors", "subject_index", "PairsFileError", "lfw_file", "read_pairs", "write_pairs", "make_pairs",
           "best_threshold", "FoldResult", "kfold_accuracy", "LFWResult", "evaluate_lfw_pairs", "compare_tta",
           "fallback_report", "output_dir", "average_precision", "RetrievalResult", "labelled_faces",
           "evaluate_retrieval"]


class PairsFileError(IffseError):
    """A pairs file that does not follow LFW's official format."""


def lfw_file(name: str, num: int) -> str:
    """LFW's file name of image ``num`` of ``name``: ``Aaron_Eckhart_0001.jpg``."""
    return f"{name}_{int(num):04d}.jpg"


# -- pairs files ----------------------------------------------------------------------------------

def read_pairs(path: str | Path) -> pd.DataFrame:
    """An LFW pairs file as a DataFrame with columns ``fold, name1, num1, name2, num2, same``.

    Accepts View 2's ``pairs.txt`` (first line ``10 300``: ten folds of 300 same-person then 300
    different-person pairs) and View 1's ``pairsDevTrain.txt`` (first line ``1100``: one fold).
    ``df.attrs`` holds ``n_folds`` and ``per_fold``.
    """
    import pandas as pd

    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise PairsFileError(f"cannot read the pairs file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PairsFileError(f"{path} is not a text file; expected LFW's pairs format (pairs.txt)") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise PairsFileError(f"{path} is empty; expected LFW's pairs format (first line: folds and pairs per fold)")
    try:
        head = [int(v) for v in lines[0]]
    except ValueError:
        raise PairsFileError(f"{path}: the first line must be '<folds> <pairs per fold>' "
                             f"(e.g. '10 300'), not {' '.join(lines[0])!r}") from None
    if len(head) == 1:
        n_folds, per_fold = 1, head[0]
    elif len(head) == 2:
        n_folds, per_fold = head
    else:
        raise PairsFileError(f"{path}: the first line must hold two numbers, folds and pairs per fold")
    if n_folds < 1 or per_fold < 1:
        raise PairsFileError(f"{path}: folds and pairs per fold must be positive, got {n_folds} and {per_fold}")
    expected = 2 * n_folds * per_fold
    body = lines[1:]
    if len(body) != expected:
        raise PairsFileError(f"{path}: the header promises {n_folds} folds x {per_fold} same + {per_fold} "
                             f"different pairs = {expected} lines, but the file has {len(body)}")
    rows = []
    for n, parts in enumerate(body):
        fold, pos = divmod(n, 2 * per_fold)
        same = pos < per_fold
        lineno = n + 2
        try:
            if same and len(parts) == 3:
                rows.append((fold, parts[0], int(parts[1]), parts[0], int(parts[2]), True))
            elif not same and len(parts) == 4:
                rows.append((fold, parts[0], int(parts[1]), parts[2], int(parts[3]), False))
            else:
                want = "'name i j' (a same-person pair)" if same else "'name1 i name2 j' (a different-person pair)"
                raise PairsFileError(f"{path}, line {lineno}: expected {want} at this place of fold {fold + 1}, "
                                     f"got {' '.join(parts)!r}")
        except ValueError:
            raise PairsFileError(f"{path}, line {lineno}: image numbers must be integers: {' '.join(parts)!r}") from None
    df = pd.DataFrame(rows, columns=["fold", "name1", "num1", "name2", "num2", "same"])
    df.attrs.update(n_folds=n_folds, per_fold=per_fold)
    return df


def write_pairs(pairs, path: str | Path) -> Path:
    """Write pairs (a DataFrame like :func:`read_pairs` returns) in the official format."""
    n_folds = int(pairs["fold"].max()) + 1 if len(pairs) else 0
    per_fold = None
    out = []
    for fold in range(n_folds):
        part = pairs[pairs["fold"] == fold]
        same, diff = part[part["same"]], part[~part["same"]]
        if len(same) != len(diff) or (per_fold is not None and len(same) != per_fold):
            raise PairsFileError(f"fold {fold + 1} has {len(same)} same and {len(diff)} different pairs; the "
                                 "official format needs the same number of each in every fold")
        per_fold = len(same)
        out += [f"{r.name1}\t{r.num1}\t{r.num2}" for r in same.itertuples()]
        out += [f"{r.name1}\t{r.num1}\t{r.name2}\t{r.num2}" for r in diff.itertuples()]
    if not per_fold:
        raise PairsFileError("no pairs to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{n_folds}\t{per_fold}\n" + "\n".join(out) + "\n")
    return path


def make_pairs(lfw_dir: str | Path, n_folds: int = 10, seed: int = 0, max_same_per_person: int | None = None,
               max_per_fold: int | None = None) -> pd.DataFrame:
    """Pairs in ten folds from an LFW folder: every same-person pair it holds and as many different ones.

    Same-person pairs: every unordered pair of images of each person (at most
    ``max_same_per_person`` of them per person, drawn at random, when given), shuffled and dealt
    into ``n_folds`` equal folds; the few left over by the division are dropped. Different-person
    pairs, as many: two distinct people drawn uniformly (people with a single image included),
    then one image of each, no pair twice. ``max_per_fold`` caps the pairs of each kind per fold.

    Unlike LFW's own View 2, the folds are not disjoint in people (the A-C subset's Colin Powell
    alone has 27,730 of its 37,547 same-person pairs). Only a threshold is fitted on nine folds, so
    this does not leak anything a model could learn.
    """
    import pandas as pd

    from .sources.lfw import LFWSource

    if n_folds < 1:
        raise ValueError("n_folds must be >= 1")
    rng = np.random.default_rng(seed)
    people: dict[str, list[int]] = defaultdict(list)
    for rec in LFWSource(lfw_dir):
        people[rec.identity].append(int(rec.meta["image_num"]))
    names = sorted(people)
    same = []
    for name in names:
        nums = sorted(people[name])
        combos = [(name, a, name, b) for i, a in enumerate(nums) for b in nums[i + 1:]]
        if max_same_per_person is not None and len(combos) > max_same_per_person:
            keep = rng.choice(len(combos), max_same_per_person, replace=False)
            combos = [combos[i] for i in sorted(keep)]
        same += combos
    order = rng.permutation(len(same))
    per_fold = len(same) // n_folds
    if max_per_fold is not None:
        per_fold = min(per_fold, max_per_fold)
    if per_fold == 0:
        raise PairsFileError(f"{lfw_dir} holds {len(same)} same-person pairs, too few for {n_folds} folds")
    same = [same[i] for i in order[:per_fold * n_folds]]
    if len(names) < 2:
        raise PairsFileError(f"{lfw_dir} holds fewer than two people; no different-person pairs")
    n_diff = per_fold * n_folds
    n_possible = (sum(len(v) for v in people.values()) ** 2 - sum(len(v) ** 2 for v in people.values())) // 2
    if n_diff > n_possible:
        raise PairsFileError(f"{lfw_dir} allows only {n_possible} different-person pairs, {n_diff} needed")
    nums_of = [np.array(sorted(people[n])) for n in names]
    sizes = np.array([len(v) for v in nums_of])
    diff, seen = [], set()
    while len(diff) < n_diff:
        # Draw in batches (vectorised); keep the draws in order, dropping repeats.
        m = 2 * (n_diff - len(diff)) + 16
        a = rng.integers(0, len(names), m)
        b = (a + rng.integers(1, len(names), m)) % len(names)  # uniform over the other people
        ia = (rng.random(m) * sizes[a]).astype(int)
        ib = (rng.random(m) * sizes[b]).astype(int)
        for pa, pb, xa, xb in zip(a.tolist(), b.tolist(), ia.tolist(), ib.tolist()):
            na, nb = names[pa], names[pb]
            ja, jb = int(nums_of[pa][xa]), int(nums_of[pb][xb])
            key = (na, ja, nb, jb) if (na, ja) < (nb, jb) else (nb, jb, na, ja)
            if key in seen:
                continue
            seen.add(key)
            diff.append((na, ja, nb, jb))
            if len(diff) == n_diff:
                break
    rows = []
    for fold in range(n_folds):
        rows += [(fold, *p, True) for p in same[fold * per_fold:(fold + 1) * per_fold]]
        rows += [(fold, *p, False) for p in diff[fold * per_fold:(fold + 1) * per_fold]]
    df = pd.DataFrame(rows, columns=["fold", "name1", "num1", "name2", "num2", "same"])
    df.attrs.update(n_folds=n_folds, per_fold=per_fold)
    return df


# -- the ten-fold protocol ------------------------------------------------------------------------

def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The distance threshold that maximises accuracy on these pairs, and that accuracy.

    A pair is called "same person" when its distance is below the threshold. Candidates are the
    midpoints between consecutive distinct sorted distances, plus one just below the smallest and
    one just above the largest. Where several candidates reach the best accuracy the middle one
    (the lower middle for an even count) is taken.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    if len(d) == 0 or len(d) != len(s):
        raise ValueError("need as many labels as distances, and at least one pair")
    order = np.argsort(d, kind="stable")
    d, s = d[order], s[order]
    n = len(d)
    # Cut i (0..n): the i smallest distances are called same.
    same_below = np.concatenate([[0], np.cumsum(s)])
    diff_below = np.concatenate([[0], np.cumsum(~s)])
    correct = same_below + (diff_below[-1] - diff_below)
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = d[:-1] < d[1:]  # a cut between two equal distances is not a threshold
    cuts = np.flatnonzero(valid)
    best = cuts[correct[cuts] == correct[cuts].max()]
    cut = int(best[(len(best) - 1) // 2])
    eps = 1e-6
    if cut == 0:
        threshold = d[0] - eps
    elif cut == n:
        threshold = d[-1] + eps
    else:
        threshold = (d[cut - 1] + d[cut]) / 2.0
    return float(threshold), float(correct[cut] / n)


@dataclass
class FoldResult:
    """Per-fold accuracy and threshold of the k-fold protocol."""

    accuracies: np.ndarray
    thresholds: np.ndarray
    predicted: np.ndarray  # per pair, from its own fold's threshold

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    @property
    def sem(self) -> float:
        return self.std / math.sqrt(len(self.accuracies)) if len(self.accuracies) > 1 else 0.0


def kfold_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldResult:
    """LFW's protocol: for each fold, the threshold of :func:`best_threshold` on the other folds,
    accuracy on this one. With a single fold the threshold is fitted on that fold itself."""
    d = np.asarray(distances, dtype=np.float64)
    s = np.asarray(same, dtype=bool)
    f = np.asarray(folds)
    ids = np.unique(f)
    accs, ths = [], []
    predicted = np.zeros(len(d), dtype=bool)
    for k in ids:
        test = f == k
        train = ~test if len(ids) > 1 else test
        t, _ = best_threshold(d[train], s[train])
        pred = d[test] < t
        predicted[test] = pred
        accs.append(float(np.mean(pred == s[test])))
        ths.append(t)
    return FoldResult(np.array(accs), np.array(ths), predicted)


# -- LFW verification -----------------------------------------------------------------------------

@dataclass
class LFWResult:
    """The outcome of :func:`evaluate_lfw_pairs`.

    ``pairs`` holds one row per pair: ``fold, name1, num1, name2, num2, same, file1, file2,
    distance, threshold`` (its fold's), ``predicted`` and ``correct``.
    """

    model_tag: str
    pairs: object
    folds: FoldResult
    auc: float
    photos: PhotoVectors

    @property
    def mean_accuracy(self) -> float:
        return self.folds.mean

    @property
    def std_accuracy(self) -> float:
        return self.folds.std

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(false positive rate, true positive rate, distance thresholds) over all pairs."""
        from sklearn.metrics import roc_curve

        fpr, tpr, thr = roc_curve(self.pairs["same"], -self.pairs["distance"])
        return fpr, tpr, -thr

    def worst(self, kind: str = "false_match", n: int = 8, distinct: bool = True) -> pd.DataFrame:
        """The ``n`` worst errors: ``false_match`` (different people, smallest distances) or
        ``miss`` (same person, largest distances). With ``distinct``, each photo shows once (one
        bad photo of a person with many photos would otherwise fill the list)."""
        wrong = self.pairs[~self.pairs["correct"]]
        if kind == "false_match":
            ranked = wrong[~wrong["same"]].sort_values("distance", kind="stable")
        elif kind == "miss":
            ranked = wrong[wrong["same"]].sort_values("distance", ascending=False, kind="stable")
        else:
            raise ValueError("kind must be 'false_match' or 'miss'")
        if not distinct:
            return ranked.head(n)
        keep, seen = [], set()
        for label, f1, f2 in zip(ranked.index, ranked["file1"], ranked["file2"]):
            if f1 in seen or f2 in seen:
                continue
            seen.update((f1, f2))
            keep.append(label)
            if len(keep) == n:
                break
        return ranked.loc[keep]

    def chip(self, file: str) -> np.ndarray:
        """The aligned 150 px chip the vector of LFW photo ``file`` was computed from."""
        from . import faces, images

        row = self.photos.info.loc[file]
        image = images.load_image(row["path"])
        points = row["chip_points"]
        if points is None:  # a catalogue vector: cut by the pipeline's rule
            points = faces.chip_points(image, row["box"], row["landmarks"], self.photos.detector)
        return faces.face_chips(image, [points])[0]

    def to_dict(self) -> dict:
        p = self.pairs
        return {
            "model_tag": self.model_tag, "detector": self.photos.detector,
            "pairs": int(len(p)), "same_pairs": int(p["same"].sum()), "different_pairs": int((~p["same"]).sum()),
            "folds": int(len(self.folds.accuracies)),
            "accuracy_mean": round(self.folds.mean, 6), "accuracy_std": round(self.folds.std, 6),
            "accuracy_sem": round(self.folds.sem, 6),
            "fold_accuracies": [round(float(a), 6) for a in self.folds.accuracies],
            "thresholds": [round(float(t), 6) for t in self.folds.thresholds],
            "threshold_mean": round(float(np.mean(self.folds.thresholds)), 6),
            "roc_auc": round(self.auc, 6),
            "photos": int(len(self.photos.info)),
            "photos_from_catalogue": int((self.photos.info["how"] == "catalogue").sum()),
            "photos_fallback": len(self.photos.fallback),
            "photos_no_face": len(self.photos.no_face),
            "photos_off_centre": len(self.photos.off_centre),
            "photos_several_faces": len(self.photos.multi_face),
            "no_face_files": self.photos.no_face,
            "off_centre_files": self.photos.off_centre,
        }

    def summary(self) -> str:
        d = self.to_dict()
        lines = [
            f"LFW verification, {d['model_tag']}, {d['detector']}: {d['pairs']} pairs ({d['same_pairs']} same, "
            f"{d['different_pairs']} different) in {d['folds']} folds",
            f"accuracy      {100 * d['accuracy_mean']:.2f}% ± {100 * d['accuracy_std']:.2f}% "
            f"(std over folds; standard error {100 * d['accuracy_sem']:.2f}%)",
            "per fold      " + " ".join(f"{100 * a:.2f}" for a in d["fold_accuracies"]),
            f"threshold     {d['threshold_mean']:.4f} mean; per fold "
            + " ".join(f"{t:.4f}" for t in d["thresholds"]),
            f"ROC AUC       {d['roc_auc']:.5f}",
            f"photos        {d['photos']} distinct ({d['photos_from_catalogue']} vectors from the catalogue); "
            f"{d['photos_several_faces']} with several faces (the one nearest the centre used)",
            f"fallback      {d['photos_fallback']} photos aligned from landmarks in the central box "
            f"{FALLBACK_BOX}: {d['photos_no_face']} with no face detected, {d['photos_off_centre']} with "
            "only off-centre faces (bystanders)",
        ]
        return "\n".join(lines)


def evaluate_lfw_pairs(pairs, lfw_dir: str | Path | None = None, catalog=None, embedder=None,
                       detector=None, batch_size: int = config.DEFAULT_BATCH,
                       progress: bool = True, points: int | None = None) -> LFWResult:
    """LFW verification over ``pairs`` (a pairs file path or the DataFrame :func:`read_pairs` gives).

    Vectors come from ``catalog`` where it has them (see :func:`photo_vectors`), the rest are
    computed from ``lfw_dir`` with the pipeline's own steps: ``detector`` (a
    :class:`~iffse_lib.faces.FaceDetector`; an int: HOG at that upsampling; None: HOG, upsample
    1), the pipeline's chip rule (``points`` 68 or 5 overrides it) and ``embedder`` (its
    test-time augmentation included).
    """
    from sklearn.metrics import roc_auc_score

    if isinstance(pairs, (str, Path)):
        pairs = read_pairs(pairs)
    if lfw_dir is None and catalog is None:
        raise IffseError("give an LFW folder (--lfw-dir), a catalogue holding the LFW photos (--data), or both")
    pairs = pairs.copy()
    pairs["file1"] = [lfw_file(n, i) for n, i in zip(pairs["name1"], pairs["num1"])]
    pairs["file2"] = [lfw_file(n, i) for n, i in zip(pairs["name2"], pairs["num2"])]
    files = list(dict.fromkeys([*pairs["file1"], *pairs["file2"]]))
    pv = photo_vectors(files, lfw_dir=lfw_dir, catalog=catalog, embedder=embedder, detector=detector,
                       batch_size=batch_size, progress=progress, points=points)
    a = np.stack([pv.vectors[f] for f in pairs["file1"]]).astype(np.float64)
    b = np.stack([pv.vectors[f] for f in pairs["file2"]]).astype(np.float64)
    pairs["distance"] = np.linalg.norm(a - b, axis=1)
    folds = kfold_accuracy(pairs["distance"].to_numpy(), pairs["same"].to_numpy(), pairs["fold"].to_numpy())
    fold_ids = np.unique(pairs["fold"])
    pairs["threshold"] = pairs["fold"].map(dict(zip(fold_ids, folds.thresholds)))
    pairs["predicted"] = folds.predicted
    pairs["correct"] = pairs["predicted"] == pairs["same"]
    same = pairs["same"].to_numpy()
    auc = float(roc_auc_score(same, -pairs["distance"])) if 0 < same.sum() < len(same) else float("nan")
    return LFWResult(pv.model_tag, pairs, folds, auc, pv)


def fallback_report(result: LFWResult) -> pd.DataFrame:
    """Pairs that involve a photo aligned from :data:`FALLBACK_BOX` against the others: counts,
    accuracy (with each pair's fold threshold) and mean distances of same and different pairs."""
    import pandas as pd

    p = result.pairs
    fb = set(result.photos.fallback)
    involved = p["file1"].isin(fb) | p["file2"].isin(fb)
    rows = {}
    for name, part in (("with a fallback photo", p[involved]), ("all others", p[~involved])):
        rows[name] = {"pairs": len(part), "same": int(part["same"].sum()),
                      "accuracy": float(part["correct"].mean()) if len(part) else float("nan"),
                      "same_mean_distance": float(part.loc[part["same"], "distance"].mean()),
                      "different_mean_distance": float(part.loc[~part["same"], "distance"].mean())}
    df = pd.DataFrame(rows).T
    df.attrs["photos"] = sorted(fb)
    return df


def compare_tta(pairs, ttas, lfw_dir: str | Path | None = None, catalog=None, detector=None,
                progress: bool = False):
    """LFW verification of the same ``pairs`` with each test-time augmentation of ``ttas``
    (``none``, ``flip``, ``jitter:N``; the torch embedder): a DataFrame of model tag, accuracy,
    its std over folds, ROC AUC and mean threshold, one row per augmentation."""
    import pandas as pd

    from .embed_torch import TorchEmbedder

    rows = []
    for spec in ttas:
        res = evaluate_lfw_pairs(pairs, lfw_dir=lfw_dir, catalog=catalog, embedder=TorchEmbedder(tta=spec),
                                 detector=detector, progress=progress)
        rows.append({"tta": str(spec), "model_tag": res.model_tag, "accuracy": res.folds.mean,
                     "std": res.folds.std, "roc_auc": res.auc,
                     "threshold": float(np.mean(res.folds.thresholds))})
    return pd.DataFrame(rows, columns=["tta", "model_tag", "accuracy", "std", "roc_auc", "threshold"])


def output_dir(out_dir: str | Path | None, catalog) -> Path:
    """Where evaluation files go: ``out_dir`` if given, else ``<catalogue>/evaluation`` (made)."""
    path = Path(out_dir) if out_dir is not None else Path(catalog.root) / "evaluation"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- retrieval ------------------------------------------------------------------------------------

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

    from .records import Box

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

    from .embed import get_embedder
    from .index import exact_search
    from .pipeline import load_index

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

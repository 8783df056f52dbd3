"""LFW verification (:func:`evaluate_lfw_pairs`), as papers report it (Huang et al. 2007, "View 2").

- The pairs come from a pairs file in LFW's official format (:mod:`iffse_lib.evaluate.pairs`).
- Each distinct photo is embedded once. A photo is aligned from the 68 landmarks of the detected
  face **nearest the image centre** whose box covers the centre (LFW photos are 250 x 250 crops
  centred on the named person; the other faces are bystanders). When the detector finds no face,
  or only off-centre ones (a bystander, the subject missed), the 68-point predictor runs in a fixed
  central box (:data:`~iffse_lib.evaluate.lfw_vectors.FALLBACK_BOX`, measured on the photos where
  detection succeeds) and the chip is aligned from those landmarks, so no pair is dropped; the
  result says how many photos needed it (:mod:`iffse_lib.evaluate.lfw_vectors`).
- Ten folds: the distance threshold is chosen on nine (the candidate that maximises their accuracy,
  candidates being the midpoints between consecutive sorted distances), accuracy is measured on the
  tenth. Reported: mean accuracy, its standard deviation over the folds (ddof=1, as dlib reports
  99.38% ± 0.27%) and standard error, the ten thresholds, and ROC AUC over all pairs.

With a catalogue (``catalog=``) the vectors it already holds for LFW photos (``source_id`` = LFW
file name) are reused and only the rest are computed; without one everything is computed from the
LFW folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import config
from ..errors import IffseError
from .lfw_vectors import FALLBACK_BOX, PhotoVectors, photo_vectors
from .pairs import lfw_file, read_pairs

if TYPE_CHECKING:
    import pandas as pd


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
        from .. import faces, images

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
    :class:`~iffse_lib.faces.FaceDetector`; None: HOG, upsample
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

    from ..embed_torch import TorchEmbedder

    rows = []
    for spec in ttas:
        res = evaluate_lfw_pairs(pairs, lfw_dir=lfw_dir, catalog=catalog, embedder=TorchEmbedder(tta=spec),
                                 detector=detector, progress=progress)
        rows.append({"tta": str(spec), "model_tag": res.model_tag, "accuracy": res.folds.mean,
                     "std": res.folds.std, "roc_auc": res.auc,
                     "threshold": float(np.mean(res.folds.thresholds))})
    return pd.DataFrame(rows, columns=["tta", "model_tag", "accuracy", "std", "roc_auc", "threshold"])

"""One vector per LFW photo, through the pipeline's own detect, landmark and chip steps.

:func:`photo_vectors` finds each photo's subject with the same
:func:`iffse_lib.stages.detect_and_landmark` the pipeline runs (any
:class:`~iffse_lib.faces.FaceDetector`: HOG or CNN, any upsampling, batched), cuts its chip from
:func:`iffse_lib.faces.chip_points` (the pipeline's rule: 68 points in HOG boxes, 5 in CNN boxes)
and embeds it with any embedder (test-time augmentation included). The steps are also
callable one by one (:func:`find_subjects`, :func:`cut_chips`), so that ``benchmarks/tta.py``
detects once and embeds many ways.

LFW photos are 250 x 250 crops centred on the named person: the subject is the detected face
nearest the centre whose box covers the centre (:func:`subject_index`); without one, the 68-point
predictor runs in :data:`FALLBACK_BOX` and the chip is cut as from a HOG box.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from .. import config, labels
from ..labels import central_index
from ..errors import IffseError, PhotoMissing

#: The fixed box, as fractions of the photo's width and height (left, top, right, bottom), in which
#: the 68-point predictor runs when the detector finds no face in an LFW photo: (67, 80, 176, 188)
#: in a 250 x 250 photo. It is the median of the HOG boxes of the central faces detected in the LFW
#: A-C subset (2,504 of its 2,515 photos; :func:`measure_central_box`). On 150 photos where detection
#: succeeds, vectors from this box are a median 0.00 (90th percentile 0.06) from the detected
#: face's vectors, against 0.71 for the whole photo as the box (``tests/test_evaluate.py``).
FALLBACK_BOX = (0.268, 0.32, 0.704, 0.752)

_PAIR_FILE_RE = re.compile(r"^(?P<name>.+)_(?P<num>\d{4})\.jpg$")


# -- the subject of a photo ----------------------------------------------------------------------

def subject_index(boxes: Iterable, width: int, height: int) -> int:
    """LFW's subject: the face nearest the image centre, provided its box covers the centre; -1 if
    there is no such face (none detected, or only bystanders, the subject being missed)."""
    return labels.subject_index(boxes, width, height, source_kind="lfw")


def fallback_box(width: int, height: int, box: tuple[float, float, float, float] = FALLBACK_BOX):
    """:data:`FALLBACK_BOX` in pixels of a ``width`` x ``height`` photo."""
    from ..records import Box

    left, top, right, bottom = box
    return Box(int(round(left * width)), int(round(top * height)), int(round(right * width)),
               int(round(bottom * height)))



def measure_central_box(catalog, model_tag: str | None = None, source_kind: str = "lfw") -> dict:
    """The median box of the central detected faces of a catalogue's photos, as fractions of the
    photo size (how :data:`FALLBACK_BOX` was measured), with the spread (quartiles) and count."""
    df = catalog.faces()
    df = df.loc[df["source_kind"] == source_kind, ["photo_id", "idx", "left", "top", "right", "bottom"]]
    df = df.sort_values(["photo_id", "idx"], kind="stable")
    sizes = catalog.photo_sizes()
    df["width"] = [sizes[p][0] for p in df["photo_id"]]
    df["height"] = [sizes[p][1] for p in df["photo_id"]]
    if df.empty:
        raise IffseError(f"no detected faces of {source_kind!r} photos in {catalog.root}; run `iffse index` first")
    from ..records import Box

    picked = []
    for _, g in df.groupby("photo_id", sort=False):
        boxes = [Box(r.left, r.top, r.right, r.bottom) for r in g.itertuples()]
        r = g.iloc[central_index(boxes, int(g.width.iloc[0]), int(g.height.iloc[0]))]
        picked.append((r.left / r.width, r.top / r.height, r.right / r.width, r.bottom / r.height))
    arr = np.array(picked)
    return {"box": tuple(float(v) for v in np.median(arr, axis=0)),
            "q25": tuple(float(v) for v in np.percentile(arr, 25, axis=0)),
            "q75": tuple(float(v) for v in np.percentile(arr, 75, axis=0)),
            "photos": len(arr)}



@dataclass
class PhotoVectors:
    """One vector per LFW photo file name, and how each was obtained.

    ``info`` is a DataFrame indexed by file name with ``how`` (``catalogue``: the vector was read
    from it; ``detected``: aligned from the subject's detected face; ``fallback``: from landmarks
    found in :data:`FALLBACK_BOX`), ``n_faces`` (faces the detector found), ``path``, the face's
    ``box`` and 68 ``landmarks`` and the ``chip_points`` its chip was cut from (68 or 5 x 2).
    ``detector`` is the detector's tag.
    """

    vectors: dict[str, np.ndarray]
    info: object
    model_tag: str
    detector: str = "hog-up1"

    @property
    def fallback(self) -> list[str]:
        """Photos aligned from the fixed central box."""
        return sorted(self.info.index[self.info["how"] == "fallback"])

    @property
    def no_face(self) -> list[str]:
        """Photos in which the detector found no face."""
        return sorted(self.info.index[self.info["n_faces"] == 0])

    @property
    def off_centre(self) -> list[str]:
        """Photos whose detected faces all miss the image centre (bystanders; the subject missed)."""
        return sorted(self.info.index[(self.info["how"] == "fallback") & (self.info["n_faces"] > 0)])

    @property
    def multi_face(self) -> list[str]:
        return sorted(self.info.index[self.info["n_faces"] > 1])


def _catalog_lfw_photos(catalog, model_tag: str, detector: str) -> dict[str, dict]:
    """LFW file name -> photo id, path, size, face count, and the subject's face id (if it has a
    vector of ``model_tag``), box and landmarks; ``detected`` says ``detector`` (a tag) has run on
    the photo (photos another detector found are detected again)."""
    from ..records import Box

    photos = {}
    for r in catalog.lfw_photos():
        photos[r[0]] = {"photo_id": r[1], "path": catalog.root / r[2], "width": r[3], "height": r[4],
                        "n_faces": r[5], "detected": r[5] is not None and r[6] is None and r[7] == detector,
                        "face_id": None, "landmarks": None, "box": None}
    by_photo: dict[int, list] = defaultdict(list)
    for r in catalog.lfw_faces(model_tag):
        by_photo[r[0]].append(r)
    for info in photos.values():
        rows = by_photo.get(info["photo_id"])
        if not rows or not info["detected"]:
            continue
        boxes = [Box(*r[2:6]) for r in rows]
        i = subject_index(boxes, info["width"], info["height"])
        if i >= 0:
            info["landmarks"] = np.frombuffer(rows[i][7], "<f4").reshape(68, 2).copy()
            info["box"] = boxes[i]
            if rows[i][6]:
                info["face_id"] = rows[i][1]
    return photos


def locate(files: Iterable[str], lfw_dir: str | Path | None = None, known: dict | None = None) -> dict[str, Path]:
    """Where each LFW file is: in ``lfw_dir`` (``<Name>/<file>``), else the catalogue's copy
    (``known``, from :func:`_catalog_lfw_photos`); PhotoMissing names the first one found nowhere."""
    lfw_root = Path(lfw_dir).expanduser() if lfw_dir is not None else None
    known = known or {}
    out = {}
    for f in files:
        m = _PAIR_FILE_RE.match(f)
        path = None
        if lfw_root is not None and m:
            candidate = lfw_root / m["name"] / f
            if candidate.exists():
                path = candidate
        if path is None and f in known:
            path = known[f]["path"]
        if path is None:
            where = f"the LFW folder {lfw_root}" if lfw_root is not None else "no LFW folder given (--lfw-dir)"
            raise PhotoMissing(f"{f} is named in the pairs file but is neither in the catalogue nor in {where}. "
                               "Pass --lfw-dir with the LFW copy the pairs file was made from.")
        out[f] = Path(path)
    return out


def find_subjects(paths: dict[str, Path], detector=None, batch_size: int = config.DEFAULT_BATCH,
                  known: dict | None = None, progress: bool = True, times=None) -> dict[str, dict]:
    """Each photo's subject through the pipeline's detect and landmark step
    (:func:`iffse_lib.stages.detect_and_landmark`, ``batch_size`` photos a call): file ->
    ``how`` (detected or fallback), ``n_faces``, ``box`` and 68 ``landmarks``. Photos that
    ``known`` (a catalogue's) has detected with this detector keep the catalogue's faces.
    ``times``: a :class:`~iffse_lib.stages.StageTimes` that gains the detect and landmark times."""
    from .. import faces, images
    from ..stages import detect_and_landmark

    detector = detector if detector is not None else faces.default_detector()
    known = known or {}
    out: dict[str, dict] = {}
    todo = []
    for f, path in paths.items():
        k = known.get(f)
        if k is not None and k["detected"]:
            out[f] = {"how": "detected" if k["box"] is not None else "fallback",
                      "n_faces": int(k["n_faces"] or 0), "box": k["box"], "landmarks": k["landmarks"]}
        else:
            todo.append(f)
    bar = tqdm(total=len(todo), desc=f"detect LFW photos ({detector.tag})", unit="photo", disable=not progress)
    for start in range(0, len(todo), batch_size):
        part = todo[start:start + batch_size]
        loaded = [images.load_image(paths[f]) for f in part]
        for f, image, found in zip(part, loaded, detect_and_landmark(loaded, detector, times)):
            h, w = image.shape[:2]
            i = subject_index([d.box for d in found], w, h)
            out[f] = {"how": "detected" if i >= 0 else "fallback", "n_faces": len(found),
                      "box": found[i].box if i >= 0 else None, "landmarks": found[i].landmarks if i >= 0 else None}
        bar.update(len(part))
    bar.close()
    return out


def cut_chips(paths: dict[str, Path], subjects: dict[str, dict], detector: str,
              points: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The chips of ``subjects`` (in the order of ``paths``), cut from
    :func:`iffse_lib.faces.chip_points` for ``detector`` (a tag), as the pipeline cuts them;
    ``points`` (68 or 5) overrides the rule. A fallback photo's subject gets its 68 landmarks in
    :data:`FALLBACK_BOX` (stored in ``subjects``) and is cut as from a HOG box. Returns the chips
    and the points each was cut from."""
    from .. import config as _config
    from .. import faces, images

    chips = np.zeros((len(paths), _config.CHIP_SIZE, _config.CHIP_SIZE, 3), np.uint8)
    used = {}
    for n, (f, path) in enumerate(paths.items()):
        image = images.load_image(path)
        sub = subjects[f]
        if sub["box"] is None:  # no subject detected: the fixed central box, a HOG-shaped one
            h, w = image.shape[:2]
            sub["box"] = fallback_box(w, h)
            sub["landmarks"] = faces.landmarks_for_box(image, sub["box"])
            kind = "hog"
        else:
            kind = detector
        used[f] = faces.chip_points(image, sub["box"], sub["landmarks"], kind, points)
        chips[n] = faces.face_chips(image, [used[f]])[0]
    return chips, used


def photo_vectors(files: Iterable[str], lfw_dir: str | Path | None = None, catalog=None, embedder=None,
                  detector=None, batch_size: int = config.DEFAULT_BATCH, progress: bool = True,
                  points: int | None = None) -> PhotoVectors:
    """One vector per LFW file name (``Aaron_Eckhart_0001.jpg``), each photo embedded once.

    ``detector`` is a :class:`~iffse_lib.faces.FaceDetector` (None:
    :func:`~iffse_lib.faces.default_detector`, HOG at upsample 1). With ``catalog``, photos whose
    subject already has a vector of the embedder's model found by this detector are read from it,
    and photos it has detected with this detector keep its faces; the others are loaded (from
    ``lfw_dir``, else from the catalogue's copy), detected, aligned and embedded in batches of
    ``batch_size``. ``points`` (68 or 5) overrides the chip rule (then no catalogue vector is
    reused).
    """
    import pandas as pd

    from .. import faces
    from ..embedders import get_embedder

    embedder = embedder or get_embedder()
    detector = detector if detector is not None else faces.default_detector()
    files = list(dict.fromkeys(files))
    known = _catalog_lfw_photos(catalog, embedder.model_tag, detector.tag) if catalog is not None else {}
    vectors: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}
    from_cat = {f: known[f]["face_id"] for f in files
                if points is None and f in known and known[f]["face_id"] is not None}
    if from_cat:
        face_ids, vecs = catalog.vectors(embedder.model_tag, from_cat.values())
        by_face = dict(zip(face_ids.tolist(), vecs))
        for f, fid in from_cat.items():
            vectors[f] = by_face[fid]
            k = known[f]
            info[f] = {"how": "catalogue", "n_faces": int(k["n_faces"] or 0), "path": str(k["path"]),
                       "box": k["box"], "landmarks": k["landmarks"], "chip_points": None}
    paths = locate([f for f in files if f not in vectors], lfw_dir, known)
    subjects = find_subjects(paths, detector, batch_size, known, progress)
    names = list(paths)
    bar = tqdm(total=len(names), desc=f"embed LFW photos ({embedder.model_tag})", unit="photo", disable=not progress)
    for start in range(0, len(names), batch_size):
        part = {f: paths[f] for f in names[start:start + batch_size]}
        chips, used = cut_chips(part, subjects, detector.tag, points)
        for f, v in zip(part, embedder.embed(chips)):
            vectors[f] = v
            info[f] = {**subjects[f], "path": str(part[f]), "chip_points": used[f]}
        bar.update(len(part))
    bar.close()
    df = pd.DataFrame([{"file": f, **info[f]} for f in files],
                      columns=["file", "how", "n_faces", "path", "box", "landmarks", "chip_points"]).set_index("file")
    return PhotoVectors(vectors, df, embedder.model_tag, detector.tag)

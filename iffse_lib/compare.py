"""Two faces side by side: their distance against the threshold, its place among same-person and
different-person distances, and an occlusion map of why they match.

**Occlusion map.** Each aligned chip is cut into a grid of square patches; for every patch, a copy
of the chip with that patch greyed out is embedded (both faces' copies in one batch), and its
distance to the *other* face's vector is compared with the distance of the two whole chips. A
patch whose greying raises the distance held the likeness (red on the map); one that lowers it
held a difference (blue). The map says which regions of each face the embedder's verdict rests on.

A :class:`FaceSide` keeps what :func:`compare` computed for it (its vector, and its greyed
copies' vectors), so that a side compared again, with another face or at another threshold, is
not embedded again: the compare widget keeps its recent sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import config

#: The grey an occluded patch is filled with (the chip's mid level).
GREY = 128


@dataclass
class FaceSide:
    """One face of a comparison: its catalogue row, photo crop landmarks, chip and vector."""

    face_id: int
    label: str
    photo: np.ndarray        # the photo the face is in (RGB)
    box: object              # records.Box
    landmarks: np.ndarray    # (68, 2) in the photo
    chip: np.ndarray         # (150, 150, 3) aligned chip, the embedder's input
    vector: np.ndarray
    occlusion: np.ndarray | None = None  # (rows, cols) distance change per greyed patch
    #: the vectors of the chip's greyed copies (:func:`occlusion_chips`), and their patch side
    occluded: np.ndarray | None = field(default=None, repr=False)
    occluded_patch: int = 0


@dataclass
class Comparison:
    a: FaceSide
    b: FaceSide
    distance: float
    threshold: float
    patch: int = 0
    #: share of same-person pairs farther apart, and of different-person pairs closer (None without them)
    same_farther: float | None = None
    different_closer: float | None = None
    timings: dict = field(default_factory=dict)

    @property
    def same(self) -> bool:
        """The embedder's verdict at the threshold."""
        return self.distance <= self.threshold

    def summary(self) -> str:
        verdict = "the same person" if self.same else "different people"
        text = f"distance {self.distance:.3f} {'≤' if self.same else '>'} threshold {self.threshold:.2f}: {verdict}"
        if self.same_farther is not None:
            text += (f"; {100 * self.same_farther:.1f} % of same-person pairs are farther apart, "
                     f"{100 * self.different_closer:.1f} % of different-person pairs closer")
        return text


def occlusion_chips(chip: np.ndarray, patch: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Copies of ``chip`` with one ``patch`` x ``patch`` square greyed out each, row by row; and the grid's shape."""
    h, w = chip.shape[:2]
    rows, cols = -(-h // patch), -(-w // patch)
    out = np.repeat(chip[None], rows * cols, axis=0)
    for r in range(rows):
        for c in range(cols):
            out[r * cols + c, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = GREY
    return out, (rows, cols)


def side(catalog, face_id: int, label: str | None = None, model: str | None = None) -> FaceSide:
    """A catalogued face, aligned as the pipeline aligns it. ``label``: its name (default: looked
    up); ``model``: take its stored vector of that model instead of embedding the chip again."""
    from . import faces
    from .images import load_image

    face = catalog.face(int(face_id))
    photo = load_image(catalog.photo_path(face.photo_id))
    if label is None:
        ident = catalog.faces().set_index("face_id").loc[int(face_id), "identity"]
        label = ident if isinstance(ident, str) else f"face {face_id}"
    chip = faces.face_chips(photo, [face.landmarks])[0]
    vector = np.zeros(0, np.float32)
    if model is not None:
        ids, vectors = catalog.vectors(model, [int(face_id)])
        if len(ids):
            vector = np.asarray(vectors[0], np.float32)
    return FaceSide(int(face_id), label, photo, face.box, face.landmarks, chip, vector)


def photo_side(photo, label: str = "uploaded photo", detector=None,
               max_side: int | None = config.QUERY_MAX_SIDE) -> FaceSide:
    """The largest face of a photo that is not in the catalogue (a path, encoded bytes or an RGB
    array), aligned as the pipeline aligns it, without a vector yet (:func:`compare` embeds it).
    ``detector``: a :class:`~iffse_lib.faces.FaceDetector` (default: HOG at upsample 1; pass the
    catalogue's, :func:`iffse_lib.search.catalog_detector`, to cut chips as its faces were cut);
    a photo longer than ``max_side`` pixels is detected on a copy that long, as searches do
    (:meth:`~iffse_lib.faces.FaceDetector.detect`). NoFaceFound when it finds none; BadImage for a
    file that is not a photo."""
    from . import faces
    from .errors import NoFaceFound
    from .images import load_image

    image = photo if isinstance(photo, np.ndarray) else load_image(photo)
    detector = detector or faces.default_detector()
    found = detector.detect(image, max_side)
    if not found:
        finds = detector.finds(faces.bounded_scale(image.shape, max_side))
        raise NoFaceFound(f"no face found in {label} ({detector.tag} finds {finds})", finds)
    largest = found[0]  # largest first
    box, landmarks = largest.box, largest.landmarks
    chip = faces.face_chips(image, [faces.chip_points(image, box, landmarks, detector.tag)])[0]
    return FaceSide(-1, label, image, box, landmarks, chip, np.zeros(0, np.float32))


def compare(a: FaceSide, b: FaceSide, embedder=None, threshold: float = config.DEFAULT_THRESHOLD,
            occlusion_patch: int | None = 25, same: np.ndarray | None = None,
            different: np.ndarray | None = None) -> Comparison:
    """Compare two faces. A side without a vector (see :func:`side`) has its chip embedded; with
    ``occlusion_patch``, every greyed copy of a chip is embedded too, all in ONE batch, unless
    the side holds its copies' vectors from an earlier comparison. Both sides keep what was
    embedded for them; the Comparison holds copies of them with this pair's occlusion maps.
    ``same`` / ``different``: distances of same-person and different-person pairs
    (:func:`iffse_lib.reduce.pair_distances`) to place this one among."""
    import time

    from .embedders import query_embedder

    embedder = embedder or query_embedder()
    sides = [a] if a is b else [a, b]
    fresh = [s for s in sides if len(s.vector) == 0]
    grey = [s for s in sides if occlusion_patch and (s.occluded is None or s.occluded_patch != occlusion_patch)]
    chips = [s.chip[None] for s in fresh] + [occlusion_chips(s.chip, occlusion_patch)[0] for s in grey]
    t = time.perf_counter()
    vectors = embedder.embed(np.concatenate(chips)) if chips else np.zeros((0, 0), np.float32)
    embed_s = time.perf_counter() - t
    for i, s in enumerate(fresh):
        s.vector = vectors[i]
    start = len(fresh)
    for s, copies in zip(grey, chips[len(fresh):]):
        s.occluded, s.occluded_patch = vectors[start:start + len(copies)], int(occlusion_patch)
        start += len(copies)
    distance = float(np.linalg.norm(a.vector - b.vector))
    a, b = replace(a, occlusion=None), replace(b, occlusion=None)  # this pair's copies, for its own maps
    if occlusion_patch:
        grid = tuple(-(-n // occlusion_patch) for n in a.chip.shape[:2])
        a.occlusion = (np.linalg.norm(a.occluded - b.vector, axis=1) - distance).reshape(grid)
        b.occlusion = (np.linalg.norm(b.occluded - a.vector, axis=1) - distance).reshape(grid)
    out = Comparison(a, b, distance, float(threshold), occlusion_patch or 0,
                     timings={"embed_s": embed_s, "chips": int(sum(len(c) for c in chips))})
    if same is not None and different is not None and len(same) and len(different):
        out.same_farther = float(np.mean(np.asarray(same) > distance))
        out.different_closer = float(np.mean(np.asarray(different) < distance))
    return out


def compare_faces(catalog, face_a: int, face_b: int, stored: bool = False, labels: dict | None = None,
                  **kwargs) -> Comparison:
    """:func:`compare` two catalogued faces by id; ``stored``: use their stored vectors of the
    embedder's model (only the occluded copies are embedded); ``labels``: face id -> name."""
    from .embedders import query_embedder

    kwargs["embedder"] = kwargs.get("embedder") or query_embedder()
    model = kwargs["embedder"].model_tag if stored else None
    labels = labels or {}
    return compare(side(catalog, face_a, labels.get(face_a), model), side(catalog, face_b, labels.get(face_b), model),
                   **kwargs)

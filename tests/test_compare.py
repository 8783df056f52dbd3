"""Comparing two faces, and the occlusion map of why they match (iffse_lib/compare.py), on the
people photos; the widget is driven through its ipywidgets traits, as the browser drives it."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iffse_lib import compare, plots_compare
from iffse_lib.embedders import get_embedder
from iffse_lib.widgets_compare import FaceCompare

from conftest import FACES


class CountingEmbedder:
    """The default embedder, counting its calls and chips."""

    def __init__(self):
        self.inner = get_embedder()
        self.model_tag, self.dim = self.inner.model_tag, self.inner.dim
        self.calls = []

    def embed(self, chips):
        self.calls.append(len(chips))
        return self.inner.embed(chips)


def _faces_of(catalog, name):
    faces = catalog.faces()
    return faces[faces["identity"] == name]["face_id"].tolist()


def test_two_photos_of_one_person_match_and_two_people_do_not(people_catalog):
    obama, biden = _faces_of(people_catalog, "obama"), _faces_of(people_catalog, "biden")
    embedder = get_embedder()
    same = compare.compare_faces(people_catalog, obama[0], obama[1], embedder=embedder, occlusion_patch=None)
    other = compare.compare_faces(people_catalog, obama[0], biden[0], embedder=embedder, occlusion_patch=None)
    assert same.same and same.distance < 0.6 < other.distance and not other.same
    assert same.a.occlusion is None
    # The chips are aligned as the pipeline aligns them: the vectors are the catalogue's.
    ids, vectors = people_catalog.vectors(embedder.model_tag)
    stored = vectors[list(ids).index(obama[0])]
    assert np.linalg.norm(same.a.vector - stored) < 1e-3
    assert "the same person" in same.summary() and "different people" in other.summary()


def test_the_occlusion_map_embeds_every_greyed_chip_in_one_batch(people_catalog):
    obama = _faces_of(people_catalog, "obama")
    embedder = CountingEmbedder()
    cmp = compare.compare_faces(people_catalog, obama[0], obama[1], embedder=embedder, occlusion_patch=30)
    assert embedder.calls == [2 + 2 * 25]  # both chips and 5 x 5 greyed copies of each, one call
    # With the stored vectors, only the greyed copies are embedded, still in one call, to the same map.
    again = compare.compare_faces(people_catalog, obama[0], obama[1], embedder=embedder, occlusion_patch=30,
                                  stored=True)
    assert embedder.calls[1:] == [2 * 25] and abs(again.distance - cmp.distance) < 1e-3
    assert np.abs(again.a.occlusion - cmp.a.occlusion).max() < 2e-3
    for s in (cmp.a, cmp.b):
        assert s.occlusion.shape == (5, 5)
        # Greying the middle of the face (eyes, nose, mouth) moves the distance more than any
        # border patch (background, hair, chin edge).
        inner = np.abs(s.occlusion[1:4, 1:4]).max()
        border = np.abs(np.concatenate([s.occlusion[0], s.occlusion[-1], s.occlusion[:, 0], s.occlusion[:, -1]])).max()
        assert inner > border and inner > 0.01, s.occlusion.round(3)
    # A greyed copy differs from the chip in its patch only.
    copies, grid = compare.occlusion_chips(cmp.a.chip, 30)
    assert grid == (5, 5) and (copies[7, 30:60, 60:90] == compare.GREY).all()
    assert (copies[7, :30] == cmp.a.chip[:30]).all()
    fig = plots_compare.comparison(cmp, np.array([0.3, 0.4]), np.array([0.8, 0.9]))
    assert len(fig.axes) == 8  # 2 x (crop, chip, map), the distances, the colour bar


@pytest.fixture(scope="module")
def view(people_catalog):
    return FaceCompare(people_catalog)


def test_the_compare_widget_draws_two_picked_faces(view, people_catalog):
    labels = {v: k for k, v in view.face_labels.items()}
    obama, biden = _faces_of(people_catalog, "obama"), _faces_of(people_catalog, "biden")
    view.pick_a.value = labels[obama[0]]
    assert view.comparison is None and view.image.layout.display == "none"  # one face: nothing yet
    view.pick_b.value = labels[obama[1]]
    assert view.comparison.same and "the same person" in view.message_text
    assert "% of same-person pairs are farther apart" in view.message_text  # placed among the catalogue's pairs
    png = Image.open(io.BytesIO(view.image.value))
    assert png.width > 600 and view.image.layout.display is None
    view.occlusion.value = True  # why they match
    assert view.comparison.a.occlusion is not None and view.comparison.a.occlusion.shape == (5, 5)
    view.threshold.value = round(view.comparison.distance - 0.04, 2)  # below their distance
    assert not view.comparison.same and "different people" in view.message_text
    view.threshold.value = 0.6
    view.occlusion.value = False
    view.pick_b.value = labels[biden[0]]
    assert not view.comparison.same and view.comparison.b.label == "biden"


def _upload(name: str, data: bytes) -> tuple:
    """A FileUpload's value, as the browser sends it."""
    return ({"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
             "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def test_two_uploaded_photos_are_compared_by_their_largest_faces(view, people_catalog, tmp_path):
    """Upload a photo for either side (as the FileUpload widgets hand it over): its largest face
    is aligned like the catalogue's and compared with the other side's face."""
    obama = sorted((FACES / "people" / "obama").iterdir())
    biden = sorted((FACES / "people" / "biden").iterdir())
    labels = {v: k for k, v in view.face_labels.items()}
    view.pick_a.value = view.pick_b.value = ""
    before = view.comparison
    view.upload_a.value = _upload(obama[0].name, obama[0].read_bytes())
    assert view.comparison is before  # one side only: nothing new to draw
    view.upload_b.value = _upload(obama[1].name, obama[1].read_bytes())
    both = view.comparison
    assert (both.a.label, both.b.label) == ("uploaded photo A", "uploaded photo B")
    assert both.same and "the same person" in view.message_text
    # The uploaded faces are cut and embedded as the pipeline does: the same vector as the catalogue's
    # face of that photo.
    ids, vectors = people_catalog.vectors(view.embedder.model_tag)
    stored = dict(zip(ids.tolist(), vectors))
    faces = people_catalog.faces()
    catalogued = faces[faces["path"].map(lambda p: Path(p).read_bytes() == obama[0].read_bytes())]
    assert min(np.linalg.norm(stored[int(f)] - both.a.vector) for f in catalogued["face_id"]) < 1e-3
    # An uploaded photo against a picked face, and a picked face replacing an upload.
    view.upload_b.value = _upload(biden[0].name, biden[0].read_bytes())
    assert not view.comparison.same and "different people" in view.message_text
    view.pick_a.value = labels[_faces_of(people_catalog, "biden")[1]]
    assert view.comparison.a.label == "biden" and view.comparison.b.label == "uploaded photo B"
    assert view.comparison.same
    # A photo without a face is a message, not a traceback.
    view.upload_a.value = _upload("dog.jpg", (FACES / "noface" / "dlib_dog.jpg").read_bytes())
    assert "no face found in uploaded photo A" in view.message_text


def test_sides_keep_their_vectors_so_nothing_is_embedded_twice(people_catalog):
    """A side compared again (another face B, another threshold) reuses its vector and its greyed
    copies' vectors; each comparison keeps its own occlusion maps."""
    obama, biden = _faces_of(people_catalog, "obama"), _faces_of(people_catalog, "biden")
    embedder = CountingEmbedder()
    a, b, c = (compare.side(people_catalog, f) for f in (obama[0], obama[1], biden[0]))
    first = compare.compare(a, b, embedder=embedder, occlusion_patch=30)
    second = compare.compare(a, c, embedder=embedder, occlusion_patch=30)
    assert embedder.calls == [2 + 2 * 25, 1 + 25]  # then face C and its copies only
    assert a.occluded.shape == (25, 128) and a.occluded_patch == 30
    again = compare.compare(a, b, embedder=embedder, occlusion_patch=30)
    assert embedder.calls[2:] == []  # everything kept
    assert np.array_equal(again.a.occlusion, first.a.occlusion) and not np.array_equal(first.a.occlusion,
                                                                                         second.a.occlusion)
    assert a.occlusion is None  # the maps belong to the comparisons, not to the kept side
    compare.compare(a, b, embedder=embedder, occlusion_patch=50)  # another grid: new copies
    assert embedder.calls[2:] == [2 * 9]


def test_the_widget_embeds_only_what_is_new(people_catalog):
    embedder = CountingEmbedder()
    view = FaceCompare(people_catalog, embedder=embedder)
    labels = {v: k for k, v in view.face_labels.items()}
    obama, biden = _faces_of(people_catalog, "obama"), _faces_of(people_catalog, "biden")
    view.pick_a.value, view.pick_b.value = labels[obama[0]], labels[obama[1]]
    assert embedder.calls == []  # catalogued faces: their stored vectors
    view.occlusion.value = True
    assert embedder.calls == [2 * 25]
    view.pick_b.value = labels[biden[0]]
    assert embedder.calls[1:] == [25]  # face B's greyed copies only
    view.threshold.value = 0.5
    view.pick_b.value = labels[obama[1]]  # seen before
    assert embedder.calls[2:] == [] and view.comparison.same is (view.comparison.distance <= 0.5)


def test_a_kept_figure_draws_each_comparison_as_a_new_one_would(people_catalog):
    """The compare widget draws every comparison into one kept figure: nothing of the last pair
    stays (landmarks, lines, titles), and the picture is the one a new figure gives."""
    obama, biden = _faces_of(people_catalog, "obama"), _faces_of(people_catalog, "biden")
    same, different = np.array([0.3, 0.4]), np.array([0.8, 0.9])
    first = compare.compare_faces(people_catalog, obama[0], obama[1], occlusion_patch=30)
    second = compare.compare_faces(people_catalog, obama[0], biden[0], occlusion_patch=30)
    kept = plots_compare.ComparisonFigure(same, different, occlusion=True)
    kept.show(first)
    kept.png()
    fig = kept.show(second)
    crop = kept.axes["b0"]
    assert len(crop.lines) == 8 and len(crop.collections) == 7  # one face's landmarks: 8 outlines, 7 regions
    assert crop.get_title().startswith("biden") and "different people" in kept.axes["d"].get_title()
    new = plots_compare.ComparisonFigure(same, different, occlusion=True)
    new.show(second)
    a, b = (np.asarray(Image.open(io.BytesIO(f.png())).convert("L"), float) for f in (kept, new))
    assert a.shape == b.shape and np.abs(a - b).mean() < 1.0
    assert len(fig.axes) == 8
    with pytest.raises(ValueError, match="without occlusion"):
        plots_compare.ComparisonFigure(same, different).show(second)

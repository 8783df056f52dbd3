"""The UMAP explorer on a real catalogue (../shared/data/faces/people: real vectors, real UMAP),
driven through its Python API and through matplotlib mouse events on its canvas."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent
from matplotlib.path import Path
from PIL import Image

from iffse_lib import reduce
from iffse_lib.embedders import get_embedder
from iffse_lib.widgets_umap import UmapExplorer, umap_explorer


@pytest.fixture(scope="module")
def mapped(people_catalog):
    """(faces in vector order, their identities, UMAP coordinates, cluster labels)."""
    model = get_embedder().model_tag
    faces = people_catalog.faces(model)
    ids, vectors = people_catalog.vectors(model)
    faces = faces.set_index("face_id").loc[ids].reset_index()
    embedding = reduce.umap_2d(vectors, n_neighbors=10, seed=0)
    labels = reduce.chinese_whispers(vectors, seed=0)
    return faces, faces["identity"].to_numpy(), embedding, labels


@pytest.fixture(scope="module")
def explorer(people_catalog, mapped):
    faces, identities, embedding, labels = mapped
    return umap_explorer(people_catalog, embedding, faces, identities, labels)


def _loneliest(explorer) -> int:
    """The point farthest (on screen) from its nearest neighbour: a hover there is unambiguous."""
    d = explorer.ax.transData.transform(explorer.xy)
    d2 = ((d[:, None, :] - d[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return int(np.argmax(d2.min(1)))


def _empty_spot(explorer) -> tuple[float, float]:
    """Data coordinates inside the axes farthest from every point."""
    (x0, x1), (y0, y1) = explorer.ax.get_xlim(), explorer.ax.get_ylim()
    gx, gy = np.meshgrid(np.linspace(x0, x1, 60), np.linspace(y0, y1, 60))
    grid = np.c_[gx.ravel(), gy.ravel()]
    far = ((explorer.ax.transData.transform(grid)[:, None] - explorer.ax.transData.transform(explorer.xy)[None]) ** 2).sum(-1).min(1)
    return tuple(grid[int(np.argmax(far))])


def test_hover_over_a_point_shows_its_name_cluster_and_thumbnail(explorer, mapped):
    faces, identities, embedding, labels = mapped
    i = _loneliest(explorer)
    # A little off the point, as a hand would be: still within the pick radius.
    px, py = explorer.ax.transData.transform(embedding[i]) + 2
    x, y = explorer.ax.transData.inverted().transform((px, py))
    assert explorer.hover_at(x, y) == int(faces.at[i, "face_id"])
    name = identities[i].replace("_", " ")
    assert name in explorer.hover_text and "_" not in explorer.hover_text
    assert f"cluster {labels[i]} " in explorer.hover_text
    thumb = Image.open(io.BytesIO(explorer.thumbnail))
    assert thumb.size == (explorer.thumb_px, explorer.thumb_px) and explorer.thumb.layout.display is None
    # The thumbnail is that face's crop, not some other picture.
    from iffse_lib import plots

    crop = np.asarray(plots.face_crop(faces.at[i, "path"], faces.iloc[i], size=explorer.thumb_px, margin=0.15), float)
    assert np.abs(np.asarray(thumb.convert("RGB"), float) - crop).mean() < 8  # JPEG's loss only


def test_hover_over_empty_space_shows_nothing(explorer, mapped):
    faces, identities, embedding, labels = mapped
    explorer.hover_at(*embedding[0])
    assert explorer.hovered is not None
    assert explorer.hover_at(*_empty_spot(explorer)) is None
    assert explorer.hovered is None and explorer.hover_text == "" and explorer.thumbnail is None
    assert explorer.thumb.layout.display == "none"


def test_click_opens_the_face_in_the_lookalike_search_with_its_person_first(explorer, mapped):
    faces, identities, embedding, labels = mapped
    # Someone with several photos, so that the search has their other faces to find.
    counts = faces["identity"].value_counts()
    person = counts.index[0]
    i = int(np.flatnonzero(identities == person)[0])
    picked = []
    on_pick = explorer.on_pick
    explorer.on_pick = lambda face_id: (picked.append(face_id), on_pick(face_id))
    try:
        face_id = explorer.click_at(*embedding[i])
    finally:
        explorer.on_pick = on_pick
    assert face_id == picked[0] == explorer.picked
    # The search is that face's (itself left out): the person's other photos come first.
    res = explorer.search.results
    others = int((identities == person).sum()) - 1
    assert face_id not in set(res["face_id"]) and len(res) >= others
    assert list(res["identity"].iloc[:others]) == [person] * others
    assert explorer.search.thumbnails
    # A click on empty space picks nothing and leaves the search alone.
    assert explorer.click_at(*_empty_spot(explorer)) is None and explorer.picked == face_id


def test_lasso_around_one_person_selects_exactly_the_faces_inside(explorer, mapped):
    faces, identities, embedding, labels = mapped
    person = faces["identity"].value_counts().index[0]
    own = embedding[identities == person].astype(float)
    centre = own.mean(0)
    radius = np.linalg.norm(own - centre, axis=1).max() * 1.05
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    polygon = centre + radius * np.c_[np.cos(angles), np.sin(angles)]
    sel = explorer.select_polygon(polygon)
    inside = Path(polygon).contains_points(embedding)
    assert sorted(sel["face_id"]) == sorted(faces.loc[inside, "face_id"])
    assert set(faces.loc[identities == person, "face_id"]) <= set(sel["face_id"])
    assert list(sel.columns) == ["face_id", "identity", "cluster", "path", "x", "y"]
    row = sel.set_index("face_id").loc[int(faces.loc[identities == person, "face_id"].iloc[0])]
    assert row["identity"] == person and Path(polygon).contains_point((row["x"], row["y"]))
    assert f"{len(sel)} faces selected" in explorer.selection_info.value
    explorer.clear_selection()
    assert explorer.selection.empty and explorer.selection_info.value == ""


def _mouse(explorer, name, xy, button=None):
    """A matplotlib mouse event at data coordinates ``xy``, processed as the canvas would."""
    x, y = explorer.ax.transData.transform(xy)
    MouseEvent(name, explorer.canvas, x, y, button=button)._process()


def test_mouse_events_run_the_same_handlers(people_catalog, mapped):
    faces, identities, embedding, labels = mapped
    picked = []
    ex = UmapExplorer(embedding, faces, identities, labels, on_pick=picked.append)
    assert not ex.interactive  # no kernel: Agg and a PNG
    i = _loneliest(ex)
    _mouse(ex, "motion_notify_event", embedding[i])
    assert ex.hovered == int(faces.at[i, "face_id"])
    _mouse(ex, "button_press_event", embedding[i], button=1)
    assert picked == [int(faces.at[i, "face_id"])]
    # The lasso tool: press, drag around a square, release; the click tool is off meanwhile.
    ex.tool.value = "lasso"
    (x0, x1), (y0, y1) = np.quantile(embedding[:, 0], [0.2, 0.6]), np.quantile(embedding[:, 1], [0.2, 0.6])
    square = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    _mouse(ex, "button_press_event", square[0], button=1)
    for corner in square[1:] + [square[0]]:
        _mouse(ex, "motion_notify_event", corner, button=1)
    _mouse(ex, "button_release_event", square[0], button=1)
    assert picked == [int(faces.at[i, "face_id"])]
    inside = Path(square).contains_points(embedding)
    assert inside.any() and sorted(ex.selection["face_id"]) == sorted(faces.loc[inside, "face_id"])


def test_the_ipympl_canvas_is_the_widget_when_asked_for(mapped):
    faces, identities, embedding, labels = mapped
    pytest.importorskip("ipympl")
    from ipympl.backend_nbagg import Canvas

    ex = UmapExplorer(embedding, faces, identities, None, interactive=True)
    def shown(widget):
        return [widget] + [d for c in getattr(widget, "children", ()) for d in shown(c)]

    assert ex.interactive and isinstance(ex.canvas, Canvas) and ex.canvas in shown(ex.widget)
    i = _loneliest(ex)
    assert ex.hover_at(*embedding[i]) == int(faces.at[i, "face_id"])
    assert "no clusters" in ex.hover_text
    assert not ex.select_polygon([(embedding[:, 0].min() - 1, embedding[:, 1].min() - 1),
                                  (embedding[:, 0].max() + 1, embedding[:, 1].min() - 1),
                                  (embedding[:, 0].max() + 1, embedding[:, 1].max() + 1),
                                  (embedding[:, 0].min() - 1, embedding[:, 1].max() + 1)]).empty


def test_mismatched_inputs_say_what_to_pass(mapped):
    from iffse_lib.errors import IffseError

    faces, identities, embedding, labels = mapped
    with pytest.raises(IffseError, match="in the order of the embedding"):
        UmapExplorer(embedding[:-1], faces, identities, labels)


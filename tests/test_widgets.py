"""The ipywidgets views, driven from Python the way the browser drives them (trait changes)."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iffse_lib import widgets

from conftest import FACES

OBAMA = FACES / "people" / "obama" / "facerec_obama2.jpg"


def _upload(view, path_or_bytes, name="photo.jpg"):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    # What the browser sends when a file is chosen: FileUpload.value becomes a tuple of one dict.
    view.upload.value = ({"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
                          "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


@pytest.fixture(scope="module")
def view(people_catalog):
    return widgets.LookalikeSearch(people_catalog, k=10, threshold=0.6)


def _decoded(img_widget) -> Image.Image:
    im = Image.open(io.BytesIO(img_widget.value))
    im.load()
    return im


def test_upload_of_a_real_photo_fills_the_grid_with_that_person_first(view, people_catalog):
    photo = FACES / "people" / "obama" / "facerec_obama2.jpg"
    others = len(list((FACES / "people" / "obama").glob("*.jpg"))) - 1
    _upload(view, photo)
    res = view.results
    assert view.message_text.startswith(f"{len(res)} matches within distance 0.60")
    # The photo itself is catalogued (distance 0), the other photos of Obama come next, before anyone else.
    assert res["distance"].iloc[0] < 1e-3 and Path(res["path"].iloc[0]).read_bytes() == photo.read_bytes()
    assert list(res["identity"].iloc[:1 + others]) == ["obama"] * (1 + others)
    assert (res["distance"] <= 0.6).all() and res["distance"].is_monotonic_increasing
    thumbs = view.thumbnails
    assert len(thumbs) == len(res) >= 1 + others
    for img, label in thumbs:
        assert _decoded(img).size == (view.thumb_px, view.thumb_px)
    assert "obama" in thumbs[1][1].value and f"{res['distance'].iloc[1]:.3f}" in thumbs[1][1].value
    assert view.query_view.layout.display is None and _decoded(view.query_view).width > 0


def test_a_photo_of_someone_new_finds_their_catalogued_photos(people_catalog):
    # Leave one of Angelina Jolie's photos out of the search by using a second catalogue-free query:
    # a different photo of hers (not byte-identical to any catalogued one) must still rank her first.
    view = widgets.LookalikeSearch(people_catalog, k=5)
    photo = sorted((FACES / "people" / "angelina_jolie").glob("*.jpg"))[0]
    im = Image.open(photo).convert("RGB")
    buf = io.BytesIO()
    im.resize((im.width * 9 // 10, im.height * 9 // 10)).save(buf, format="JPEG", quality=80)
    _upload(view, buf.getvalue())
    assert (view.results["identity"] == "angelina_jolie").all() and len(view.results) == 5


def test_k_and_threshold_sliders_filter_without_searching_again(view):
    _upload(view, FACES / "people" / "obama" / "facerec_obama2.jpg")
    view.k.value = 2
    assert len(view.results) == 2 and len(view.thumbnails) == 2
    view.k.value = 10
    view.threshold.value = 0.3
    assert len(view.results) <= 1 and (view.results["distance"] <= 0.3).all()
    view.threshold.value = 0.2
    view.threshold.value = 0.3
    view.threshold.value = 0.6


@pytest.mark.parametrize("name", ["dlib_dog.jpg", "dlib_horses.jpg"])
def test_a_photo_without_a_face_shows_a_message(view, name):
    _upload(view, FACES / "people" / "obama" / "facerec_obama2.jpg")
    _upload(view, FACES / "noface" / name, name)
    assert view.message_text.startswith(f"No face found in {name}")
    assert view.thumbnails == [] and view.results is None


@pytest.mark.parametrize("data, kind", [
    (b"this is a text file, not a photo", "not_image"),
    (b"", "empty"),
    (OBAMA.read_bytes()[:OBAMA.stat().st_size // 2], "truncated"),  # header intact, pixels cut
])
def test_a_bad_file_shows_a_message_not_a_traceback(view, data, kind):
    _upload(view, data, "broken.jpg")
    assert view.message_text.startswith(f"broken.jpg is not a photo iffse can read ({kind})"), view.message_text
    assert view.thumbnails == []


def test_a_photo_with_several_faces_lets_you_choose_which(view):
    _upload(view, FACES / "multi" / "facerec_obama_and_biden.jpg", "two.jpg")
    n = len(view.face_choice.options)
    assert n >= 2 and view.face_choice.layout.display is None
    assert view.message_text.startswith(f"{n} faces in two.jpg")
    assert "showing face 1." in view.message_text
    tops = []
    for i in range(n):
        view.face_choice.value = i  # what clicking the button does
        assert f"showing face {i + 1}." in view.message_text, view.message_text
        tops.append(view.results["identity"].iloc[0] if len(view.results) else None)
    assert "obama" in tops and "biden" in tops
    # Choosing redraws the query with the chosen face framed, and the grid with its matches.
    view.choose_face(tops.index("biden"))
    assert view.results["identity"].iloc[0] == "biden"
    assert "biden" in view.thumbnails[0][1].value


def test_picking_a_catalogued_face_searches_without_it(view, people_catalog):
    faces = people_catalog.faces()
    face = faces[faces["identity"] == "kit_harington"].iloc[0]
    labels = {v: k for k, v in view.face_labels.items()}
    label = labels[int(face["face_id"])]
    # The picker is a Combobox: typing filters its options by name, as people write it.
    assert label.startswith("kit harington") and label in view.pick.options
    assert len(view.pick.options) == len(faces) == len(set(view.pick.options))
    view.pick.value = "kit harin"  # typing: not an option yet, nothing happens
    assert view.results is not None and view.message_text
    view.pick.value = label  # what choosing in the list does
    res = view.results
    assert int(face["face_id"]) not in set(res["face_id"])
    assert res["identity"].iloc[0] == "kit_harington"


def test_the_upload_button_and_the_query_preview_are_large_enough(view):
    # The button's label fits (ipywidgets' default width cuts "Upload a photo" short).
    assert view.upload.description == "Upload a photo" and int(view.upload.layout.width.rstrip("px")) >= 180
    _upload(view, FACES / "multi" / "facerec_obama_and_biden.jpg", "two.jpg")
    source = Image.open(FACES / "multi" / "facerec_obama_and_biden.jpg")
    shown = _decoded(view.query_view)
    assert max(shown.size) == min(view.QUERY_PX, max(source.size)) >= 480


def test_landmark_browser_redraws_on_the_slider(people_catalog):
    browser = widgets.LandmarkBrowser(people_catalog, max_photos=5)
    first = browser.image.value
    assert _decoded(browser.image).width > 300 and browser.message.value == ""
    # Slider and dropdown count alike, from 1: photo 3 is the dropdown's third entry.
    assert browser.slider.min == 1 and browser.slider.max == 5 and browser.slider.value == 1
    assert browser.dropdown.options[0] == (browser.dropdown.label, 1) and browser.dropdown.label.startswith("1. ")
    browser.slider.value = 3
    assert browser.dropdown.value == 3 and browser.dropdown.label.startswith("3. ")
    assert browser.image.value != first
    browser.dropdown.value = 2
    assert browser.slider.value == 2
    browser.toggle.value = True  # alignment steps of the largest face
    assert browser.image.value != first and browser.message.value == ""


@pytest.mark.slow
def test_landmark_browser_shows_a_photo_without_a_face_at_its_own_size(tmp_path):
    from iffse_lib import pipeline
    from iffse_lib.catalog import Catalog
    from iffse_lib.sources.folder import FolderSource

    with Catalog(tmp_path / "data") as cat:
        pipeline.collect(cat, FolderSource(FACES / "noface"), progress=False)
        pipeline.index_photos(cat, progress=False)
        browser = widgets.LandmarkBrowser(cat)
        photos = cat.photos()
        assert len(browser.dropdown.options) == len(photos) >= 5
        for i in range(len(photos)):
            browser.slider.value = i + 1
            shown = _decoded(browser.image)
            source = Image.open(photos["path"].iloc[i])
            assert browser.message.value == ""
            # Not enlarged: about as wide as the photo (or 7.5 inches for a larger one), never 4 inches of blur.
            assert shown.width <= max(source.width, 300) + 60, (shown.size, source.size)


@pytest.mark.slow
def test_landmark_browser_lists_every_photo(lfw_catalog):
    browser = widgets.LandmarkBrowser(lfw_catalog)
    assert len(browser.dropdown.options) == lfw_catalog.counts()["photos"] == 2515
    browser.slider.value = 2515
    assert browser.dropdown.label.startswith("2515. ") and browser.message.value == ""


def test_results_come_out_as_a_dataframe_with_sources_colours_and_csv(view, people_catalog, tmp_path):
    import base64
    import re
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    import pandas as pd

    faces = people_catalog.faces()
    face = faces[faces["identity"] == "obama"].iloc[0]
    view.pick.value = {v: k for k, v in view.face_labels.items()}[int(face["face_id"])]
    res = view.results
    assert len(res) >= 2
    # Same / different: known for every labelled result, since the query face is labelled.
    assert [s for s in res["same"]] == [i == "obama" for i in res["identity"]]
    assert res["same"].iloc[0] == True  # noqa: E712 (an object column: True, False or None)
    photos = people_catalog.photos().set_index("photo_id")
    for _, m in res.iterrows():
        kind, sid = photos.loc[m["photo_id"], ["source_kind", "source_id"]]
        assert m["source"] == f"{kind}:{sid}" and sid.startswith(f"{m['identity']}/")
        assert Path(unquote(urlparse(m["photo_url"]).path)) == Path(m["path"]) and Path(m["path"]).exists()
    # Each thumbnail links to its photo and is coloured same (green) or different (red).
    first = view.thumbnails[0][1].value
    assert res["photo_url"].iloc[0] in first and "#009E73" in first
    if (res["same"] == False).any():  # noqa: E712
        assert "#D55E00" in view.thumbnails[int(np.flatnonzero(res["same"] == False)[0])][1].value  # noqa: E712
    # The export link carries the results as CSV; to_csv writes the same.
    href = re.search(r'href="data:text/csv;base64,([^"]+)"', view.export.value)[1]
    exported = pd.read_csv(io.StringIO(base64.b64decode(href).decode()))
    assert list(exported.columns) == list(res.columns) and len(exported) == len(res)
    assert exported["face_id"].tolist() == res["face_id"].tolist()
    view.to_csv(tmp_path / "r.csv")
    assert pd.read_csv(tmp_path / "r.csv")["distance"].round(6).tolist() == res["distance"].round(6).tolist()
    # An uploaded photo has no identity: nothing is coloured same or different.
    _upload(view, FACES / "people" / "obama" / "facerec_obama2.jpg")
    assert view.results["same"].isna().all()

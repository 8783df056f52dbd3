"""Lookalike search on real photos: leave-one-out on the people/ photos, bad queries, the command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from iffse_lib import config
from iffse_lib.errors import BadImage, NoFaceFound
from iffse_lib.records import MATCH_COLUMNS as COLUMNS
from iffse_lib.search import Searcher

from conftest import FACES


def test_leave_one_out_top_match_is_the_same_person(people_catalog):
    cat = people_catalog
    searcher = Searcher(cat)
    df = cat.faces(searcher.index.model_tag)
    # The largest face of each photo stands for the photo's person.
    df["area"] = (df["right"] - df["left"]) * (df["bottom"] - df["top"])
    main = df.sort_values("area", ascending=False).groupby("photo_id").head(1)
    counts = main["identity"].value_counts()
    queries = main[main["identity"].map(counts) > 1]
    hits = 0
    for _, q in queries.iterrows():
        matches = searcher.search_face(int(q["face_id"]), k=5)
        # Leave the query's own photo out entirely (another face in it is not a match).
        matches = matches[matches["photo_id"] != q["photo_id"]]
        hits += matches.iloc[0]["identity"] == q["identity"]
    rate = hits / len(queries)
    print(f"\nleave-one-out: {hits}/{len(queries)} top matches are the same person ({rate:.1%})")
    assert len(queries) >= 70
    assert rate >= 0.95


def test_same_person_is_closer_than_a_stranger(people_catalog):
    searcher = Searcher(people_catalog)
    results = searcher.search(FACES / "people" / "obama" / "facerec_obama.jpg", k=3)
    assert len(results) == 1
    df = results[0]
    assert list(df.columns) == COLUMNS
    assert df.iloc[0]["identity"] == "obama" and df.iloc[0]["distance"] < 0.05  # the photo itself
    assert df.iloc[1]["identity"] == "obama" and df.iloc[1]["distance"] < config.DEFAULT_THRESHOLD
    assert (np.diff(df["distance"]) >= 0).all() and list(df["rank"]) == [1, 2, 3]


def test_threshold_drops_far_matches(people_catalog):
    searcher = Searcher(people_catalog)
    photo = FACES / "people" / "biden" / "facerec_biden.jpg"
    everything = searcher.search(photo, k=20)[0]
    near = searcher.search(photo, k=20, threshold=0.5)[0]
    # Without a threshold the 20 nearest include other people, beyond 0.5; with it they are gone
    # and the rest is unchanged, in the same order.
    assert len(everything) == 20 and (everything["distance"] > 0.5).sum() > 0
    assert 1 <= len(near) == (everything["distance"] <= 0.5).sum() < len(everything)
    assert near["face_id"].tolist() == everything["face_id"][everything["distance"] <= 0.5].tolist()
    assert list(near["rank"]) == list(range(1, len(near) + 1))


def test_group_photo_gives_one_table_per_face(people_catalog):
    results = Searcher(people_catalog).search(FACES / "multi" / "facerec_kit_with_rose.jpg", k=3)
    assert len(results) == 2
    tops = {r.iloc[0]["identity"] for r in results}
    assert tops == {"kit_harington", "rose_leslie"}


def test_bad_queries_raise_typed_errors(people_catalog, tmp_path):
    searcher = Searcher(people_catalog)
    with pytest.raises(NoFaceFound, match="no face"):
        searcher.search(FACES / "noface" / "dlib_dog.jpg")
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a photo")
    with pytest.raises(BadImage, match="not an image"):
        searcher.search(fake)


def _iffse(*args):
    return subprocess.run([sys.executable, "-m", "iffse_lib.cli", *map(str, args)], capture_output=True, text=True)


@pytest.mark.slow
def test_command_line_search_and_exit_codes(people_catalog, tmp_path):
    data = people_catalog.root
    out = _iffse("search", FACES / "people" / "angelina_jolie" / "deepface_img1.jpg", "--data", data, "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload[0]["matches"][0]["identity"] == "angelina_jolie"
    dog = _iffse("search", FACES / "noface" / "dlib_dog.jpg", "--data", data)
    assert dog.returncode == 1 and dog.stderr.startswith("iffse: error: no face found")
    assert len(dog.stderr.strip().splitlines()) == 1
    missing = _iffse("stats", "--data", tmp_path / "nowhere")
    assert missing.returncode == 1 and "no catalogue" in missing.stderr
    stats = _iffse("stats", "--data", data, "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["photos"] == people_catalog.counts()["photos"]
    assert _iffse("search").returncode == 2


def test_queries_embed_on_one_thread_to_the_same_vectors():
    """Searches and comparisons embed a few chips at a time on one torch thread (two threads wait
    for each other on a shared CPU); the vectors are the default embedder's."""
    from iffse_lib import faces, images
    from iffse_lib.embedders import get_embedder, query_embedder

    query, default = query_embedder(), get_embedder()
    assert query.model_tag == default.model_tag
    assert getattr(query, "num_threads", 1) == 1
    image = images.load_image(FACES / "multi" / "facerec_kit_with_rose.jpg")
    boxes = faces.default_detector().detect_batch([image])[0]
    chips = faces.face_chips(image, [faces.landmarks_for_box(image, box) for box, _ in boxes])
    assert len(chips) == 2
    assert np.abs(query.embed(chips) - default.embed(chips)).max() < 1e-4

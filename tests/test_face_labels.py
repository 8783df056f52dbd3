"""Identity labels belong to faces: a labelled photo names its subject face, not its bystanders.

Real LFW photos with bystanders, copied in LFW's layout; the rule (iffse_lib/labels.py) is the one
evaluate uses for LFW pairs: the face nearest the centre whose box covers the centre.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from conftest import FACES, LFW

#: LFW photos indexed end to end, and a schema upgrade; make test-fast leaves these out
pytestmark = pytest.mark.slow

#: LFW photos where the HOG detector finds the subject and bystanders, and one where it misses
#: the subject and finds only the man behind him (README: Evaluation).
CROWDED = ["Abdel_Nasser_Assidi_0001.jpg", "Abdullah_Gul_0008.jpg", "Al_Pacino_0002.jpg"]
SUBJECT_MISSED = "Colin_Powell_0206.jpg"
ALONE = "Aaron_Eckhart_0001.jpg"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    from iffse_lib import pipeline
    from iffse_lib.catalog import Catalog
    from iffse_lib.sources.folder import FolderSource
    from iffse_lib.sources.lfw import LFWSource

    root = tmp_path_factory.mktemp("labels")
    lfw = root / "lfw"
    for name in CROWDED + [SUBJECT_MISSED, ALONE]:
        person = name.rsplit("_", 1)[0]
        (lfw / person).mkdir(parents=True, exist_ok=True)
        shutil.copy(LFW / person / name, lfw / person / name)
    people = root / "people" / "obama"
    people.mkdir(parents=True)
    shutil.copy(FACES / "multi" / "facerec_obama_and_biden.jpg", people)
    data = root / "data"
    with Catalog(data) as cat:
        pipeline.collect(cat, LFWSource(lfw), progress=False)
        pipeline.collect(cat, FolderSource(root / "people", identity_from_folder=True), progress=False)
        pipeline.index_photos(cat, progress=False)
    return data


def _names(column) -> list:
    return [x if isinstance(x, str) else None for x in column]


def _faces(data, readonly=True):
    from iffse_lib.catalog import Catalog

    with Catalog(data, readonly=readonly) as cat:
        return cat.faces(), cat.photos(), cat.get_meta("schema_version")


def test_only_the_subject_face_of_a_photo_carries_its_identity(labelled):
    faces, photos, version = _faces(labelled)
    assert version == "3"
    by_file = faces.groupby("source_id")
    for name in CROWDED:
        g = by_file.get_group(name)
        assert len(g) >= 2, name  # bystanders were detected
        named = g[g["identity"].notna()]
        assert list(named["identity"]) == [name.rsplit("_", 1)[0]], (name, list(g["identity"]))
        f = named.iloc[0]
        assert f["left"] <= 125 < f["right"] and f["top"] <= 125 < f["bottom"]  # covers the centre
        assert (g["photo_identity"] == name.rsplit("_", 1)[0]).all()  # the photo keeps its name
    missed = by_file.get_group(SUBJECT_MISSED)
    assert len(missed) >= 1 and missed["identity"].isna().all()  # a bystander is not Colin Powell
    assert list(by_file.get_group(ALONE)["identity"]) == ["Aaron_Eckhart"]
    # A folder photo of a person: the face nearest the centre is theirs, the other stays unlabelled.
    two = by_file.get_group("obama/facerec_obama_and_biden.jpg")
    assert len(two) >= 2 and two["identity"].notna().sum() == 1
    w, h = (photos.set_index("source_id").loc["obama/facerec_obama_and_biden.jpg", c] for c in ("width", "height"))
    dist = ((two["left"] + two["right"]) / 2 - w / 2) ** 2 + ((two["top"] + two["bottom"]) / 2 - h / 2) ** 2
    assert two.loc[dist.idxmin(), "identity"] == "obama"


def test_a_schema_2_catalogue_is_read_and_upgraded_with_face_labels(labelled, tmp_path):
    from iffse_lib.catalog import Catalog

    expected, _, _ = _faces(labelled)
    old = tmp_path / "data"
    shutil.copytree(labelled, old)
    db = sqlite3.connect(old / "catalog.sqlite")
    db.executescript("DROP INDEX faces_identity; ALTER TABLE faces DROP COLUMN identity; "
                     "UPDATE meta SET value = '2' WHERE key = 'schema_version';")
    db.close()
    # Read-only: nothing is written, and the labels are the ones the upgrade will store.
    read, _, version = _faces(old)
    assert version == "2"
    assert list(read.columns) == list(expected.columns)
    assert _names(read["identity"]) == _names(expected["identity"])
    assert _names(read["photo_identity"]) == _names(expected["photo_identity"])
    # The first writer upgrades: the column is added and filled.
    with Catalog(old) as cat:
        assert cat.get_meta("schema_version") == "3"
        stored = dict(cat.query("SELECT id, identity FROM faces"))
    assert [stored[f] for f in expected["face_id"]] == _names(expected["identity"])
    upgraded, _, _ = _faces(old)
    assert _names(upgraded["identity"]) == _names(expected["identity"])
    assert expected["identity"].isna().sum() >= 4 and expected["identity"].notna().sum() == 5


def test_detecting_a_photo_again_moves_its_label_to_the_new_subject(labelled, tmp_path):
    from iffse_lib import pipeline
    from iffse_lib.catalog import Catalog
    from iffse_lib.faces import FaceDetector

    data = tmp_path / "data"
    shutil.copytree(labelled, data)
    with Catalog(data) as cat:
        # Upsampled twice, the detector finds more and smaller faces: labels are set afresh.
        pipeline.index_photos(cat, detector=FaceDetector("hog", 2), redetect=True, progress=False)
        faces = cat.faces()
    assert set(faces["detector"]) == {"hog-up2"}
    for name in CROWDED + [ALONE]:
        g = faces[faces["source_id"] == name]
        assert g["identity"].notna().sum() == 1, name


def test_search_results_carry_the_face_label_not_the_photo_name(labelled):
    """A bystander found by a search is not given the name of the photo it stands in."""
    from iffse_lib.catalog import Catalog
    from iffse_lib.catalog_index import build_index
    from iffse_lib.search import Searcher

    with Catalog(labelled) as cat:
        build_index(cat, progress=False)
    with Catalog(labelled, readonly=True) as cat:
        faces = cat.faces()
        bystander = faces[faces["identity"].isna() & (faces["source_id"] == SUBJECT_MISSED)].iloc[0]
        matches = Searcher(cat).search_face(int(bystander["face_id"]), k=len(faces))
        by_face = faces.set_index("face_id")
        assert len(matches) == len(faces) - 1
        want = by_face.loc[matches["face_id"], "identity"]
        assert _names(matches["identity"]) == _names(want)
        assert matches["identity"].isna().sum() >= len(CROWDED)  # the other bystanders, unnamed

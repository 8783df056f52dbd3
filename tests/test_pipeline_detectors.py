"""The pipeline with either detector: re-detection with another one, dlib's CNN detector in
PyTorch, and chips cut in PyTorch (the GPU path, run here on the CPU)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from iffse_lib import faces, pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.cli import main
from iffse_lib.embed import get_embedder
from iffse_lib.search import Searcher
from iffse_lib.sources.folder import FolderSource

# HOG finds 1 face in the first at upsample 0 and 6 at upsample 1; 2 and 2 in the second; in the
# third (an LFW photo) 1 at upsample 0 and none at upsample 1.
REDETECT_PHOTOS = ["multi/2008_002079.jpg", "multi/2008_001009.jpg", "tilted/lfw_George_HW_Bush_0002.jpg"]


def _catalog(tmp_path, faces_dir, names, identity_from_folder=False) -> Catalog:
    folder = tmp_path / "photos"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(faces_dir / name, folder / name)
    cat = Catalog(tmp_path / "data")
    pipeline.collect(cat, FolderSource(folder, identity_from_folder=identity_from_folder), progress=False)
    return cat


def _faces_per_photo(cat: Catalog) -> dict[str, tuple[int, set]]:
    rows = cat.query("SELECT p.path, d.detector, COUNT(f.id), GROUP_CONCAT(DISTINCT f.detector) FROM photos p "
                     "JOIN detections d ON d.photo_id = p.id LEFT JOIN faces f ON f.photo_id = p.id GROUP BY p.id")
    return {r[0]: (r[2], {r[1]} | set(filter(None, (r[3] or "").split(",")))) for r in rows}


def test_redetect_replaces_the_faces_of_another_detector(tmp_path, faces_dir):
    cat = _catalog(tmp_path, faces_dir, REDETECT_PHOTOS)
    embedder = get_embedder()
    first = pipeline.index_photos(cat, embedder, detector=faces.FaceDetector("hog", 0), progress=False)
    assert (first["photos"], first["faces"]) == (3, 4)
    pipeline.build_index(cat, embedder.model_tag, progress=False)
    old_ids = {r[0] for r in cat.query("SELECT id FROM faces")}

    # Another detector without --redetect: the photos keep their faces, and the count says so.
    kept = pipeline.index_photos(cat, embedder, detector=faces.FaceDetector("hog", 1), progress=False)
    assert kept.get("photos", 0) == 0 and kept["other_detector"] == 3
    assert {r[0] for r in cat.query("SELECT id FROM faces")} == old_ids

    redone = pipeline.index_photos(cat, embedder, detector=faces.FaceDetector("hog", 1), redetect=True,
                                   progress=False)
    assert (redone["photos"], redone["faces"], redone["vectors"]) == (3, 8, 8)
    assert redone["other_detector"] == 0
    counts = {path.rsplit("/", 1)[-1]: n for path, (n, tags) in _faces_per_photo(cat).items()}
    assert sorted(counts.values()) == [0, 2, 6]
    assert all(tags == {"hog-up1"} for _, tags in _faces_per_photo(cat).values())
    # The old faces and their vectors are gone; every face has exactly one vector.
    face_ids = {r[0] for r in cat.query("SELECT id FROM faces")}
    assert cat.scalar("SELECT COUNT(*) FROM vectors") == 8
    assert {r[0] for r in cat.query("SELECT face_id FROM vectors")} == face_ids
    assert cat.get_meta("index_stale") == "1"

    # The saved index (built over the old faces) never returns a replaced face.
    index = pipeline.load_index(cat, embedder.model_tag)
    assert len(index) == 8
    searcher = Searcher(cat, embedder, index=index, detector=faces.FaceDetector("hog", 1))
    for face_id in face_ids:
        found = set(searcher.search_face(face_id, k=20)["face_id"])
        assert found <= face_ids and len(found) == 7

    # Nothing left to do with the same detector.
    again = pipeline.index_photos(cat, embedder, detector=faces.FaceDetector("hog", 1), redetect=True,
                                  progress=False)
    assert again.get("photos", 0) == 0
    cat.close()


def test_torch_alignment_gives_dlibs_vectors(tmp_path, faces_dir):
    """run_batch with chips cut in PyTorch (what it does for an embedder on a GPU), on the CPU:
    every vector within 0.005 (euclidean) of the one from dlib's chips; dlib's same-person
    threshold is 0.6."""
    pytest.importorskip("torch")
    names = ["multi/facerec_obama_and_biden.jpg", "multi/dlib_bald_guys.jpg", "people/obama/facerec_obama.jpg"]
    for name in names:
        assert (faces_dir / name).exists(), name
    items = [(i, str(faces_dir / name), None) for i, name in enumerate(names)]
    embedder = get_embedder("torch")
    by_dlib = pipeline.run_batch(items, 1, embedder, align="dlib")
    by_torch = pipeline.run_batch(items, 1, embedder, align="torch", loaders=2)
    assert by_dlib["keys"] == by_torch["keys"] and len(by_dlib["keys"]) >= 25
    dist = np.linalg.norm(by_dlib["vectors"] - by_torch["vectors"], axis=1)
    print(f"\n{len(dist)} faces: distance between dlib- and torch-aligned vectors at most {dist.max():.5f}, "
          f"median {np.median(dist):.5f}")
    assert dist.max() <= 0.005
    with pytest.raises(ValueError, match="align"):
        pipeline.run_batch(items[:1], 1, embedder, align="opencv")


def test_detector_settings_are_checked():
    with pytest.raises(ValueError, match="unknown detector"):
        faces.FaceDetector("yolo")
    with pytest.raises(ValueError, match="CPU only"):
        faces.FaceDetector("hog", 1, "cuda")
    with pytest.raises(ValueError, match="upsample"):
        faces.FaceDetector("cnn", -1)
    assert faces.FaceDetector("cnn", 0, "cuda").tag == "cnn-up0"


def test_cli_refuses_a_gpu_for_dlibs_embedder(tmp_path, capsys):
    Catalog(tmp_path / "data").close()
    assert main(["index", "--data", str(tmp_path / "data"), "--embedder", "dlib", "--device", "cuda"]) == 1
    assert "torch embedder" in capsys.readouterr().err

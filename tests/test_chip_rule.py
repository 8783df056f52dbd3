"""Which landmarks a chip is cut from: the 68 points in HOG boxes, the 5-point predictor's in CNN
boxes (faces.CHIP_POINTS), wherever chips are cut: the pipeline, faces embedded again from the
catalogue, search queries and LFW evaluation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import LFW
from iffse_lib import faces, images, pipeline, stages
from iffse_lib.catalog_index import build_index
from iffse_lib.catalog import Catalog
from iffse_lib.embed_torch import TorchEmbedder
from iffse_lib.evaluate.lfw_vectors import photo_vectors
from iffse_lib.search import Searcher
from iffse_lib.sources.folder import FolderSource

#: whole pipelines with both landmark rules; make test-fast leaves these out
pytestmark = pytest.mark.slow

PHOTOS = ["people/obama/facerec_obama.jpg", "people/biden/facerec_biden.jpg", "multi/facerec_obama_and_biden.jpg"]


@pytest.fixture(scope="module")
def photos(faces_dir):
    return [faces_dir / name for name in PHOTOS]


@pytest.mark.parametrize("kind,points", [("hog", 68), ("cnn", 5)])
def test_the_pipeline_cuts_chips_by_the_rule(photos, kind, points):
    assert faces.CHIP_POINTS[kind] == points
    detector = faces.FaceDetector(kind, 1 if kind == "hog" else 0)
    embedder = TorchEmbedder()
    result = stages.run_batch([(i, str(p), None) for i, p in enumerate(photos)], detector, embedder)
    assert len(result.keys) >= len(photos)
    for (photo_id, idx), vector in zip(result.keys, result.vectors):
        image = images.load_image(photos[photo_id])
        d = result.detected[photo_id][idx]
        assert d.landmarks.shape == (68, 2)  # the 68 are what the catalogue stores
        by_rule = embedder.embed(faces.face_chips(image, [faces.landmarks_for_box(image, d.box, points)]))[0]
        np.testing.assert_allclose(vector, by_rule, atol=1e-5)
        if points == 5:  # and not what the 68 points give
            from_68 = embedder.embed(faces.face_chips(image, [d.landmarks]))[0]
            assert np.linalg.norm(vector - from_68) > 0.02


def test_faces_embedded_again_and_queries_are_cut_alike(tmp_path, faces_dir):
    """CNN faces indexed, then embedded again from the catalogue's boxes for another model tag:
    the vectors those faces get equal the ones made while detecting; a photo of the catalogue as a
    query finds its own face at distance 0."""
    folder = tmp_path / "photos"
    names = [p for p in sorted((faces_dir / "people" / "obama").iterdir())][:4]
    folder.mkdir()
    for p in names:
        shutil.copy(p, folder / p.name)
    cat = Catalog(tmp_path / "data")
    pipeline.collect(cat, FolderSource(folder), progress=False)
    detector = faces.FaceDetector("cnn", 0)
    pipeline.index_photos(cat, TorchEmbedder(), detector=detector, progress=False)
    flip = TorchEmbedder(tta="flip")
    n_photos, batches = stages.pending_batches(cat, flip.model_tag, 8)
    assert n_photos == len(names) and all(stored for b in batches for _, _, stored in b)
    again = pipeline.index_photos(cat, flip, detector=detector, detect_new=False, progress=False)
    assert again["vectors"] >= len(names) and again["faces"] == 0  # nothing detected again
    items = [(pid, str(cat.root / path), None) for pid, path in cat.query("SELECT id, path FROM photos ORDER BY id")]
    fresh = stages.run_batch(items, detector, flip)
    face_id = {(r[0], r[1]): r[2] for r in cat.query("SELECT photo_id, idx, id FROM faces")}
    ids, stored = cat.vectors(flip.model_tag, [face_id[k] for k in fresh.keys])
    by_id = dict(zip(ids.tolist(), stored))
    for key, vector in zip(fresh.keys, fresh.vectors):
        np.testing.assert_allclose(by_id[face_id[key]], vector, atol=1e-5)
    build_index(cat, flip.model_tag, progress=False)
    matches = Searcher(cat, flip, detector=detector).search(folder / names[0].name, k=1)
    assert matches[0]["distance"].iloc[0] < 1e-3
    cat.close()


@pytest.mark.parametrize("kind,upsample,points", [("hog", 1, 68), ("cnn", 0, 5)])
def test_lfw_evaluation_goes_through_the_pipelines_steps(kind, upsample, points):
    """The vector evaluation gives an LFW photo is the one the pipeline gives its central face."""
    files = sorted(p.name for p in LFW.glob("A*/*_0001.jpg"))[:4]
    detector = faces.FaceDetector(kind, upsample)
    embedder = TorchEmbedder(tta="flip")
    pv = photo_vectors(files, lfw_dir=LFW, embedder=embedder, detector=detector, progress=False)
    assert pv.detector == detector.tag and pv.model_tag == "dlib-resnet-v1+flip"
    paths = [LFW / f.rsplit("_", 1)[0] / f for f in files]
    result = stages.run_batch([(i, str(p), None) for i, p in enumerate(paths)], detector, embedder)
    for i, f in enumerate(files):
        assert pv.info.loc[f, "how"] == "detected" and pv.info.loc[f, "chip_points"].shape == (points, 2)
        box = pv.info.loc[f, "box"]
        idx = [d.box for d in result.detected[i]].index(box)
        np.testing.assert_allclose(pv.vectors[f], result.vectors[result.keys.index((i, idx))], atol=1e-5)

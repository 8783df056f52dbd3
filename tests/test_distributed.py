"""The pipeline on a real Dask LocalCluster: a worker process killed mid-run loses no work.

30 photos of ../shared/data/faces/people (the smallest, to keep the CPU cost down) on two
single-threaded worker processes; the result is compared with the same photos in the
``people_catalog`` fixture, which the one-process pipeline indexed without interruption.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import numpy as np
import pytest
from PIL import Image

from iffse_lib import distributed, pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.errors import IffseError
from iffse_lib.sources.folder import FolderSource

#: real Dask LocalClusters, a worker killed mid-run; make test-fast leaves these out
pytestmark = pytest.mark.slow

MODEL = "dlib-resnet-v1"
N_PHOTOS = 30


def _smallest_photos(people_dir, n):
    files = sorted(p for p in people_dir.glob("*/*") if p.is_file())
    sized = []
    for path in files:
        with Image.open(path) as im:
            sized.append((im.width * im.height, str(path.relative_to(people_dir)), path))
    return [p for _, _, p in sorted(sized)[:n]]


def _by_sha(cat: Catalog):
    """sha256 -> (detection error, [(box, landmarks, vector)]) for every photo of a catalogue."""
    face_ids, vectors = cat.vectors(MODEL)
    vec = dict(zip(face_ids.tolist(), vectors))
    out = {}
    for sha, photo_id, n_faces, error in cat.query(
            "SELECT p.sha256, p.id, d.n_faces, d.error FROM photos p LEFT JOIN detections d ON d.photo_id=p.id"):
        faces = [(f.box.as_tuple(), f.landmarks, vec.get(f.face_id)) for f in cat.faces_of_photo(photo_id)]
        out[sha] = (n_faces, error, faces)
    return out


def test_killed_worker_loses_no_work(people_catalog, faces_dir, tmp_path):
    photos = _smallest_photos(faces_dir / "people", N_PHOTOS)
    for path in photos:  # keep the identity folders
        (tmp_path / "people" / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / "people" / path.parent.name / path.name)
    cat = Catalog(tmp_path / "data")
    pipeline.collect(cat, FolderSource(tmp_path / "people", identity_from_folder=True), progress=False)
    assert cat.counts()["photos"] == N_PHOTOS

    killed = []

    with distributed.dask_client(n_workers=2, dashboard_address=None, progress=False) as client:
        pids_before = set(distributed.worker_pids(client).values())
        assert len(pids_before) == 2 and os.getpid() not in pids_before

        def kill_a_busy_worker(batch, counts):
            if killed:
                return
            busy = [w for w, keys in client.processing().items() if keys]
            assert busy, "after the first commit other batches should still be running"
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append((batch, pid))

        counts = pipeline.index_photos(cat, runner=distributed.DaskRunner(client), batch_size=3, progress=False,
                                       on_commit=kill_a_busy_worker)
        assert killed and killed[0][0] == 0
        deadline = time.time() + 30  # the nanny starts a new worker process in place of the killed one
        while killed[0][1] in set(distributed.worker_pids(client).values()) and time.time() < deadline:
            time.sleep(0.5)
        assert killed[0][1] not in set(distributed.worker_pids(client).values())

        # every photo went through once, in order, with nothing lost or doubled
        assert counts["photos"] == N_PHOTOS and counts["workers"] == 2
        assert os.getpid() not in counts["processes"] and counts["threads"] == [1]
        assert cat.counts()["photos_detected"] == N_PHOTOS
        assert cat.scalar("SELECT COUNT(*) FROM vectors") == cat.scalar("SELECT COUNT(*) FROM faces") == counts["vectors"]
        assert cat.vector_file(MODEL).rows == counts["vectors"]

        # resume: faces detected before but missing a vector are embedded from their stored landmarks
        dropped = [r[0] for r in cat.query("SELECT face_id FROM vectors ORDER BY face_id LIMIT 2")]
        with cat.transaction() as db:
            db.executemany("DELETE FROM vectors WHERE face_id=?", [(f,) for f in dropped])
        again = pipeline.index_photos(cat, runner=distributed.DaskRunner(client), batch_size=3, progress=False)
        assert again["vectors"] == 2 and again.get("faces", 0) == 0 and again["photos"] <= 2

    # the same photos, faces, boxes, landmarks and vectors as the uninterrupted one-process run
    got, want = _by_sha(cat), _by_sha(people_catalog)
    assert set(got) <= set(want)
    n_faces = 0
    for sha, (n, error, faces) in got.items():
        w_n, w_error, w_faces = want[sha]
        assert (n, error) == (w_n, w_error)
        assert len(faces) == len(w_faces)
        for (box, lm, vec), (w_box, w_lm, w_vec) in zip(faces, w_faces):
            assert box == w_box
            np.testing.assert_allclose(lm, w_lm, atol=1e-4)
            np.testing.assert_allclose(vec, w_vec, atol=1e-5)
            n_faces += 1
    assert n_faces >= N_PHOTOS - 3
    cat.close()


def test_workers_option_conflicts_with_a_scheduler():
    with pytest.raises(IffseError, match="--scheduler"):
        with distributed.dask_client("tcp://127.0.0.1:9", n_workers=2):
            pass

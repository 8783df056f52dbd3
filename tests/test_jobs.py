"""`iffse index` on every core: worker processes give the catalogue one process gives, use one
torch thread each, follow the CPU affinity mask, and die with a killed parent."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from iffse_lib import faces, runners, stages
from iffse_lib.catalog import Catalog
from iffse_lib.embedders import get_embedder

from conftest import ROOT, iffse
from test_catalog import (N_PHOTOS, _assert_same_catalogue, _count, _iffse, _snapshot,  # noqa: F401 (a fixture)
                          lfw_subset)

#: real worker pools, kill -9 of a multi-process index; make test-fast leaves these out
pytestmark = pytest.mark.slow

MODEL = "dlib-resnet-v1"
#: the fixture photos with the most faces per photo (groups, pairs), the tilted ones and those without a face
FOLDERS = ("multi", "tilted", "noface")


def _faces_by_sha(data):
    """sha256 -> (detection row, [(box, landmarks, vector)]) for every photo of a catalogue."""
    with Catalog(data, readonly=True) as cat:
        ids, vectors = cat.vectors(MODEL)
        vec = dict(zip(ids.tolist(), vectors))
        out = {}
        for sha, photo_id, n_faces, error, detector in cat.query(
                "SELECT p.sha256, p.id, d.n_faces, d.error, d.detector FROM photos p "
                "LEFT JOIN detections d ON d.photo_id=p.id"):
            out[sha] = ((n_faces, error, detector),
                        [(f.box.as_tuple(), f.score, f.landmarks, vec.get(f.face_id)) for f in cat.faces_of_photo(photo_id)])
    return out


def _last_index_run(data) -> dict:
    with sqlite3.connect(f"file:{data / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT status, summary FROM runs WHERE command='index' ORDER BY id DESC LIMIT 1").fetchone()
    assert row[0] == "ok"
    return json.loads(row[1])


@pytest.fixture(scope="module")
def collected(faces_dir, tmp_path_factory):
    """The fixture photos of FOLDERS collected into a catalogue that is not indexed yet."""
    root = tmp_path_factory.mktemp("jobs")
    for folder in FOLDERS:
        shutil.copytree(faces_dir / folder, root / "photos" / folder, ignore=shutil.ignore_patterns("*.xml"))
    iffse("collect", "folder", root / "photos", "--quiet", data=root / "data", check=0)
    return root / "data"


def test_two_processes_give_the_catalogue_of_one(collected, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(collected, one)
    shutil.copytree(collected, two)
    iffse("index", "--jobs", "1", "--quiet", data=one, check=0)
    # Batches of 5 photos: several commits, and work units that straddle them.
    proc = subprocess.Popen([sys.executable, "-m", "iffse_lib.cli", "index", "--jobs", "2", "--batch", "5",
                             "--quiet", "--data", str(two)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err

    ran = _last_index_run(two)
    assert ran["jobs"] == 2 and len(ran["processes"]) == 2 and proc.pid not in ran["processes"]
    assert ran["threads"] == [1]  # torch on one thread in each worker
    assert _last_index_run(one)["processes"] == [_last_index_run(one)["processes"][0]]

    got, want = _faces_by_sha(two), _faces_by_sha(one)
    assert got.keys() == want.keys() and len(got) == sum(1 for p in collected.parent.glob("photos/*/*"))
    n_faces = 0
    for sha, (detection, found) in got.items():
        w_detection, w_found = want[sha]
        assert detection == w_detection
        assert len(found) == len(w_found)
        for (box, score, lm, vec), (w_box, w_score, w_lm, w_vec) in zip(found, w_found):
            assert box == w_box and score == w_score
            np.testing.assert_array_equal(lm, w_lm)
            np.testing.assert_allclose(vec, w_vec, atol=1e-5)
            n_faces += 1
    assert n_faces > 2 * len(got)  # group photos: many faces, and every one compared
    assert sum(1 for detection, found in got.values() if not found) >= len(list((collected.parent / "photos" / "noface").iterdir()))


def test_workers_can_leave_the_embedding_to_this_process(collected, tmp_path, faces_dir):
    """What happens for an embedder on a GPU (chips from every worker embedded here, a batch at a
    time), run on the CPU: the same vectors as each worker embedding its own."""
    data = tmp_path / "data"
    shutil.copytree(collected, data)
    with Catalog(data) as cat:
        _, batches = stages.pending_batches(cat, MODEL, batch_size=4, limit=8)
    detector, embedder = faces.FaceDetector("hog", 1), get_embedder("torch")
    here = list(stages.run_batches(batches, runners.InProcess(), detector, embedder))
    with runners.ProcessPool(2) as pool:
        pooled = list(stages.run_batches(batches, pool, detector, embedder, embed_here=True))
        workers = pool.pids()
    assert len(workers) == 2 and os.getpid() not in workers
    assert [items for items, _ in pooled] == batches
    for (_, a), (_, b) in zip(here, pooled):
        assert a.keys == b.keys and b.chips is None
        assert set(b.processes) <= set(workers) and b.threads == [1]
        if a.keys:
            np.testing.assert_allclose(b.vectors, a.vectors, atol=1e-5)
    assert sum(len(r.keys) for _, r in pooled) > 8


def test_the_default_uses_the_cores_the_process_may_use(small_catalog, tmp_path):
    """No option: as many processes as the affinity mask allows; one CPU allowed: one process."""
    cores = len(os.sched_getaffinity(0))
    for allowed, data in ((None, tmp_path / "all"), ({min(os.sched_getaffinity(0))}, tmp_path / "one")):
        shutil.copytree(small_catalog, data)
        iffse("index", "--redetect", "--detector", "hog", "--upsample", "0", "--quiet", data=data, check=0,
              preexec_fn=(lambda cpus=allowed: os.sched_setaffinity(0, cpus)) if allowed else None)
        ran = _last_index_run(data)
        assert ran["jobs"] == (1 if allowed else cores)
        assert len(ran["processes"]) == ran["jobs"]
    assert runners.default_jobs() == cores and runners.default_jobs(on_gpu=True) == 1


def test_jobs_must_be_a_positive_number_apart_from_dask(small_copy):
    for args in (["--jobs", "0"], ["--jobs", "-3"], ["--jobs", "two"], ["--jobs", "2", "--workers", "2"],
                 ["--jobs", "2", "--scheduler", "tcp://127.0.0.1:9"]):
        proc = iffse("index", *args, data=small_copy)
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert proc.returncode == 2 and len(errors) == 1 and "--jobs" in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert "must be 1 or more" in iffse("index", "--jobs", "0", data=small_copy).stderr


@pytest.fixture(scope="module")
def one_process(lfw_subset, tmp_path_factory):
    """The LFW photos of ``lfw_subset`` indexed in one process, without interruption."""
    data = tmp_path_factory.mktemp("one_process") / "data"
    for args in (["collect", "lfw", "--lfw-dir", str(lfw_subset)], ["index", "--batch", "4", "--jobs", "1"]):
        proc = _iffse(data, *args)
        assert proc.wait() == 0, proc.stderr.read().decode()
    return _snapshot(data)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_a_multi_process_index_leaves_no_worker_and_resumes(lfw_subset, one_process, tmp_path):
    data = tmp_path / "data"
    proc = _iffse(data, "collect", "lfw", "--lfw-dir", str(lfw_subset))
    assert proc.wait() == 0
    index = ["index", "--batch", "4", "--jobs", "2"]
    done = []
    for at in (4, 16):
        proc = _iffse(data, *index)
        workers: set[int] = set()
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                workers |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            if _count(data, "SELECT COUNT(*) FROM detections") >= at and len(workers) >= 3:
                break  # the fork server and two workers are up, and batches were committed
            time.sleep(0.02)
        assert proc.poll() is None, "the index ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done.append(_count(data, "SELECT COUNT(*) FROM detections"))
        deadline = time.time() + 30  # a bound for the check, not a speed requirement
        while time.time() < deadline and any(map(_running, workers)):
            time.sleep(0.1)
        left = [p for p in workers if _running(p)]
        assert not left, f"processes outlived the killed index: {left}"
    assert 0 < done[0] < N_PHOTOS, "the first kill came too late to interrupt anything"
    proc = _iffse(data, *index)
    assert proc.wait() == 0, proc.stderr.read().decode()
    _assert_same_catalogue(data, one_process)


def test_a_script_that_indexes_at_import_time_stops_with_an_error_instead_of_hanging(collected, tmp_path):
    """Worker processes import the main script again. One that indexes at import time (no
    `if __name__ == "__main__":`) used to open the catalogue for writing in each worker, which
    waited for the lock its parent held while the parent waited for it: a silent hang."""
    data = tmp_path / "data"
    shutil.copytree(collected, data, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    script = tmp_path / "index_at_import.py"
    script.write_text("from iffse_lib import pipeline\n"
                      "from iffse_lib.catalog import Catalog\n"
                      f"with Catalog({str(data)!r}) as cat:\n"
                      "    pipeline.index_photos(cat, jobs=2, progress=False)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "WriterInWorker" in proc.stderr and "WorkerDied" in proc.stderr, proc.stderr[-3000:]
    assert 'if __name__ == "__main__":' in proc.stderr.splitlines()[-1]
    with Catalog(data, readonly=True) as cat:  # nothing half-written: the next run starts afresh
        assert cat.integrity_problems() == []

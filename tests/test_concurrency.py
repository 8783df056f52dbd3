"""Two processes, one catalogue: writers take turns, readers never write (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from iffse_lib.catalog import Catalog

from conftest import LFW, faces_find_themselves, iffse, one_line_error

#: real concurrent iffse processes on one catalogue; make test-fast leaves these out
pytestmark = pytest.mark.slow

N = 60

READER = r"""
import json, sys, time
import numpy as np
from iffse_lib.catalog import Catalog
from iffse_lib.errors import IffseError
data, stop = sys.argv[1], sys.argv[2]
opened = checked = 0
problems = []
import os
while not os.path.exists(stop):
    try:
        with Catalog(data, readonly=True) as cat, cat.snapshot():
            opened += 1
            counts = cat.counts()
            for tag in cat.model_tags():
                ids, X = cat.vectors(tag)
                assert len(ids) == counts["vectors"][tag]
                norms = np.linalg.norm(X, axis=1)
                if len(X) and not (np.isfinite(X).all() and norms.min() > 0.5):
                    problems.append(f"bad vectors after {opened} opens")
                checked += len(ids)
    except IffseError as exc:
        problems.append(str(exc))
    time.sleep(0.003)
print(json.dumps({"opened": opened, "checked": checked, "problems": problems[:5]}))
"""


def _collected(data):
    iffse("collect", "lfw", "--lfw-dir", LFW, "--limit", N, "--quiet", data=data, check=0)


def _index(data, *extra):
    return subprocess.Popen([sys.executable, "-m", "iffse_lib.cli", "index", "--batch", "1", "--quiet", *extra,
                             "--data", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _holder_pid(data) -> int | None:
    try:
        return json.loads((data / "catalog.lock").read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def _counts(data) -> dict:
    with Catalog(data, readonly=True) as cat:
        c = cat.counts()
        return {k: c[k] for k in ("photos", "photos_detected", "faces", "vectors")}


def test_two_index_runs_at_once_take_turns_and_lose_nothing(tmp_path):
    ref, data = tmp_path / "ref", tmp_path / "data"
    _collected(ref)
    _collected(data)
    iffse("index", "--batch", "1", "--quiet", data=ref, check=0)
    first = _index(data)
    deadline = time.time() + 60
    while _holder_pid(data) != first.pid and time.time() < deadline:
        time.sleep(0.01)
    second = _index(data)
    out1, err1 = first.communicate(timeout=600)
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert f"waiting for the catalogue: another iffse index (pid {first.pid}) holds it" in err2
    assert _counts(data) == _counts(ref)
    assert _counts(data)["vectors"]["dlib-resnet-v1"] == _counts(data)["faces"] > N * 0.9
    assert faces_find_themselves(data) == _counts(ref)["faces"]
    with Catalog(data, readonly=True) as cat:  # both runs ended, both recorded as such
        assert [r[0] for r in cat.query("SELECT status FROM runs WHERE command='index'")] == ["ok", "ok"]


def test_no_wait_exits_with_one_line_while_another_writer_holds_the_catalogue(small_copy):
    with Catalog(small_copy, command="iffse collect folder"):
        proc = iffse("index", "--no-wait", data=small_copy, timeout=60)
        line = one_line_error(proc)
        assert "another iffse collect folder (pid" in line and "--no-wait" in line
        # Readers are not held up by the writer.
        assert iffse("stats", "--json", data=small_copy, check=0, timeout=60).stdout


def test_readers_opening_every_few_ms_during_an_index_see_consistent_snapshots(tmp_path):
    ref, data = tmp_path / "ref", tmp_path / "data"
    _collected(ref)
    _collected(data)
    iffse("index", "--batch", "1", "--quiet", data=ref, check=0)
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(data), str(stop)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writer = _index(data)
    _, err = writer.communicate(timeout=600)
    stop.touch()
    out, rerr = reader.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert reader.returncode == 0, rerr
    seen = json.loads(out)
    print(f"\nreaders during the index: {seen['opened']} opens, {seen['checked']} vectors read, problems: "
          f"{seen['problems']}")
    assert seen["problems"] == [] and seen["opened"] > 20 and seen["checked"] > 0, seen
    assert _counts(data) == _counts(ref)
    assert faces_find_themselves(data) == _counts(ref)["faces"]
    # A later run finds the catalogue sound and has nothing left to do.
    iffse("check", "--quiet", data=data, check=0)
    assert "indexed 0 photos" in iffse("index", data=data, check=0).stdout

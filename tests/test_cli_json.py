"""The command line's conventions: one JSON document per command with --json, log lines with
-v/-vv and none with --quiet, --version, and ``python -m iffse_lib``. Each runs the real command
in its own process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import iffse_lib

from conftest import FACES, LFW


def _iffse(*args, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "iffse_lib", *map(str, args)], capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def _document(out: subprocess.CompletedProcess) -> dict:
    """stdout is exactly one JSON document (no text summary around it)."""
    return json.loads(out.stdout)


def test_version_and_python_dash_m():
    assert _iffse("--version").stdout.strip() == f"iffse {iffse_lib.__version__}"
    help_text = _iffse("--help").stdout
    assert help_text.startswith("usage: iffse") and "--version" in help_text


@pytest.mark.slow
def test_collect_index_forget_print_json_and_log_with_v(tmp_path):
    photos = tmp_path / "photos"
    for person in ("angelina_jolie", "biden"):
        shutil.copytree(FACES / "people" / person, photos / person)
    (photos / "biden" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    n_good = len(list(photos.glob("*/*.*"))) - 1
    data = tmp_path / "data"

    out = _iffse("collect", "folder", photos, "--identity-from-folder", "--data", data, "--json", "-v")
    collected = _document(out)
    assert set(collected) == {"command", "source", "counts", "seconds", "data"}
    assert collected["source"] == "folder" and collected["data"] == str(data.resolve())
    assert collected["counts"]["stored"] == n_good and collected["counts"]["errors"] == 1
    assert collected["seconds"] >= collected["counts"]["seconds"] > 0
    assert "rejected folder biden/broken.jpg: not_image" in out.stderr  # -v: INFO
    assert f"{photos}: {n_good + 1} image files (0 other files skipped" in out.stderr
    assert "DEBUG" not in out.stderr  # DEBUG lines need -vv

    again = _iffse("collect", "folder", photos, "--data", data, "--json", "-vv")
    assert _document(again)["counts"]["skipped"] == n_good + 1
    assert "DEBUG iffse_lib.pipeline: skipped folder biden/broken.jpg: collected before" in again.stderr
    quiet = _iffse("collect", "folder", photos, "--data", data, "--json", "-vv", "-q")
    assert quiet.stderr == "" and _document(quiet)["counts"]["skipped"] == n_good + 1

    lfw = _document(_iffse("collect", "lfw", "--lfw-dir", LFW, "--limit", 4, "--data", data, "--json"))
    assert lfw["source"] == "lfw" and lfw["counts"]["stored"] == 4

    out = _iffse("-v", "index", "--embedder", "dlib", "--data", data, "--json")
    indexed = _document(out)
    assert set(indexed) == {"command", "counts", "index_faces", "model", "detector", "seconds", "data", "index_dir"}
    assert indexed["counts"]["photos"] == n_good + 4 and indexed["model"] == "dlib-resnet-v1"
    assert indexed["index_faces"] == indexed["counts"]["faces"] == indexed["counts"]["index"]["faces"] > n_good
    assert indexed["index_dir"] == str(data.resolve() / "index")
    # `-v` before the subcommand counts; the log names the model loads and the index build
    assert "loading dlib's face ResNet" in out.stderr and "loading dlib's landmark model" in out.stderr
    assert f"building the annoy index of {indexed['index_faces']} dlib-resnet-v1 faces" in out.stderr
    assert " INFO " not in _iffse("index", "--embedder", "dlib", "--data", data, "--json").stderr  # no -v

    stats = _document(_iffse("stats", "--data", data, "--json"))
    forgot = _document(_iffse("forget", "--photo", 1, "--data", data, "--json"))
    assert set(forgot) == {"command", "owner", "photo", "removed", "seconds", "data"}
    assert forgot["removed"] == 1 and forgot["photo"] == "1"
    assert _document(_iffse("stats", "--data", data, "--json"))["photos"] == stats["photos"] - 1


def test_make_pairs_prints_json(tmp_path):
    out = tmp_path / "pairs.txt"
    doc = _document(_iffse("evaluate", "make-pairs", "--lfw-dir", LFW, "--out", out, "--folds", 2, "--json"))
    assert set(doc) == {"command", "pairs", "folds", "per_fold", "out", "lfw_dir", "seconds"}
    assert doc["folds"] == 2 and doc["pairs"] == 2 * 2 * doc["per_fold"] > 0 and doc["out"] == str(out)
    assert out.read_text().splitlines()[0].split() == ["2", str(doc["per_fold"])]


@pytest.mark.slow
def test_demo_prints_json(tmp_path):
    doc = _document(_iffse("demo", "--lfw-dir", LFW, "--limit", 24, "--embedder", "dlib", "--data", tmp_path / "d",
                           "--json"))
    assert set(doc) == {"command", "collect", "index_photos", "build_index", "search", "seconds", "counts",
                        "peak_rss_mb"}
    assert doc["collect"]["stored"] == 24 and doc["counts"]["photos"] == 24
    assert doc["build_index"]["faces"] == doc["counts"]["faces"] > 20
    assert [m["rank"] for m in doc["search"]["matches"]] == [1, 2, 3, 4, 5]


def test_common_options_work_before_and_after_the_subcommand(tmp_path):
    """`iffse --data X --quiet collect folder …` and `iffse collect folder … --data X -q` mean the
    same: the subcommand's defaults do not undo options given before it."""
    before, after = tmp_path / "before", tmp_path / "after"
    people = FACES / "people" / "angelina_jolie"
    out = _iffse("--data", before, "--quiet", "collect", "folder", people)
    assert out.stdout == "" and out.stderr == ""
    _iffse("collect", "folder", people, "--data", after, "-q")
    counts = [_document(_iffse("--data", d, "--json", "stats")) for d in (before, after)]
    assert counts[0]["photos"] == counts[1]["photos"] == len(list(people.iterdir())) > 0

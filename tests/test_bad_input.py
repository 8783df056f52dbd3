"""Bounded resources and bad values: every one ends in exit 2 (usage) or one line and exit 1."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iffse_lib import errors
from iffse_lib.catalog import Catalog

from conftest import FACES, LFW, iffse, one_line_error

PHOTO = next((FACES / "people" / "obama").iterdir())


@pytest.mark.parametrize("argv", [
    ["index", "--upsample", "-1"], ["index", "--upsample", "1000000"], ["index", "--batch", "0"],
    ["index", "--n-trees", "0"], ["index", "--workers", "0"],
    ["search", str(PHOTO), "-k", "-1"], ["search", str(PHOTO), "-k", "0"],
    ["search", str(PHOTO), "-k", "1000000000"], ["search", str(PHOTO), "--threshold", "nan"],
    ["search", str(PHOTO), "--threshold", "-1"], ["search", str(FACES)],
    ["evaluate", "retrieval", "--depth", "0"], ["evaluate", "make-pairs", "--lfw-dir", str(LFW), "--out", "x",
                                                "--folds", "0"],
    ["collect", "lfw", "--limit", "0"], ["demo", "--limit", "-5"],
])
def test_bad_values_are_usage_errors(argv, small_catalog):
    proc = iffse(*argv, data=small_catalog, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if "error:" in ln]) == 1


def test_data_pointing_at_a_file_is_one_line(tmp_path):
    some_file = tmp_path / "notes.txt"
    some_file.write_text("not a catalogue")
    for argv in (["stats"], ["index"], ["collect", "folder", str(FACES / "noface")]):
        assert "is a file, not a catalogue folder" in one_line_error(iffse(*argv, data=some_file))


def test_a_device_or_a_fifo_as_the_query_is_refused_without_reading_it(small_catalog, tmp_path):
    line = one_line_error(iffse("search", "/dev/zero", data=small_catalog, timeout=60))
    assert "not a regular file" in line
    fifo = tmp_path / "query.jpg"
    os.mkfifo(fifo)
    line = one_line_error(iffse("search", fifo, data=small_catalog, timeout=60))  # would hang if it opened it to read
    assert "not a regular file" in line


@pytest.mark.slow
def test_k_is_capped_at_the_faces_indexed(small_catalog):
    out = json.loads(iffse("search", PHOTO, "-k", "100000", "--json", data=small_catalog, check=0).stdout)
    with Catalog(small_catalog, readonly=True) as cat:
        assert len(out[0]["matches"]) == cat.counts()["faces"]


def test_a_huge_file_in_a_folder_is_rejected_without_reading_it(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    with open(folder / "huge.jpg", "wb") as fh:  # 1 GB, sparse: nothing is really on the disk
        fh.truncate(1 << 30)
    (folder / "ok.jpg").write_bytes(PHOTO.read_bytes())
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "iffse_lib.cli", "collect", "folder",
                          str(folder), "--data", str(tmp_path / "data"), "--quiet"],
                         capture_output=True, text=True, timeout=120).stdout.split()
    code, peak_kb = int(out[0]), int(out[1])
    print(f"\ncollect folder with a 1 GB file: peak resident memory {peak_kb / 1024:.0f} MB")
    assert code == 0 and peak_kb < 400 * 1024  # far below the 1 GB a full read would take
    with Catalog(tmp_path / "data", readonly=True) as cat:
        assert cat.counts()["photos"] == 1 and cat.errors()["kind"].tolist() == ["too_large"]


def test_a_binary_pairs_file_is_one_line(tmp_path, small_catalog):
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes(bytes(range(256)) * 4)
    line = one_line_error(iffse("evaluate", "lfw-pairs", "--pairs", pairs, "--lfw-dir", LFW))
    assert "is not a text file" in line


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted((FACES / "people" / "angelina_jolie").iterdir()):
        (folder / src.name).write_bytes(src.read_bytes())
    data = tmp_path / "disk"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(data)], check=True)
    try:
        line = one_line_error(iffse("collect", "folder", folder, data=data))
        assert "no space left" in line and "run the same command again" in line
        with Catalog(data, readonly=True) as cat:
            assert 0 < cat.counts()["photos"] < len(list(folder.iterdir()))
        subprocess.run(["mount", "-o", "remount,size=64m", str(data)], check=True)  # space freed
        iffse("collect", "folder", folder, "--quiet", data=data, check=0)
        iffse("check", "--quiet", data=data, check=0)
        with Catalog(data, readonly=True) as cat:
            assert cat.counts()["photos"] == len(list(folder.iterdir()))
    finally:
        subprocess.run(["umount", str(data)], check=True)


@pytest.mark.slow
def test_a_catalogue_on_a_read_only_filesystem_can_be_read(small_catalog, tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(small_catalog), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], check=True)
        stats = json.loads(iffse("stats", "--json", data=mount, check=0).stdout)
        assert stats["photos"] == 8
        found = json.loads(iffse("search", PHOTO, "--json", "-k", "3", data=mount, check=0).stdout)
        assert len(found[0]["matches"]) == 3
        iffse("check", "--quiet", data=mount, check=0)
        assert "cannot be written here" in one_line_error(iffse("index", data=mount))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("cls,keywords", [
    (errors.BadImage, {"kind": "empty"}), (errors.InstagramError, {"kind": "not_found"}),
    (errors.LoginRequired, {"kind": "login_required"}), (errors.BadDownload, {"kind": "bad_url"}),
    (errors.RetryableAnswer, {"kind": "http_500"}), (errors.BadPost, {"shortcode": "Bx1"}),
])
def test_errors_take_the_message_first_and_the_rest_by_keyword(cls, keywords):
    exc = cls("x.jpg: the file is empty", **keywords)
    assert str(exc) == "x.jpg: the file is empty"
    assert all(getattr(exc, name) == value for name, value in keywords.items())
    with pytest.raises(TypeError):
        cls(*keywords.values(), "x.jpg: the file is empty")


def test_every_exception_class_is_in_errors_py():
    """errors.py holds every exception class of iffse_lib, so there is one place to look."""
    root = Path(errors.__file__).parent
    names = {"Exception", "BaseException"} | {n for n, v in vars(errors).items()
                                              if isinstance(v, type) and issubclass(v, BaseException)}
    elsewhere = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(base, "id", getattr(base, "attr", None)) in names for base in node.bases):
                elsewhere.append(f"{path.relative_to(root)}: {node.name}")
    assert not elsewhere

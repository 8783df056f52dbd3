"""Damage is found, never used: foreign, empty, garbage or truncated files; `iffse check [--repair]`."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from iffse_lib import cli
from iffse_lib.catalog import Catalog

from conftest import LFW, faces_find_themselves, iffse, one_line_error

#: catalogues indexed, damaged and mended by real iffse processes; make test-fast leaves these out
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TAG = "dlib-resnet-v1"


def _vectors(data):
    with Catalog(data, readonly=True) as cat:
        return cat.vectors(TAG)


def _two_catalogues_of_one_size(tmp_path):
    """The same six LFW photos collected in opposite orders: face ids mean other people in each."""
    files = sorted(LFW.glob("*/*.jpg"))[:40:7][:6]
    forward, backward = tmp_path / "fwd", tmp_path / "bwd"
    for i, f in enumerate(files):
        for folder, n in ((forward, i), (backward, len(files) - 1 - i)):
            folder.mkdir(exist_ok=True)
            shutil.copy(f, folder / f"{n}_{f.name}")
    a, b = tmp_path / "a", tmp_path / "b"
    for data, folder in ((a, forward), (b, backward)):
        iffse("collect", "folder", folder, "--quiet", data=data, check=0)
        iffse("index", "--quiet", data=data, check=0)
    return a, b, forward


def test_an_index_copied_from_another_catalogue_is_refused(tmp_path):
    a, b, photos = _two_catalogues_of_one_size(tmp_path)
    query = sorted(photos.iterdir())[0]
    good = json.loads(iffse("search", query, "--json", "-k", "1", data=a, check=0).stdout)
    assert good[0]["matches"][0]["distance"] < 1e-3
    shutil.rmtree(a / "index")
    shutil.copytree(b / "index", a / "index")
    line = one_line_error(iffse("search", query, "--json", data=a))
    assert "another catalogue" in line and "`iffse index --rebuild`" in line
    check = iffse("check", "--quiet", data=a)
    assert check.returncode == 1 and re.search(r"DAMAGED\s+index", check.stdout), check.stdout
    iffse("index", "--rebuild", "--quiet", data=a, check=0)
    again = json.loads(iffse("search", query, "--json", "-k", "1", data=a, check=0).stdout)
    assert again[0]["matches"][0]["face_id"] == good[0]["matches"][0]["face_id"]
    assert again[0]["matches"][0]["distance"] < 1e-3


def test_an_empty_database_beside_photos_and_vectors_is_no_fresh_start(small_copy):
    npy = small_copy / "vectors" / f"{TAG}.npy"
    size = npy.stat().st_size
    (small_copy / "catalog.sqlite").write_bytes(b"")
    for command in (["index"], ["collect", "lfw", "--lfw-dir", LFW, "--limit", "2"], ["stats"]):
        line = one_line_error(iffse(*command, data=small_copy))
        assert "holds photos or vectors but its catalog.sqlite is empty" in line
    assert npy.stat().st_size == size


def test_a_wal_file_from_another_catalogue_is_refused(small_copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(small_copy, other)
    (other / "catalog.id").unlink()
    (other / "catalog.sqlite").unlink()
    shutil.rmtree(other / "vectors")
    shutil.rmtree(other / "raw")
    shutil.rmtree(other / "index")
    iffse("collect", "lfw", "--lfw-dir", LFW, "--limit", 3, "--quiet", data=other, check=0)
    with Catalog(other) as cat:  # a writer that has committed but not checkpointed yet
        cat.set_meta("note", "written in another catalogue")
        wal = (other / "catalog.sqlite-wal").read_bytes()
    assert len(wal) > 0 and not (small_copy / "catalog.sqlite-wal").exists()
    counts = iffse("stats", "--json", data=small_copy, check=0).stdout
    (small_copy / "catalog.sqlite-wal").write_bytes(wal)
    for command in (["stats"], ["index"], ["collect", "lfw", "--lfw-dir", LFW, "--limit", "2"]):
        line = one_line_error(iffse(*command, data=small_copy))
        assert re.search(r"belongs to another catalogue|catalog.sqlite is damaged", line), line
    # Nothing was applied: without the foreign file the catalogue is as it was.
    (small_copy / "catalog.sqlite-wal").unlink()
    (small_copy / "catalog.sqlite-shm").unlink(missing_ok=True)
    assert iffse("stats", "--json", data=small_copy, check=0).stdout == counts
    iffse("check", "--quiet", data=small_copy, check=0)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_garbage_or_truncated_database_is_one_line(small_copy, damage):
    db = small_copy / "catalog.sqlite"
    data = db.read_bytes()
    db.write_bytes(b"this is not a database, " * 200 if damage == "garbage" else data[:len(data) // 3])
    for command in (["stats"], ["index"], ["search", next(LFW.glob("*/*.jpg"))]):
        line = one_line_error(iffse(*command, data=small_copy))
        assert "catalog.sqlite" in line
    assert iffse("check", data=small_copy).returncode == 1


def test_nan_vectors_are_found_and_computed_again(small_copy):
    before_ids, before = _vectors(small_copy)
    npy = small_copy / "vectors" / f"{TAG}.npy"
    with open(npy, "r+b") as fh:
        fh.seek(128 + 512)  # the second vector
        fh.write(np.full(128, np.nan, "<f4").tobytes())
    line = one_line_error(iffse("index", "--rebuild", data=small_copy))
    assert "damaged" in line and "`iffse check --repair`" in line
    check = iffse("check", data=small_copy)
    assert check.returncode == 1 and "1 vectors in vectors/dlib-resnet-v1.npy are not finite" in check.stdout
    repaired = iffse("check", "--repair", "--quiet", data=small_copy, check=0)
    assert "REPAIRED" in repaired.stdout
    ids, after = _vectors(small_copy)
    assert (ids == before_ids).all() and np.abs(after - before).max() < 1e-5
    iffse("check", data=small_copy, check=0)
    found = iffse("search", next(LFW.glob("*/*.jpg")), "--json", data=small_copy, check=0).stdout
    assert "NaN" not in found and json.loads(found)[0]["matches"]
    assert faces_find_themselves(small_copy) == len(ids)


def test_a_truncated_vector_file_names_a_command_that_mends_it(small_copy):
    before_ids, before = _vectors(small_copy)
    npy = small_copy / "vectors" / f"{TAG}.npy"
    with open(npy, "r+b") as fh:
        fh.truncate(npy.stat().st_size - 2 * 512)
    for command in (["index"], ["stats"]):
        proc = iffse(*command, data=small_copy)
        if command == ["stats"]:  # counting needs no vectors
            assert proc.returncode == 0
            continue
        line = one_line_error(proc)
        assert "truncated" in line and "`iffse check --repair`" in line
        _assert_command_exists(re.search(r"`(iffse [^`]*)`", line).group(1))
    iffse("check", "--repair", "--quiet", data=small_copy, check=0)
    ids, after = _vectors(small_copy)
    assert (ids == before_ids).all() and np.abs(after - before).max() < 1e-5
    assert faces_find_themselves(small_copy) == len(ids)


def test_check_on_a_sound_catalogue_writes_nothing(small_copy):
    stamps = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in small_copy.rglob("*") if p.is_file()}
    out = iffse("check", "--json", "--quiet", data=small_copy, check=0).stdout
    report = json.loads(out)
    assert report["sound"] and {f["part"] for f in report["findings"]} == {"database", "photos", "vectors", "index"}
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in small_copy.rglob("*") if p.is_file()}
    assert {p: after[p] for p in stamps} == stamps
    # SQLite's own coordination files may appear (a read-only connection in WAL mode), empty of data.
    assert {p.name for p in set(after) - set(stamps)} <= {"catalog.sqlite-shm", "catalog.sqlite-wal"}
    assert after.get(small_copy / "catalog.sqlite-wal", (0,))[0] == 0


def test_check_finds_a_damaged_raw_photo_and_an_orphan_file(small_copy):
    raw = sorted((small_copy / "raw").rglob("*.jpg"))
    raw[0].write_bytes(raw[0].read_bytes()[:-100])
    (small_copy / "raw" / "zz").mkdir()
    (small_copy / "raw" / "zz" / "stray.jpg").write_bytes(b"x")
    out = iffse("check", "--quiet", data=small_copy)
    assert out.returncode == 1
    assert "1 of 8 raw photos are missing or do not match their sha256" in out.stdout
    assert "`iffse forget --data" in out.stdout and "1 files in raw/ belong to no photo" in out.stdout
    iffse("check", "--repair", "--quiet", data=small_copy)
    assert not (small_copy / "raw" / "zz" / "stray.jpg").exists()


def _assert_command_exists(text: str) -> None:
    # Placeholders: {an f-string field}, N (a number) and PHOTO (a file) stand for what the user gives.
    values = {"N": "2", "PHOTO": __file__}
    argv = [values.get(a, a) for a in shlex.split(re.sub(r"\{[^}]*\}", "2", text))[1:]]
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`{text}`, named in an error message, is not a command iffse has") from exc


def test_every_command_named_in_a_message_exists():
    named = set()
    for path in (ROOT / "iffse_lib").rglob("*.py"):
        named |= set(re.findall(r"(?<!`)`(iffse [^`]*)`(?!`)", path.read_text()))  # not ``literals``
    named = {t for t in named if "|" not in t}  # a shell pipeline in a comment, not a message
    assert len(named) > 10
    for text in sorted(named):
        _assert_command_exists(text)
    makefile = (ROOT / "Makefile").read_text()
    for path in (ROOT / "iffse_lib").rglob("*.py"):
        for target in re.findall(r"`make ([a-z-]+)`", path.read_text()):
            assert re.search(rf"^{target}:", makefile, re.M), f"`make {target}` in {path.name} is no Makefile target"

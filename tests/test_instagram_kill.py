"""kill -9 a real `iffse collect instagram` process at several points, then run it again."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iffse_lib.catalog import Catalog
from iffse_lib.testing.fake_instagram import FakeInstagram

#: kill -9 of a real crawl at random moments; make test-fast leaves these out
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _command(server, data: Path, cookies: Path) -> list[str]:
    return [sys.executable, "-m", "iffse_lib.cli", "collect", "instagram", "--data", str(data), "--tag", "selfie",
            "--api", "web", "--cookies", str(cookies), "--base-url", server.url, "--image-host", server.url,
            "--jitter", "0", "--workers", "4", "--quiet"]


def _run_and_kill(command: list[str], until) -> bool:
    """Start the crawl and SIGKILL it once ``until()`` holds; False if it finished first."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if until():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            return True
        time.sleep(0.002)
    proc.wait(timeout=60)
    return False


def test_kill_9_at_any_moment_loses_nothing_and_stores_nothing_twice(tmp_path, faces_dir):
    images = sorted((faces_dir / "people").rglob("*.jpg"), key=lambda p: p.stat().st_size)[:4]
    with FakeInstagram(120, page_size=12, images=images, image_delay=0.01) as server:
        data = tmp_path / "data"
        command = _command(server, data, server.cookies_file(tmp_path))
        expected = server.expected_images("web")
        kills = 0
        # Mid-download at several depths, and right after a page request (before its images).
        points = [lambda: len(server.log("image")) >= 3,
                  lambda: len(server.log("web")) >= 4,
                  lambda: len(server.log("image")) >= 45,
                  lambda: len(server.log("image")) >= 100]
        for until in points:
            kills += _run_and_kill(command, until)
            with Catalog(data) as cat:
                n = cat.scalar("SELECT COUNT(*) FROM photos")
                assert n < len(expected)
        assert kills == len(points)
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

        with Catalog(data) as cat:
            rows = cat.query("SELECT source_id, sha256, path FROM photos")
            source_ids = [r["source_id"] for r in rows]
            assert sorted(source_ids) == sorted(expected)  # every image, none twice
            assert len({r["sha256"] for r in rows}) == len(rows)
            for r in rows:
                assert not r["path"].endswith(".tmp")
                assert hashlib.sha256((data / r["path"]).read_bytes()).hexdigest() == r["sha256"]
            photo_files = {p.relative_to(data).as_posix() for p in (data / "raw").rglob("*")
                           if p.is_file() and not p.name.endswith(".tmp")}
            assert photo_files == {r["path"] for r in rows}  # no partial or orphan file among the photos
            state = cat.get_state("instagram", "web:selfie")
            assert state["done"] and state["posts"] == 120
        # Each kill costs at most the images in flight (4 workers) plus one page: no re-download of stored ones.
        image_requests = [r.path for r in server.log("image")]
        assert len(image_requests) - len(expected) <= kills * 12

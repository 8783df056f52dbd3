"""The real `iffse collect instagram` command, run as a process against the imitation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iffse_lib.catalog import Catalog
from iffse_lib.testing.fake_instagram import FAKE_COOKIES, FakeInstagram, Fault

ROOT = Path(__file__).resolve().parents[1]


def iffse(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "iffse_lib.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


BAD_VALUES = [
    ("--max-posts", "-1", "must be 0 or more"),
    ("--workers", "0", "must be 1 or more"),
    ("--timeout", "0", "must be more than 0"),
    ("--timeout", "nan", "finite"),
    ("--page-size", "0", "must be 1 or more"),
    ("--rate", "image=0/60", "N must be 1 or more"),
    ("--rate", "image:5", "ENDPOINT=N/SECONDS"),
    ("--tag", "#", "not a hashtag"),
    ("--base-url", "notaurl", "not an http(s) URL"),
    ("--jitter", "-1", "must be 0 or more"),
    ("--since", "last week", "not a date"),
    ("--image-host", "file:///etc", "not a host"),
]


@pytest.mark.parametrize("option,value,message", BAD_VALUES, ids=[f"{o}={v}" for o, v, _ in BAD_VALUES])
def test_bad_option_values_exit_2_with_one_line(tmp_path, option, value, message):
    args = ["collect", "instagram", "--data", tmp_path / "data", "--tag", "selfie", option, value]
    if option == "--tag":
        args = ["collect", "instagram", "--data", tmp_path / "data", option, value]
    done = iffse(*args)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {option}" in errors[0] and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


def test_restart_and_update_exclude_each_other(tmp_path):
    done = iffse("collect", "instagram", "--data", tmp_path / "data", "--tag", "selfie", "--restart", "--update")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


def _command(server, data: Path, cookies: Path, *more) -> list:
    return ["collect", "instagram", "--data", data, "--tag", "selfie", "--base-url", server.url,
            "--cookies", cookies, "--jitter", "0", "--workers", "4", "--quiet", *more]


@pytest.mark.slow
def test_forty_posts_over_four_pages_with_a_429_a_repeated_page_and_an_expired_url(tmp_path, face_images_cli):
    faults = [Fault("429", endpoint="sections", count=1, after=1, retry_after=1),
              Fault("repeat", endpoint="sections", count=1, after=2)]
    with FakeInstagram(40, page_size=10, images=face_images_cli, faults=faults,
                       expired_urls={"FkPost00017"}) as server:
        data = tmp_path / "data"
        cookies = server.cookies_file(tmp_path)
        done = iffse(*_command(server, data, cookies))
        assert done.returncode == 0, done.stderr
        assert all(f.count == 0 for f in faults)
        expected = server.expected_images("web")
        with Catalog(data) as cat:
            rows = cat.query("SELECT source_id FROM photos")
            assert sorted(r[0] for r in rows) == sorted(expected)
            posts = {sid.split("/")[0] for sid in expected}
            assert len(posts) == 40
            state = cat.get_state("instagram", "web:selfie")
            assert state["done"] and state["posts"] == 40 and state["pages"] == 4
        web = server.log("web")
        # Pages 2-4 by POST: page 3 answered 429, then page 2 again (repeated), then page 3.
        assert [(r.status, r.fault) for r in web if r.method == "POST"] == [
            (200, None), (429, "429"), (200, "repeat"), (200, None), (200, None)]
        assert sum("/media/" in r.path for r in web) == 1  # the expired URL, refreshed once

        # --update asks for one page: every post on it is already in the catalogue.
        before = len(server.log())
        done = iffse(*_command(server, data, cookies), "--update")
        assert done.returncode == 0, done.stderr
        assert [(r.method, r.path) for r in server.log()[before:]] == [("GET", "/api/v1/tags/web_info/")]

        # No cookie value, exported or renewed by the server, is in any file or output.
        secrets = list(FAKE_COOKIES.values()) + server.issued_cookies
        assert server.issued_cookies
        blobs = [p.read_bytes() for p in data.rglob("*") if p.is_file()] + [done.stdout.encode(), done.stderr.encode()]
        for secret in secrets:
            assert not any(secret.encode() in blob for blob in blobs)


def test_a_locked_session_stops_within_seconds_with_a_login_message(tmp_path, face_images_cli):
    with FakeInstagram(40, page_size=10, images=face_images_cli,
                       faults=[Fault("locked", endpoint="sections", count=None)]) as server:
        t0 = time.monotonic()
        done = iffse(*_command(server, tmp_path / "data", server.cookies_file(tmp_path)))
        seconds = time.monotonic() - t0
    assert done.returncode == 1
    assert seconds < 10, seconds  # interpreter start-up included; no 5 x 300 s of waiting
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "export the cookies again" in lines[0] and "--cookies" in lines[0]
    assert not any(v in done.stderr + done.stdout for v in FAKE_COOKIES.values())


def test_a_cookie_value_with_a_line_break_is_refused_in_one_line(tmp_path):
    cookies = tmp_path / "cookies.json"
    cookies.write_text(json.dumps({"sessionid": "abc\r\nX-Injected: 1", "csrftoken": "tok"}))
    with FakeInstagram(5) as server:
        done = iffse(*_command(server, tmp_path / "data", cookies))
        assert server.log() == []
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "line break" in lines[0] and "X-Injected" not in done.stderr


@pytest.fixture(scope="module")
def face_images_cli(faces_dir) -> list[Path]:
    return sorted((faces_dir / "people").rglob("*.jpg"), key=lambda p: p.stat().st_size)[:4]

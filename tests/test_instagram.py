"""The Instagram collector against the recorded response shapes and the local imitation.

Every crawl here talks HTTP to :class:`FakeInstagram` on 127.0.0.1; image bodies are real photos
from ../shared/data/faces. Rate windows are small and jitter is off, so nothing waits long.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from iffse_lib.catalog import Catalog
from iffse_lib.sources import instagram
from iffse_lib.testing.fake_instagram import FAKE_COOKIES, FakeInstagram, Fault, serve
from iffse_lib.sources.instagram import (CheckpointRequired, InstagramError, LoginRequired, QueryIdNotFound,
                                         RateLimited, SessionCookies, collect_hashtag)
from iffse_lib.sources.ratelimit import RateLimiter



@pytest.fixture(scope="module")
def fixtures(faces_dir) -> Path:
    return faces_dir.parents[1] / "instagram"
FAST = {"backoff": 0.01, "backoff_max": 0.05, "soft_block_wait": 0.05, "timeout": 0.5}


def fast_limiter(windows=None):
    return RateLimiter(windows or {}, jitter={})


@pytest.fixture(scope="module")
def face_images(faces_dir) -> list[Path]:
    people = sorted((faces_dir / "people").rglob("*.jpg"), key=lambda p: p.stat().st_size)
    return people[:5]


def crawl(cat, server, api, tmp_path, **kwargs):
    options = {**FAST, "limiter": fast_limiter(), "progress": False, "workers": 4, **kwargs}
    cookies = options.pop("cookies", server.cookies_file(tmp_path) if api == "web" else None)
    return collect_hashtag(cat, server.tag, api=api, base_url=server.url, cookies=cookies, **options)


def stored(cat) -> dict[str, dict]:
    return {r["source_id"]: json.loads(r["meta"]) for r in cat.query("SELECT source_id, meta FROM photos")}


def assert_consistent(cat):
    """Every photo row has its file with its hash; every photo file has its row."""
    rows = cat.query("SELECT sha256, path FROM photos")
    for r in rows:
        assert hashlib.sha256((cat.root / r["path"]).read_bytes()).hexdigest() == r["sha256"]
    files = {p.relative_to(cat.root).as_posix() for p in (cat.root / "raw").rglob("*")
             if p.is_file() and not p.name.startswith(".")}
    assert files == {r["path"] for r in rows}


# -- parsing the recorded shapes ------------------------------------------------------------
def test_parses_both_2017_tag_page_shapes(fixtures):
    early = instagram.parse_tag_page(instagram.parse_shared_data((fixtures / "legacy_tag_page_2017_tagmedia.html").read_text()))
    posts, page_info = early
    assert [p.shortcode for p in posts] == ["BVfakeAA001", "BVfakeAA002", "BVfakeAA003"]
    assert posts[0].caption == "monday #selfie" and posts[2].caption is None
    assert posts[0].owner_id == "5113000001" and posts[0].taken_at == 1497400000
    assert posts[0].image_urls == ("https://scontent.cdninstagram.test/t51.2885-15/e35/BVfakeAA001_n.jpg",)
    assert page_info == {"has_previous_page": False, "start_cursor": "1540000000000000001",
                         "end_cursor": "J0HWUYSzgAAAF0HWUYSjwAAAFkIA", "has_next_page": True, "shape": "2017"}

    late, page_info = instagram.parse_tag_page(instagram.parse_shared_data((fixtures / "legacy_tag_page.html").read_text()))
    assert late[0].shortcode == "BcFAKEsc001" and late[0].caption == "Sunday light #selfie #me"
    assert late[0].taken_at == 1512363508 and late[0].media_id == "1662148035802379001"
    assert page_info["end_cursor"] == "J0HWiTV9AAAAF0HWiTV9AAAAFgIA"
    assert instagram.find_query_id((fixtures / "legacy_en_US_Commons.js").read_text()) == "17875800862117404"
    assert instagram.find_query_id("var x=1;") is None


def test_parses_graphql_and_web_pages(fixtures):
    page = json.loads((fixtures / "legacy_graphql_page.json").read_text())
    nodes = page["data"]["hashtag"]["edge_hashtag_to_media"]["edges"]
    posts = [instagram.post_from_node(e["node"]) for e in nodes]
    assert posts[0].shortcode == "BcFAKEsc005" and posts[0].caption == "#selfie with friends"

    web = json.loads((fixtures / "current_web_info.json").read_text())
    recent = instagram.posts_from_feed(web["data"]["recent"])
    by_code = {p.shortcode: p for p in recent}
    assert list(by_code) == ["C8FAKEcd001", "C8FAKEcd002", "C8FAKEcd003", "C8FAKEcd004", "C8FAKEcd005", "C8FAKEcd006"]
    assert by_code["C8FAKEcd001"].username == "fake_user_01" and by_code["C8FAKEcd001"].owner_id == "51230001"
    assert by_code["C8FAKEcd003"].caption is None  # caption: null
    carousel = web["data"]["recent"]["sections"][1]["layout_content"]["medias"][0]["media"]
    assert by_code["C8FAKEcd004"].media_type == "carousel"
    assert len(by_code["C8FAKEcd004"].image_urls) == len(carousel["carousel_media"]) > 1
    assert by_code["C8FAKEcd005"].media_type == "video"
    assert by_code["C8FAKEcd005"].image_urls[0].startswith("https://scontent.cdninstagram.test/v/t51.2885-15/C8FAKEcd005_1080x1350")
    more = instagram.posts_from_feed(json.loads((fixtures / "current_sections_page.json").read_text())["data"]["recent"])
    assert more[0].shortcode == "C8FAKEcd007"


def test_cookies_files_are_read_and_never_shown(tmp_path):
    with FakeInstagram(1) as server:
        for fmt in ("netscape", "json"):
            cookies = SessionCookies.from_file(server.cookies_file(tmp_path / fmt, fmt))
            assert cookies.get("sessionid") == FAKE_COOKIES["sessionid"]
            for value in FAKE_COOKIES.values():
                assert value not in repr(cookies) and value not in str(cookies)
    bad = tmp_path / "bad.txt"
    bad.write_text(f".instagram.com\tTRUE\t/\tTRUE\t{FAKE_COOKIES['sessionid']}\n")
    with pytest.raises(instagram.SourceError) as err:
        SessionCookies.from_file(bad)
    assert FAKE_COOKIES["sessionid"] not in str(err.value)
    (tmp_path / "nosession.json").write_text(json.dumps({"csrftoken": "abc"}))
    with pytest.raises(LoginRequired, match="sessionid"):
        SessionCookies.from_file(tmp_path / "nosession.json")


# -- full crawls ----------------------------------------------------------------------------
@pytest.mark.parametrize("api,shape", [("web", "graphql"), ("legacy", "graphql"), ("legacy", "2017")])
def test_full_crawl_stores_every_image_once_with_its_metadata(tmp_path, face_images, api, shape):
    with FakeInstagram(150, page_size=12, legacy_shape=shape, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, api, tmp_path)
        expected = server.expected_images(api)
        got = stored(cat)
        assert set(got) == set(expected) and out["stored"] == len(expected) and out["errors"] == {}
        if api == "web":
            assert len(expected) > 150  # carousels give all their images
            assert {m["media_type"] for m in got.values()} == {"image", "video", "carousel"}
        for sid, meta in got.items():
            post, n = expected[sid]
            assert meta["shortcode"] == post.shortcode and meta["image_number"] == n
            assert meta["media_id"] == post.media_id and meta["owner_id"] == post.owner_id
            assert meta["username"] == (post.username if api == "web" else None)
            assert meta["caption"] == post.caption and meta["hashtag"] == "selfie"
            assert meta["taken_at"].startswith("2024-06") and meta["fetched_at"]
            assert meta["image_url"].startswith(server.url + "/v/") and post.image_keys[n] in meta["image_url"]
        # Stored bytes are exactly what the server sent for that image.
        for r in cat.query("SELECT source_id, path FROM photos"):
            post, n = expected[r["source_id"]]
            assert (cat.root / r["path"]).read_bytes() == server.image_bytes(post.image_keys[n])
        assert_consistent(cat)
        if api == "web":
            assert all(r.app_id == instagram.WEB_APP_ID and r.has_session for r in server.log("web"))
        assert all(not r.has_session for r in server.log("image"))  # cookies go to the API only
        assert all(r.user_agent == instagram.DEFAULT_USER_AGENT for r in server.log())
        state = cat.get_state("instagram", f"{api}:selfie")
        # web: 12 a page as the server chooses; legacy: the tag page's 12, then IFFSE's first=6.
        assert state["done"] and state["posts"] == 150 and state["pages"] == (13 if api == "web" else 1 + 138 // 6)
        if api == "legacy":
            assert {r.query.get("first") or json.loads(r.query["variables"])["first"]
                    for r in server.log("graphql")} == {"6" if shape == "2017" else 6}

        # The same call again fetches nothing: the crawl is complete.
        n_requests = len(server.log())
        again = crawl(cat, server, api, tmp_path)
        assert again["stored"] == 0 and len(server.log()) == n_requests
        # --restart walks the feed again but downloads no image it already has.
        again = crawl(cat, server, api, tmp_path, restart=True)
        assert again["stored"] == 0 and again["known"] == len(expected)
        assert len(server.log("image")) == len(expected)


def test_max_posts_counts_over_resumed_runs(tmp_path, face_images):
    with FakeInstagram(60, page_size=12, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        first = crawl(cat, server, "web", tmp_path, max_posts=30)
        assert first["posts"] == 30
        assert set(stored(cat)) == set(server.expected_images("web", 30))
        assert crawl(cat, server, "web", tmp_path, max_posts=30)["stored"] == 0
        crawl(cat, server, "web", tmp_path, max_posts=50)
        assert set(stored(cat)) == set(server.expected_images("web", 50))


# -- faults ---------------------------------------------------------------------------------
SURVIVED = [
    ("web", Fault("500", count=2, after=1)),
    ("legacy", Fault("500", endpoint="graphql", count=2)),
    ("web", Fault("500", endpoint="image", count=3, after=5)),
    ("web", Fault("slow", count=1, after=1, delay=1.0)),
    ("legacy", Fault("slow", endpoint="image", count=2, after=3, delay=1.0)),
    ("web", Fault("truncate", endpoint="image", count=3, after=2)),
    ("web", Fault("html", count=1, after=1)),
    ("legacy", Fault("html", endpoint="page", count=1)),
    ("legacy", Fault("html", endpoint="graphql", count=1, after=1)),
    ("web", Fault("please_wait", count=1, after=1)),
    ("legacy", Fault("status_fail", endpoint="graphql", count=2)),
    ("web", Fault("429", count=1, after=1, retry_after=None)),
]


@pytest.mark.parametrize("api,fault", SURVIVED, ids=[f"{a}-{f.kind}-{f.endpoint}" for a, f in SURVIVED])
def test_transient_faults_are_retried_and_the_crawl_completes(tmp_path, face_images, api, fault, monkeypatch):
    # A 429 without Retry-After waits for the rate window (+6 s in instaloader); keep the test short.
    monkeypatch.setattr(RateLimiter, "until_window_frees", lambda self, endpoint: -6.0)
    with FakeInstagram(30, page_size=6, images=face_images, faults=[fault]) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, api, tmp_path)
        assert fault.count == 0, "the fault never fired"
        assert set(stored(cat)) == set(server.expected_images(api)), out
        assert sum(out["retries"].values()) >= 1 and out["errors"] == {}
        assert_consistent(cat)


def test_retry_after_is_respected(tmp_path, face_images):
    fault = Fault("429", endpoint="web", count=1, after=1, retry_after=1)
    with FakeInstagram(24, page_size=6, images=face_images, faults=[fault]) as server, Catalog(tmp_path / "data") as cat:
        crawl(cat, server, "web", tmp_path)
        log = server.log("web")
        i = next(i for i, r in enumerate(log) if r.status == 429)
        assert log[i + 1].t - log[i].t >= 1.0
        assert log[i + 1].query == log[i].query  # the same page, asked again
        assert set(stored(cat)) == set(server.expected_images("web"))


def test_configured_rates_are_never_exceeded(tmp_path, face_images):
    windows = {"web": [(3, 1.0)], "image": [(8, 0.5)]}
    with FakeInstagram(48, page_size=6, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        crawl(cat, server, "web", tmp_path, limiter=fast_limiter(windows), workers=8)
        assert set(stored(cat)) == set(server.expected_images("web"))
        for endpoint, [(n, seconds)] in windows.items():
            times = [r.t for r in server.log(endpoint)]
            assert len(times) > 2 * n
            # Any n + 1 consecutive requests span at least the window, less the time a request
            # may take between the limiter and the server (generous: the tests share the CPUs).
            spans = [b - a for a, b in zip(times, times[n:])]
            assert min(spans) >= seconds - 0.1, (endpoint, min(spans))


@pytest.mark.parametrize("api,fault,error,match", [
    ("web", Fault("login_redirect", after=1), LoginRequired, "--cookies"),
    ("legacy", Fault("login_redirect", endpoint="page"), LoginRequired, "--cookies"),
    ("web", Fault("login_required"), LoginRequired, "cookies"),
    ("web", Fault("checkpoint", after=2), CheckpointRequired, "checkpoint_required"),
    ("legacy", Fault("missing_query_id", endpoint="page", after=1), QueryIdNotFound, "--query-id"),
    ("web", Fault("500", count=None, after=1), InstagramError, "HTTP 500"),
    ("web", Fault("429", count=None, after=1, retry_after=0.05), RateLimited, "429"),
    ("web", Fault("429", count=1, after=1, retry_after=7200), RateLimited, "Retry-After"),
])
def test_fatal_answers_stop_with_an_error_that_says_what_to_do(tmp_path, face_images, api, fault, error, match):
    with FakeInstagram(30, page_size=6, images=face_images, faults=[fault]) as server, Catalog(tmp_path / "data") as cat:
        with pytest.raises(error, match=match):
            crawl(cat, server, api, tmp_path, max_retries=2)
        # The pages stored before the error are kept, and the next run goes on from there.
        state = cat.get_state("instagram", f"{api}:selfie")
        before = stored(cat)
        if state is not None:
            assert set(before) == set(server.expected_images(api, state["posts"]))
        fault.count = 0
        crawl(cat, server, api, tmp_path, query_id="17875800862117404")
        assert set(stored(cat)) == set(server.expected_images(api))


def test_web_api_without_cookies_asks_for_a_cookies_file(tmp_path):
    with FakeInstagram(6) as server, Catalog(tmp_path / "data") as cat:
        with pytest.raises(LoginRequired, match="--cookies FILE"):
            crawl(cat, server, "web", tmp_path, cookies=None)


def test_bad_images_are_recorded_against_their_post_and_the_crawl_goes_on(tmp_path, face_images):
    with FakeInstagram(30, page_size=6, images=face_images, corrupt_images={"FkPost00002_0", "FkPost00011_0"}) as server, \
            Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, "web", tmp_path)
        assert out["errors"] == {"truncated": 2}
        assert set(stored(cat)) == set(server.expected_images("web")) - {"FkPost00002/0", "FkPost00011/0"}
        errors = cat.errors()
        assert sorted(errors["source_id"]) == ["FkPost00002/0", "FkPost00011/0"]
        n_images = len(server.log("image"))
        crawl(cat, server, "web", tmp_path, restart=True)
        assert len(server.log("image")) == n_images  # rejected images are not fetched again


# -- opt-out, forget, secrets ----------------------------------------------------------------
def test_opt_out_list_is_honoured_before_download(tmp_path, face_images):
    opt_out = tmp_path / "opt-out.txt"
    opt_out.write_text("# people who asked\n@fake_user_01\nFkPost00005  # one post\n51230002\n")
    with FakeInstagram(80, page_size=12, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        out = crawl(cat, server, "web", tmp_path, opt_out=opt_out)
        skipped = {p.shortcode for p in server.posts if p.username in ("fake_user_01", "fake_user_02")} | {"FkPost00005"}
        assert out["opted_out"] == len(skipped) >= 5
        assert not {m["shortcode"] for m in stored(cat).values()} & skipped
        fetched = {r.path for r in server.log("image")}
        assert not any(code in path for code in skipped for path in fetched)


@pytest.mark.slow
def test_forget_an_owner_removes_photos_faces_vectors_and_files(tmp_path, face_images):
    from iffse_lib import catalog_index, pipeline

    with FakeInstagram(38, page_size=12, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        crawl(cat, server, "web", tmp_path, max_posts=6)
        pipeline.index_photos(cat, progress=False)
        index, _ = catalog_index.build_index(cat, progress=False)
        model = index.model_tag
        theirs = cat.query("SELECT id, path FROM photos WHERE json_extract(meta, '$.username') = 'fake_user_04'")
        assert len(theirs) == 2  # a carousel of 2
        their_faces = [r[0] for r in cat.query(
            f"SELECT id FROM faces WHERE photo_id IN ({','.join(str(r['id']) for r in theirs)})")]
        assert their_faces, "the test photos must have faces"
        assert set(their_faces) <= set(index.face_ids.tolist())
        _, their_vectors = cat.vectors(model, their_faces)

        assert instagram.forget(cat, owner="@Fake_User_04") == 2
        assert not cat.query("SELECT 1 FROM photos WHERE json_extract(meta, '$.username') = 'fake_user_04'")
        assert not cat.query(f"SELECT 1 FROM faces WHERE id IN ({','.join(map(str, their_faces))})")
        assert not any((cat.root / r["path"]).exists() for r in theirs)
        assert cat.get_meta("index_stale") == "1"
        index, _ = catalog_index.build_index(cat, progress=False)
        assert not set(their_faces) & set(index.face_ids.tolist())
        ids, _ = index.query(their_vectors, k=5)
        assert not set(ids.ravel().tolist()) & set(their_faces)

        # A later crawl does not collect the forgotten owner again, nor a forgotten post.
        code = stored(cat)["FkPost00000/0"]["shortcode"]
        assert instagram.forget(cat, photo=code) == 1
        crawl(cat, server, "web", tmp_path, restart=True)
        owners = {m["username"] for m in stored(cat).values()}
        assert "fake_user_04" not in owners and "FkPost00000/0" not in stored(cat)
        assert len(stored(cat)) == len(server.expected_images("web")) - 2 - 1
        assert_consistent(cat)


def test_cookie_values_never_reach_the_catalogue_or_the_output(tmp_path, face_images, capfd):
    from iffse_lib import cli

    with FakeInstagram(30, page_size=6, images=face_images,
                       faults=[Fault("500", count=1, after=1), Fault("truncate", endpoint="image", count=1)]) as server:
        cookies = server.cookies_file(tmp_path)
        data = tmp_path / "data"
        args = ["collect", "instagram", "--data", str(data), "--tag", "selfie", "--base-url", server.url,
                "--image-host", server.url, "--cookies", str(cookies), "--jitter", "0", "--workers", "3"]
        assert cli.main(args) == 0
        server.faults = [Fault("checkpoint", count=1)]
        assert cli.main(args + ["--restart"]) == 1  # the error message is printed too
        out = capfd.readouterr()
        assert "checkpoint_required" in out.err and "#selfie" in out.err
        files = [p for p in data.rglob("*") if p.is_file()]
        assert any(p.name == "catalog.sqlite" for p in files)
        blobs = [p.read_bytes() for p in files] + [out.out.encode(), out.err.encode()]
        for name, value in FAKE_COOKIES.items():
            assert not any(value.encode() in blob for blob in blobs), name
        with Catalog(data) as cat:
            assert len(stored(cat)) == len(server.expected_images("web"))


def test_serve_yields_a_base_url_that_a_crawl_can_use(tmp_path):
    with serve(10, page_size=5) as url, Catalog(tmp_path / "data") as cat:
        assert url.startswith("http://127.0.0.1:")
        out = collect_hashtag(cat, "selfie", api="legacy", base_url=url, image_host=url, progress=False,
                              limiter=fast_limiter())
        assert out["stored"] == 10
    with serve(10, page_size=5) as url, Catalog(tmp_path / "web") as cat:
        out = collect_hashtag(cat, "selfie", api="web", base_url=url, image_host=url, cookies=FAKE_COOKIES,
                              progress=False, limiter=fast_limiter())
        assert out["stored"] == len(FakeInstagram(10).expected_images("web"))


def test_forget_command_by_photo_id_shortcode_and_owner(tmp_path, face_images, capsys):
    from iffse_lib import cli

    with FakeInstagram(10, page_size=5, images=face_images) as server, Catalog(tmp_path / "data") as cat:
        crawl(cat, server, "legacy", tmp_path)
        first = cat.scalar("SELECT id FROM photos WHERE source_id='FkPost00001/0'")
    data = str(tmp_path / "data")
    assert cli.main(["forget", "--data", data, "--photo", str(first)]) == 0
    assert cli.main(["forget", "--data", data, "--photo", "FkPost00002"]) == 0
    assert cli.main(["forget", "--data", data, "--owner", "51230003"]) == 0  # legacy posts give owner ids
    assert cli.main(["forget", "--data", data, "--photo", "999999"]) == 1
    assert "removed 1 photos" in capsys.readouterr().out
    with Catalog(tmp_path / "data") as cat:
        left = set(stored(cat))
        assert left == {f"FkPost{i:05d}/0" for i in range(10)} - {"FkPost00001/0", "FkPost00002/0", "FkPost00003/0"}
        assert instagram.forgotten_names(cat) == {"fkpost00002", "51230003"}
        assert_consistent(cat)

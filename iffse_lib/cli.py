"""The `iffse` command: a thin layer over the library.

Every command that does work takes ``--json`` (one JSON document of counts, timings and paths on
stdout, no text summary) and ``-v``/``-vv`` (log lines at INFO/DEBUG on stderr; ``--quiet`` keeps
only errors). Logging is set up here only: the library logs and never configures handlers.

Exit codes: 0 ok; 1 an iffse error (bad input, missing model, no index…), with a one-line reason
on stderr; 2 bad command-line usage; 130 interrupted; 141 the reader of the output went away.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from . import __version__, argtypes, config
from .argtypes import bounded, existing_file, nonnegative_int, positive_int
from .errors import IffseError

#: upper bounds of command-line values (a typo never asks for a terabyte)
MAX_UPSAMPLE = 3
MAX_K = 100_000
MAX_SHARDS = 1024
MAX_BATCH = 100_000
MAX_TREES = 1_000
MAX_WORKERS = 1_024


def _catalog(args, create: bool = True, readonly: bool = False):
    """The catalogue of --data: a reader opens it read-only; a writer takes its lock, waiting for
    another writer unless --no-wait."""
    from .catalog import Catalog

    command = " ".join(["iffse", args.command] + [v for v in (getattr(args, "source", None),
                                                               getattr(args, "evaluation", None)) if v])
    return Catalog(args.data, create=create, readonly=readonly, wait=not getattr(args, "no_wait", False),
                   command=command)


def _say(args, *lines) -> None:
    if not args.quiet and not args.json:
        for line in lines:
            print(line)


def _report(args, payload: dict) -> None:
    """--json: print the command's one JSON document (counts, timings, paths)."""
    if args.json:
        print(json.dumps(payload, indent=2, default=str))


def _setup_logging(args) -> None:
    """Log lines on stderr: warnings by default, INFO with -v, DEBUG with -vv, errors only with -q.
    The level is set on iffse_lib's logger, so other libraries stay at warnings."""
    import logging

    level = logging.ERROR if args.quiet else {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger("iffse_lib").setLevel(level)


def _embedder_kwargs(args) -> dict:
    """TorchEmbedder settings from --device / --precision / --tta (none for the defaults)."""
    kwargs = {}
    if getattr(args, "device", "cpu") != "cpu":
        kwargs["device"] = args.device
    if getattr(args, "precision", "float32") != "float32":
        kwargs["dtype"] = args.precision
    if getattr(args, "tta", None) is not None and args.tta.kind != "none":
        kwargs["tta"] = args.tta
    if kwargs and args.embedder == "dlib":
        raise IffseError("--device, --precision and --tta apply to the torch embedder; dlib's runs in float32 "
                         "on the CPU, without augmentation. Drop --embedder dlib.")
    return kwargs


def _embedder(args):
    from .embedders import get_embedder

    kwargs = _embedder_kwargs(args)
    return get_embedder("torch" if kwargs and args.embedder is None else args.embedder, **kwargs)


def _detector(args):
    """The FaceDetector of --detector/--upsample/--device; None without them (`search` then uses
    the catalogue's own detector, the other commands :func:`iffse_lib.faces.default_detector`)."""
    from .faces import FaceDetector

    if args.detector is None and args.upsample is None:
        return None
    kind = args.detector or "hog"
    upsample = config.DEFAULT_UPSAMPLE if args.upsample is None else args.upsample
    return FaceDetector(kind, upsample, args.device if kind == "cnn" else "cpu")


def cmd_collect(args) -> int:
    from . import pipeline

    if args.source == "instagram":
        return cmd_collect_instagram(args)
    t0 = time.perf_counter()
    if args.source == "folder":
        from .sources.folder import FolderSource

        source = FolderSource(args.path, identity_from_folder=args.identity_from_folder)
    elif args.source == "lfw":
        from .sources.lfw import LFWSource

        source = LFWSource(args.lfw_dir, limit=args.limit)
    else:  # pragma: no cover - argparse restricts the choices
        raise IffseError(f"unknown source {args.source}")
    with _catalog(args) as cat, cat.run(f"collect {args.source}", vars(args)):
        counts = pipeline.collect(cat, source, progress=not args.quiet)
        cat.finish_run("ok", counts)
        _say(args, f"collected from {args.source}: {counts.get('stored', 0)} new photos, "
                   f"{counts.get('skipped', 0)} already there, {counts.get('duplicates', 0)} duplicates, "
                   f"{counts.get('errors', 0)} rejected  ({cat.root})")
        _report(args, {"command": "collect", "source": args.source, "counts": counts,
                       "seconds": round(time.perf_counter() - t0, 3), "data": str(cat.root)})
    return 0


def cmd_index(args) -> int:
    from .catalog_index import update_index, update_shards
    from .faces import default_detector
    from .pipeline import index_photos

    t0 = time.perf_counter()
    embedder = _embedder(args)
    detector = _detector(args) or default_detector()
    with _catalog(args, create=False) as cat, cat.run("index", vars(args)):
        counts = index_photos(cat, embedder, detector=detector, redetect=args.redetect, batch_size=args.batch,
                              progress=not args.quiet, jobs=args.jobs, scheduler=args.scheduler,
                              workers=args.workers)
        index, info = update_index(cat, embedder.model_tag, n_trees=args.n_trees, rebuild=args.rebuild,
                                   backend=args.backend, progress=not args.quiet)
        counts["index"] = info
        shard_backend = None if args.backend == "auto" else args.backend
        shards = update_shards(cat, embedder.model_tag, args.shards, shard_backend)
        if shards is not None:
            counts["shards"] = {key: shards[key] for key in ("shards", "backend", "count", "counts", "rebuilt")}
        cat.finish_run("ok", counts)
        how = (f"rebuilt ({info.get('reason')})" if info["rebuilt"] else
               f"kept, {info['buffer']} faces searched exactly until a rebuild at {info['rebuild_at']}")
        _say(args, f"indexed {counts.get('photos', 0)} photos with {detector.tag} ({counts.get('faces', 0)} new "
                   f"faces, {counts.get('vectors', 0)} new vectors); the index holds {len(index)} faces of "
                   f"{embedder.model_tag}, segment {how}  ({cat.root / 'index'})")
        if shards is not None:
            _say(args, f"{shards['shards']} index shards of {shards['count']} faces ({shards['backend']}), "
                       + ("rebuilt" if shards["rebuilt"] else "up to date")
                       + "; search them with `iffse search PHOTO --workers N` or `--scheduler tcp://HOST:PORT`")
        if counts.get("other_detector"):
            _say(args, f"{counts['other_detector']} photos keep the faces another detector found; "
                       f"--redetect detects them again with {detector.tag}")
        _report(args, {"command": "index", "counts": counts, "index_faces": len(index), "model": embedder.model_tag,
                       "detector": detector.tag, "seconds": round(time.perf_counter() - t0, 3),
                       "data": str(cat.root), "index_dir": str(cat.root / "index")})
    return 0


def cmd_search(args) -> int:
    from .search import Searcher, catalog_detector

    with _catalog(args, create=False, readonly=True) as cat:
        detector = _detector(args) or (catalog_detector(cat, args.device) if args.device != "cpu" else None)
        with contextlib.ExitStack() as stack:
            client = None
            if args.scheduler or args.workers:
                from .distributed import dask_client

                client = stack.enter_context(dask_client(args.scheduler, args.workers, dashboard_address=None,
                                                          progress=not args.quiet))
            searcher = Searcher(cat, _embedder(args), detector=detector, client=client)
            results = searcher.search(args.photo, k=args.k, threshold=args.threshold)
    if args.json:
        payload = [{"query_box": list(df.attrs["query_box"].as_tuple()), "matches": df.to_dict("records")}
                   for df in results]
        print(json.dumps(payload, indent=2))
        return 0
    for n, df in enumerate(results, start=1):
        box = df.attrs["query_box"]
        print(f"face {n} at {box.as_tuple()}:")
        print(df[["rank", "distance", "face_id", "identity", "path"]].to_string(index=False) if len(df) else "  no match")
    return 0


def cmd_collect_instagram(args) -> int:
    from .sources import instagram

    from .sources.ratelimit import DEFAULT_JITTER, RateLimiter, jitter_with_mean, parse_windows

    try:
        windows = parse_windows(args.rate or [])
        jitter = DEFAULT_JITTER if args.jitter is None else {e: jitter_with_mean(args.jitter) for e in DEFAULT_JITTER}
    except ValueError as exc:
        raise IffseError(str(exc)) from None
    t0 = time.perf_counter()
    options = {"user_agent": args.user_agent, "page_size": args.page_size, "query_id": args.query_id,
               "timeout": args.timeout, "limiter": RateLimiter(windows, jitter=jitter)}
    with _catalog(args) as cat:
        cat.start_run("collect instagram", vars(args))
        try:
            counts = instagram.collect_hashtag(
                cat, args.tag, api=args.api, base_url=args.base_url, image_hosts=args.image_host or (),
                cookies=args.cookies, max_posts=args.max_posts, workers=args.workers, restart=args.restart,
                update=args.update, since=args.since, until=args.until, tab=args.tab,
                opt_out=args.opt_out, progress=not args.quiet, **options)
        except IffseError as exc:
            cat.finish_run("failed", {"error": type(exc).__name__})
            raise
        cat.finish_run("ok", counts)
        for tag, c in counts["tags"].items():
            _say(args, f"#{tag}: {c.get('posts', 0)} posts, {c.get('stored', 0)} new photos, "
                       f"{c.get('known', 0)} already there, {c.get('opted_out', 0)} opted out"
                       + (f", {c['out_of_range']} outside --since/--until" if c.get("out_of_range") else "")
                       + (f", {c['bad_posts']} bad posts" if c.get("bad_posts") else "")
                       + ("; the feed is complete (--restart walks it again)" if c["complete"] else "")
                       + ("; Instagram kept repeating a page, so the feed ended early" if c.get("exhausted") else "")
                       + ("; every post of the newest page was already here" if c.get("stopped_by_update") else ""))
        for note in counts.get("notes", []):
            _say(args, f"note: {note}")
        if counts["errors"]:
            _say(args, "errors: " + ", ".join(f"{k} {v}" for k, v in sorted(counts["errors"].items()))
                 + "  (see `iffse stats`)")
        _report(args, {"command": "collect", "source": "instagram", "counts": counts,
                       "seconds": round(time.perf_counter() - t0, 3), "data": str(cat.root)})
    return 0


def cmd_forget(args) -> int:
    t0 = time.perf_counter()
    with _catalog(args, create=False) as cat, cat.run("forget", vars(args)):
        removed = cat.forget(owner=args.owner, photo=args.photo)
    _say(args, f"removed {removed} photos with their faces and vectors, and erased their files and vectors; "
               "run `iffse index` to rewrite the index without them")
    _report(args, {"command": "forget", "owner": args.owner, "photo": args.photo, "removed": removed,
                   "seconds": round(time.perf_counter() - t0, 3), "data": str(cat.root)})
    return 0


def cmd_check(args) -> int:
    from .check import check_catalog

    findings = check_catalog(args.data, repair=args.repair, progress=not args.quiet)
    sound = all(f.ok or f.repaired for f in findings)
    if args.json:
        print(json.dumps({"sound": sound, "findings": [f.__dict__ for f in findings]}, indent=2))
    else:
        for f in findings:
            print(f.line())
    return 0 if sound else 1


def cmd_stats(args) -> int:
    with _catalog(args, create=False, readonly=True) as cat:
        counts = cat.counts()
        counts["data"] = str(cat.root)
        counts["index_stale"] = cat.get_meta("index_stale", "1") == "1"
    if args.json:
        print(json.dumps(counts, indent=2))
    else:
        for key, value in counts.items():
            print(f"{key:22} {value}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    summary = run_demo(data=args.data, lfw_dir=args.lfw_dir, limit=args.limit, embedder=args.embedder,
                       progress=not args.quiet, out=None if args.quiet or args.json else sys.stdout)
    if "search" in summary:
        summary["search"]["matches"] = summary["search"]["matches"].to_dict("records")
    _report(args, {"command": "demo", **summary})
    return 0


def cmd_evaluate_make_pairs(args) -> int:
    from .evaluate.pairs import make_pairs, write_pairs

    t0 = time.perf_counter()
    pairs = make_pairs(args.lfw_dir, n_folds=args.folds, seed=args.seed,
                       max_same_per_person=args.max_same_per_person, max_per_fold=args.max_per_fold)
    path = write_pairs(pairs, args.out)
    _say(args, f"wrote {len(pairs)} pairs ({pairs.attrs['n_folds']} folds of {pairs.attrs['per_fold']} same + "
               f"{pairs.attrs['per_fold']} different) to {path}")
    _report(args, {"command": "evaluate make-pairs", "pairs": len(pairs), "folds": pairs.attrs["n_folds"],
                   "per_fold": pairs.attrs["per_fold"], "out": str(path), "lfw_dir": str(args.lfw_dir),
                   "seconds": round(time.perf_counter() - t0, 3)})
    return 0


def cmd_evaluate_lfw_pairs(args) -> int:
    import os

    from .evaluate.verification import evaluate_lfw_pairs
    from .faces import default_detector

    lfw_dir = args.lfw_dir or os.environ.get("IFFSE_LFW_DIR") or None
    embedder, detector = _embedder(args), _detector(args) or default_detector()
    catalog = _catalog(args, create=False, readonly=True) if args.data is not None else None
    try:
        result = evaluate_lfw_pairs(args.pairs, lfw_dir=lfw_dir, catalog=catalog, embedder=embedder,
                                    detector=detector, progress=not args.quiet)
    finally:
        if catalog is not None:
            catalog.close()
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


def cmd_evaluate_retrieval(args) -> int:
    from .embedders import get_embedder
    from .evaluate.retrieval import evaluate_retrieval

    with _catalog(args, create=False, readonly=True) as cat:
        result = evaluate_retrieval(cat, get_embedder(args.embedder).model_tag, depth=args.depth,
                                    max_queries=args.max_queries, progress=not args.quiet)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default does not undo `iffse --data X index` or `iffse -v index`
    # (main fills in the defaults).
    common.add_argument("--data", type=Path, default=argparse.SUPPRESS,
                        help=f"catalogue folder (default: {config.DATA_DIR})")
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or summaries")
    common.add_argument("--no-wait", action="store_true", default=argparse.SUPPRESS,
                        help="when another process is writing the catalogue, exit (status 1) instead of waiting")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document (counts, timings, paths) instead of text")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log what happens on stderr: -v steps, -vv details")

    parser = argparse.ArgumentParser(prog="iffse", description="Index the faces in photo collections and "
                                     "search them by likeness.", parents=[common])
    parser.add_argument("--version", action="version", version=f"iffse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    collect = sub.add_parser("collect", help="add photos to the catalogue", parents=[common])
    csub = collect.add_subparsers(dest="source", required=True)
    folder = csub.add_parser("folder", help="every image under a folder, recursively", parents=[common])
    folder.add_argument("path", type=Path)
    folder.add_argument("--identity-from-folder", action="store_true",
                        help="use each file's parent folder name as its identity label")
    lfw = csub.add_parser("lfw", help="Labeled Faces in the Wild (local copy or download)", parents=[common])
    lfw.add_argument("--lfw-dir", type=Path, default=None,
                     help="a local copy in LFW's layout (default: $IFFSE_LFW_DIR, else download)")
    lfw.add_argument("--limit", type=positive_int, default=None, help="only the first N photos")
    insta = csub.add_parser("instagram", help="the photos of hashtags (see README: Collecting from Instagram)",
                            parents=[common])
    insta.add_argument("--tag", action="append", required=True, type=argtypes.hashtag,
                       help="a hashtag, without # (repeatable)")
    insta.add_argument("--max-posts", type=argtypes.nonnegative_int, default=None,
                       help="stop after N posts of each tag (over resumed runs)")
    insta.add_argument("--api", choices=("web", "legacy"), default="web",
                       help="web: today's API (needs --cookies); legacy: IFFSE's 2017 flow (default: %(default)s)")
    insta.add_argument("--tab", choices=("recent", "top", "both"), default="recent",
                       help="web: which feed; recent falls back to top when Instagram shows only top posts "
                            "(default: %(default)s)")
    insta.add_argument("--cookies", type=Path, default=None,
                       help="a logged-in browser session's cookies (Netscape cookies.txt or JSON); never stored")
    insta.add_argument("--base-url", type=argtypes.http_url, default="https://www.instagram.com",
                       help="(default: %(default)s)")
    insta.add_argument("--image-host", action="append", type=argtypes.host, default=None, metavar="HOST",
                       help="also download images from HOST (besides cdninstagram.com, fbcdn.net and the "
                            "--base-url host; repeatable)")
    insta.add_argument("--workers", type=argtypes.positive_int, default=8,
                       help="images downloaded at once (default: %(default)s)")
    walk = insta.add_mutually_exclusive_group()
    walk.add_argument("--restart", action="store_true", help="forget the saved crawl state and start from the newest post")
    walk.add_argument("--update", action="store_true",
                       help="from the newest post, stop at the first page whose posts are all in the catalogue")
    insta.add_argument("--since", type=argtypes.utc_date, default=None, metavar="DATE",
                       help="only posts taken on or after DATE (e.g. 2024-06-01); the crawl stops at older ones")
    insta.add_argument("--until", type=argtypes.utc_date, default=None, metavar="DATE",
                       help="only posts taken before DATE")
    insta.add_argument("--opt-out", type=Path, default=None, help="a file of usernames, owner ids or shortcodes to skip")
    insta.add_argument("--user-agent", default=None, help="the User-Agent header (default: a desktop browser's)")
    insta.add_argument("--page-size", type=argtypes.positive_int, default=6,
                       help="posts per legacy GraphQL page (default: %(default)s, as IFFSE asked)")
    insta.add_argument("--query-id", default=None, help="legacy: the hashtag query_id, when the bundle lacks it")
    insta.add_argument("--timeout", type=argtypes.positive_float, default=30.0,
                       help="seconds per request (default: %(default)s)")
    insta.add_argument("--rate", action="append", type=argtypes.rate_window, metavar="ENDPOINT=N/SECONDS",
                       help="at most N requests per SECONDS to page, graphql, web, iphone or image (repeatable; "
                            "default: instaloader's limits, see iffse_lib/sources/ratelimit.py)")
    insta.add_argument("--jitter", type=argtypes.nonnegative_float, default=None, metavar="SECONDS",
                       help="mean random pause before each API request (default: instaloader's 1.7; 0: none)")
    collect.set_defaults(func=cmd_collect)

    def embedder_option(p):
        p.add_argument("--embedder", default=None, help="dlib or torch (default: torch when installed)")

    def device_options(p, what, default_detector):
        p.add_argument("--detector", choices=("hog", "cnn"), default=None,
                       help="dlib's HOG detector (CPU), or dlib's CNN detector run in PyTorch (CPU or GPU; "
                            f"finds turned faces too) (default: {default_detector})")
        p.add_argument("--upsample", type=bounded(int, 0, MAX_UPSAMPLE), default=None,
                       help=f"double the photo this many times before detecting: smaller faces, ~4x the time "
                            f"each (default: {config.DEFAULT_UPSAMPLE})")
        p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N): where the CNN detector, the "
                       "alignment and the torch embedder run (default: %(default)s)")
        p.add_argument("--precision", choices=("float32", "tf32", "bfloat16", "float16"), default="float32",
                       help="the torch embedder's arithmetic; each is its own model tag, so " + what +
                            " (default: %(default)s)")
        p.add_argument("--tta", type=argtypes.tta, default=None, metavar="none|flip|jitter:N",
                       help="test-time augmentation: each vector the mean over the chip and its mirror image "
                            "(flip) or over N jittered copies as dlib's num_jitters; each is its own model tag, "
                            "so " + what + " (default: none)")

    index = sub.add_parser("index", help="detect, align, embed and build the search index", parents=[common])
    embedder_option(index)
    device_options(index, "search with the same one", "hog")
    index.add_argument("--redetect", action="store_true",
                       help="detect again the photos another --detector/--upsample found faces in, "
                            "replacing their faces and vectors (otherwise they are kept)")
    index.add_argument("--batch", type=bounded(int, 1, MAX_BATCH), default=config.DEFAULT_BATCH,
                       help="photos per batch (default: %(default)s)")
    index.add_argument("--n-trees", type=bounded(int, 1, MAX_TREES), default=config.DEFAULT_N_TREES,
                       help="Annoy trees (default: %(default)s)")
    index.add_argument("--rebuild", action="store_true",
                       help="rebuild the whole index (otherwise new faces are searched exactly until they pass "
                            "10%% of the index, 1,000 to 50,000 faces)")
    index.add_argument("--backend", choices=("annoy", "faiss-hnsw", "ivfpq", "flat", "auto"), default=None,
                       help="index backend, kept for later rebuilds until another is given (auto, and the "
                            "default: annoy below 100,000 faces, faiss-hnsw up to 1M, ivfpq from 1M on: compressed "
                            "codes re-ranked from the vectors; flat: exact)")
    index.add_argument("--shards", type=bounded(int, 1, MAX_SHARDS), default=None, metavar="N",
                       help="also build N index shards by face id, for `iffse search PHOTO --workers N` "
                            "(built shards are rebuilt whenever the catalogue's faces change)")
    where = index.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=bounded(int, 1, MAX_WORKERS), default=None, metavar="N",
                       help="processes on this machine (default: one per core this process may use; one "
                            "with --device cuda; 1 runs everything in this process)")
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="run the stages on this Dask cluster (README: Running on a cluster)")
    where.add_argument("--workers", type=bounded(int, 1, MAX_WORKERS), default=None, metavar="N",
                       help="run the stages on a local Dask cluster of N processes")
    index.set_defaults(func=cmd_index)

    search = sub.add_parser("search", help="find lookalikes of the faces in a photo", parents=[common])
    search.add_argument("photo", type=existing_file)
    search.add_argument("-k", type=bounded(int, 1, MAX_K), default=config.DEFAULT_K,
                        help="matches per face, at most the faces indexed (default: %(default)s)")
    search.add_argument("--threshold", type=bounded(float, 0), default=None, help="leave out matches farther than this")
    embedder_option(search)
    device_options(search, "use the one the catalogue was indexed with",
                   "the one that found most of the catalogue's faces")
    search.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="search the index shards (`iffse index --shards N`) on this Dask cluster")
    search.add_argument("--workers", type=bounded(int, 1, MAX_WORKERS), default=None, metavar="N",
                        help="search the index shards on a local cluster of N worker processes")
    search.set_defaults(func=cmd_search)

    forget = sub.add_parser("forget", help="remove an owner's photos, or one photo, with their faces and vectors",
                            parents=[common])
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--owner", help="an Instagram username or owner id (later crawls skip them too)")
    who.add_argument("--photo", help="a catalogue photo id or an Instagram shortcode")
    forget.set_defaults(func=cmd_forget)

    check = sub.add_parser("check", help="verify every file of the catalogue; --repair rebuilds what the raw "
                           "photos allow", parents=[common])
    check.add_argument("--repair", action="store_true",
                       help="removes orphan files, computes lost or damaged vectors again, erases leftover "
                            "vector bytes, rebuilds a mismatched index")
    check.set_defaults(func=cmd_check)

    stats = sub.add_parser("stats", help="what the catalogue holds", parents=[common])
    stats.set_defaults(func=cmd_stats)

    demo = sub.add_parser("demo", help="collect LFW, index it and run one search", parents=[common])
    demo.add_argument("--lfw-dir", type=Path, default=None, help="LFW copy (default: $IFFSE_LFW_DIR, else download)")
    demo.add_argument("--limit", type=positive_int, default=None, help="only the first N LFW photos")
    embedder_option(demo)
    demo.set_defaults(func=cmd_demo)

    evaluate = sub.add_parser("evaluate", help="LFW verification accuracy; retrieval quality", parents=[common])
    esub = evaluate.add_subparsers(dest="evaluation", required=True)
    make_pairs = esub.add_parser("make-pairs", help="an LFW pairs file (official format) from an LFW folder",
                                 parents=[common])
    make_pairs.add_argument("--lfw-dir", type=Path, required=True, help="LFW copy (<Name>/<Name>_NNNN.jpg)")
    make_pairs.add_argument("--out", type=Path, required=True, help="pairs file to write")
    make_pairs.add_argument("--folds", type=bounded(int, 1, 100), default=10, help="folds (default: %(default)s)")
    make_pairs.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: %(default)s)")
    make_pairs.add_argument("--max-same-per-person", type=positive_int, default=None,
                            help="cap on one person's same pairs")
    make_pairs.add_argument("--max-per-fold", type=positive_int, default=None, help="cap on each kind of pair per fold")
    make_pairs.set_defaults(func=cmd_evaluate_make_pairs)
    optional_data = argparse.ArgumentParser(add_help=False)
    optional_data.add_argument("--data", type=Path, default=argparse.SUPPRESS,
                               help="a catalogue holding the LFW photos: reuse its vectors (default: compute all)")
    optional_data.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                               help="no progress bars")
    optional_data.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                               help="log what happens on stderr: -v steps, -vv details")
    lfw_pairs = esub.add_parser("lfw-pairs", help="LFW's ten-fold verification protocol", parents=[optional_data])
    lfw_pairs.add_argument("--pairs", type=Path, required=True, help="pairs file in LFW's format (pairs.txt)")
    lfw_pairs.add_argument("--lfw-dir", type=Path, default=None, help="LFW copy (default: $IFFSE_LFW_DIR)")
    lfw_pairs.add_argument("--json", action="store_true", help="print JSON")
    embedder_option(lfw_pairs)
    device_options(lfw_pairs, "only a catalogue's vectors of that tag are reused", "hog")
    lfw_pairs.set_defaults(func=cmd_evaluate_lfw_pairs, default_data=None)
    retrieval = esub.add_parser("retrieval", help="precision@1, @5 and mAP, exact search vs the index",
                                parents=[common])
    retrieval.add_argument("--depth", type=bounded(int, 1, MAX_K), default=100,
                           help="ranks scored for mAP (default: %(default)s)")
    retrieval.add_argument("--max-queries", type=positive_int, default=None,
                           help="score this many random queries (default: every labelled face)")
    embedder_option(retrieval)
    retrieval.set_defaults(func=cmd_evaluate_retrieval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.data = getattr(args, "data", getattr(args, "default_data", config.DATA_DIR))
    args.quiet = getattr(args, "quiet", False)
    args.json = getattr(args, "json", False)
    args.verbose = getattr(args, "verbose", 0)
    _setup_logging(args)
    try:
        return args.func(args)
    except IffseError as exc:
        print(f"iffse: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("iffse: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `iffse search … | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

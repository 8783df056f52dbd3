"""The `iffse` command: a thin layer over the library.

Exit codes: 0 ok; 1 an iffse error (bad input, missing model, no index…), with a one-line reason
on stderr; 2 bad command-line usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import config
from .errors import IffseError


def _catalog(args, create: bool = True):
    from .catalog import Catalog

    return Catalog(args.data, create=create)


def _say(args, *lines) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


def cmd_collect(args) -> int:
    from . import pipeline

    if args.source == "folder":
        from .sources.folder import FolderSource

        source = FolderSource(args.path, identity_from_folder=args.identity_from_folder)
    elif args.source == "lfw":
        from .sources.lfw import LFWSource

        source = LFWSource(args.lfw_dir, limit=args.limit)
    else:  # pragma: no cover - argparse restricts the choices
        raise IffseError(f"unknown source {args.source}")
    with _catalog(args) as cat:
        cat.start_run(f"collect {args.source}", vars(args))
        counts = pipeline.collect(cat, source, progress=not args.quiet)
        cat.finish_run("ok", counts)
        _say(args, f"collected from {args.source}: {counts.get('stored', 0)} new photos, "
                   f"{counts.get('skipped', 0)} already there, {counts.get('duplicates', 0)} duplicates, "
                   f"{counts.get('errors', 0)} rejected  ({cat.root})")
    return 0


def cmd_index(args) -> int:
    from . import pipeline
    from .embed import get_embedder

    embedder = get_embedder(args.embedder)
    with _catalog(args, create=False) as cat:
        cat.start_run("index", vars(args))
        counts = pipeline.index_photos(cat, embedder, upsample=args.upsample, batch_size=args.batch,
                                       progress=not args.quiet)
        index, info = pipeline.build_index(cat, embedder.model_tag, n_trees=args.n_trees, progress=not args.quiet)
        counts["index"] = info
        cat.finish_run("ok", counts)
        _say(args, f"indexed {counts.get('photos', 0)} photos ({counts.get('faces', 0)} new faces, "
                   f"{counts.get('vectors', 0)} new vectors); the index holds {len(index)} faces of "
                   f"{embedder.model_tag}  ({cat.root / 'index'})")
    return 0


def cmd_search(args) -> int:
    from .embed import get_embedder
    from .search import Searcher

    with _catalog(args, create=False) as cat:
        searcher = Searcher(cat, get_embedder(args.embedder))
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


def cmd_stats(args) -> int:
    with _catalog(args, create=False) as cat:
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

    run_demo(data=args.data, lfw_dir=args.lfw_dir, limit=args.limit, embedder=args.embedder,
             progress=not args.quiet, out=None if args.quiet else sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=config.DATA_DIR, help="catalogue folder (default: %(default)s)")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summaries")

    parser = argparse.ArgumentParser(prog="iffse", description="Index the faces in photo collections and "
                                     "search them by likeness.", parents=[common])
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
    lfw.add_argument("--limit", type=int, default=None, help="only the first N photos")
    collect.set_defaults(func=cmd_collect)

    def embedder_option(p):
        p.add_argument("--embedder", default=None, help="dlib or torch (default: torch when installed)")

    index = sub.add_parser("index", help="detect, align, embed and build the search index", parents=[common])
    embedder_option(index)
    index.add_argument("--upsample", type=int, default=config.DEFAULT_UPSAMPLE, help="HOG upsampling (default: %(default)s)")
    index.add_argument("--batch", type=int, default=config.DEFAULT_BATCH, help="photos per batch (default: %(default)s)")
    index.add_argument("--n-trees", type=int, default=config.DEFAULT_N_TREES, help="Annoy trees (default: %(default)s)")
    index.set_defaults(func=cmd_index)

    search = sub.add_parser("search", help="find lookalikes of the faces in a photo", parents=[common])
    search.add_argument("photo", type=Path)
    search.add_argument("-k", type=int, default=config.DEFAULT_K, help="matches per face (default: %(default)s)")
    search.add_argument("--threshold", type=float, default=None, help="drop matches farther than this")
    search.add_argument("--json", action="store_true", help="print JSON")
    embedder_option(search)
    search.set_defaults(func=cmd_search)

    stats = sub.add_parser("stats", help="what the catalogue holds", parents=[common])
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)

    demo = sub.add_parser("demo", help="collect LFW, index it and run one search", parents=[common])
    demo.add_argument("--lfw-dir", type=Path, default=None, help="LFW copy (default: $IFFSE_LFW_DIR, else download)")
    demo.add_argument("--limit", type=int, default=None, help="only the first N LFW photos")
    embedder_option(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except IffseError as exc:
        print(f"iffse: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("iffse: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The main job: collect LFW, detect, embed, index, run one lookalike search, print a summary."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import TextIO

from .catalog import Catalog
from .catalog_index import build_index
from .embedders import get_embedder
from .pipeline import collect, index_photos
from .search import Searcher
from .sources.lfw import LFWSource


def run_demo(data: str | Path | None = None, lfw_dir: str | Path | None = None, limit: int | None = None,
             embedder: str | None = None, progress: bool = True, out: TextIO | None = sys.stdout) -> dict:
    emb = get_embedder(embedder)
    summary: dict = {}
    with Catalog(data) as cat:
        cat.start_run("demo", {"lfw_dir": str(lfw_dir), "limit": limit, "embedder": emb.model_tag})
        t = time.perf_counter()
        source = LFWSource(lfw_dir, limit=limit)
        summary["collect"] = collect(cat, source, progress=progress)
        summary["index_photos"] = index_photos(cat, emb, progress=progress)
        index, summary["build_index"] = build_index(cat, emb.model_tag, progress=progress)
        # One lookalike search: the first catalogued face of a person with several photos.
        row = cat.first_face_of_a_repeated_identity(emb.model_tag)
        if row:
            matches = Searcher(cat, emb, index).search_face(row[0], k=5)
            summary["search"] = {"query_face": row[0], "query_identity": row[1],
                                 "query_path": str(cat.root / row[2]), "matches": matches}
        summary["seconds"] = round(time.perf_counter() - t, 2)
        summary["counts"] = cat.counts()
        summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        cat.finish_run("ok", {k: v for k, v in summary.items() if k != "search"})
        if out is not None:
            print_summary(summary, cat.root, out)
    return summary


def print_summary(s: dict, root: Path, out: TextIO) -> None:
    c, ip = s["counts"], s["index_photos"]
    w = out.write
    w("\n== iffse demo ==\n")
    w(f"photos     {c['photos']} in the catalogue ({s['collect'].get('stored', 0)} new, "
      f"{s['collect'].get('skipped', 0)} already there, {s['collect'].get('errors', 0)} rejected)\n")
    w(f"faces      {c['faces']} ({c['photos_without_faces']} photos without a detected face)\n")
    w(f"vectors    {c['vectors']}\n")
    w(f"failures   {c['errors'] or 'none'}\n")
    w("stages     (this run)\n")
    coll = s["collect"]
    if coll.get("seconds"):
        n = coll.get("stored", 0) + coll.get("duplicates", 0) + coll.get("errors", 0)
        w(f"  collect  {coll['seconds']:8.2f} s  {n / coll['seconds'] if coll['seconds'] else 0:8.1f} photos/s\n")
    for stage, v in ip.get("stages", {}).items():
        med = f"median {v['median_ms']:8.2f} ms/{'face' if stage == 'embed' else 'photo'}" if v["median_ms"] is not None else ""
        w(f"  {stage:8} {v['seconds']:8.2f} s  {med}\n")
    if ip.get("photos"):
        w(f"  detect+embed overall {ip['photos_per_s']} photos/s\n")
    w(f"  index    {s['build_index']['seconds']:8.2f} s  ({s['build_index']['faces']} faces, "
      f"{s['build_index']['n_trees']} trees)\n")
    if "search" in s:
        q = s["search"]
        w(f"search     lookalikes of face {q['query_face']} ({q['query_identity']}):\n")
        m = q["matches"]
        for _, r in m.iterrows():
            w(f"  {r['rank']:2d}. {r['distance']:.3f}  {r['identity']}\n")
    w(f"catalogue  {root}\n")
    w(f"peak RSS   {s['peak_rss_mb']} MB;  total {s['seconds']} s\n")
    w("next       make lab   (opens a working copy of notebooks/, lab/, on this catalogue)\n")

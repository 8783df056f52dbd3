"""``iffse check``: verify every file the catalogue owns; with ``repair``, rebuild what the raw
photos allow.

Like ``git fsck`` or ``restic check --read-data``, it reads everything:

- the database: SQLite's ``integrity_check`` and ``foreign_key_check``, and that it is this
  folder's catalogue (``catalog.id``);
- every raw photo against its sha256, and files in ``raw/`` that no photo owns;
- each vector file against the committed row counts; every vector finite and of a face's norm;
  rows that no face refers to any more hold zeros (forgotten faces are erased);
- each index against the catalogue: its catalogue id, the faces and rows it holds, and a sample
  of its vectors against the catalogue's.

Repairs: orphan files are deleted; vectors lost (a truncated file) or damaged (NaN, overwritten)
are dropped and computed again from the raw photos and stored landmarks; leftover bytes of
removed vectors are zeroed; a mismatched index is rebuilt. A missing or damaged raw photo cannot
be rebuilt: check names the photo and the command that removes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .catalog import Catalog
from .errors import IffseError
from .models import sha256_file

log = logging.getLogger(__name__)

#: segment items whose stored vectors are compared with the catalogue's
INDEX_SAMPLE = 256


@dataclass(frozen=True)
class Finding:
    """One thing checked: ``ok``, what was found, and what to run about it (None when sound)."""

    part: str
    ok: bool
    message: str
    fix: str | None = None
    repaired: bool = False

    def line(self) -> str:
        status = "ok" if self.ok else ("REPAIRED" if self.repaired else "DAMAGED")
        text = f"{status:9} {self.part:10} {self.message}"
        return text + (f"  -> {self.fix}" if self.fix and not self.ok and not self.repaired else "")


def check_photos(cat: Catalog, repair: bool, progress: bool) -> list[Finding]:
    bad: list[int] = []
    owned = set()
    files = cat.photo_files()
    for photo_id, sha, path in tqdm(files, desc="check photos", unit="photo", disable=not progress):
        owned.add(path)
        try:
            if sha256_file(path) != sha:
                bad.append(photo_id)
        except OSError:
            bad.append(photo_id)
    out = []
    if bad:
        some = ", ".join(map(str, bad[:5]))
        out.append(Finding("photos", False, f"{len(bad)} of {len(files)} raw photos are missing or do not match their "
                           f"sha256 (photos {some})", f"collect them again from their source, or remove them "
                           f"with `iffse forget --data {cat.root} --photo {bad[0]}`"))
    else:
        out.append(Finding("photos", True, f"{len(files)} raw photos match their sha256"))
    orphans = [p for p in (cat.root / "raw").rglob("*") if p.is_file() and p not in owned]
    if orphans:
        if repair:
            for p in orphans:
                p.unlink(missing_ok=True)
        out.append(Finding("photos", False, f"{len(orphans)} files in raw/ belong to no photo (e.g. {orphans[0].name})",
                           f"`iffse check --repair --data {cat.root}` deletes them", repaired=repair))
    return out


def _vector_findings(cat: Catalog, tag: str, repair: bool) -> tuple[list[Finding], bool]:
    """Findings for one model's vectors, and whether vectors were dropped (to be computed again)."""
    from .errors import CatalogDamaged
    from .catalog_index import NORM_RANGE

    name = f"vectors/{tag}.npy"
    try:
        vf = cat.vector_file(tag)
    except CatalogDamaged as exc:
        if not repair:
            return [Finding("vectors", False, str(exc).split(". Run")[0], f"`iffse check --repair --data {cat.root}`")], False
        from .storage import VectorFile

        path = cat.root / "vectors" / f"{tag}.npy"
        try:
            dim = VectorFile.read_header(path)[1]
            on_disk = VectorFile(path, dim, 0).rows_on_disk() if dim == cat.model_info(tag)["dim"] else None
        except (IffseError, OSError):
            on_disk = None
        if on_disk is None:  # not a vector file of this model at all: start it again
            path.unlink(missing_ok=True)
            on_disk = 0
        gone = cat.cut_vectors(tag, on_disk)
        return [Finding("vectors", False, f"{name} had lost {gone} vectors; they are computed again", repaired=True)], True
    ids, rows = cat.vector_rows(tag)
    memmap = vf.array()
    bad_ids = []
    for start in range(0, len(ids), 100_000):
        v = np.asarray(memmap[rows[start:start + 100_000]], dtype=np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.linalg.norm(v, axis=1)
        bad = ~(np.isfinite(v).all(axis=1) & (norms >= NORM_RANGE[0]) & (norms <= NORM_RANGE[1]))
        bad_ids += ids[start:start + 100_000][bad].tolist()
    out = []
    dropped = False
    if bad_ids:
        some = ", ".join(map(str, bad_ids[:5]))
        if repair:
            cat.drop_vectors(tag, bad_ids)
            dropped = True
        out.append(Finding("vectors", False, f"{len(bad_ids)} vectors in {name} are not finite or not of a face's "
                           f"length (faces {some})", f"`iffse check --repair --data {cat.root}` computes them again",
                           repaired=repair))
    else:
        out.append(Finding("vectors", True, f"{name}: {len(ids)} vectors, all finite and of a face's length"))
    unused = np.setdiff1d(np.arange(vf.rows), rows)
    leftovers = unused[np.asarray(memmap[unused]).any(axis=1)] if len(unused) else unused
    if len(leftovers):
        if repair:
            cat.erase_vector_rows(tag, leftovers)
        out.append(Finding("vectors", False, f"{len(leftovers)} rows of {name} that no face uses still hold a vector",
                           f"`iffse check --repair --data {cat.root}` erases them", repaired=repair))
    return out, dropped


def _index_finding(cat: Catalog, tag: str) -> Finding:
    from .errors import IndexMissing
    from .catalog_index import index_dir, load_index

    try:
        index = load_index(cat, tag)
    except IndexMissing:
        return Finding("index", True, f"no index of {tag} yet (`iffse index` builds it)")
    except IffseError as exc:
        return Finding("index", False, f"{tag}: {str(exc).split(' Run ')[0]}", f"`iffse index --rebuild --data {cat.root}`")
    items = np.arange(index.segment_size)
    if len(items) > INDEX_SAMPLE:
        items = np.random.default_rng(0).choice(items, INDEX_SAMPLE, replace=False)
    live = items[~index.dead_items()[items]]
    if len(live):
        _, mine = cat.vectors(tag, index.face_ids[live])
        stored = index.item_vectors(live)
        order = np.argsort(index.face_ids[live], kind="stable")
        if mine.shape != stored.shape or not np.allclose(stored[order], mine, atol=1e-5):
            return Finding("index", False, f"{tag}: the vectors in {index_dir(cat)} differ from the catalogue's",
                           f"`iffse index --rebuild --data {cat.root}`")
    return Finding("index", True, f"{tag}: {len(index)} faces, in line with the catalogue")


def check_catalog(data_dir: str | Path, repair: bool = False, progress: bool = True) -> list[Finding]:
    """Check (and with ``repair``, mend) the catalogue in ``data_dir``; returns what was found.

    Without ``repair`` the catalogue is opened read-only and nothing is written.
    """
    try:
        cat = Catalog(data_dir, create=False, readonly=not repair, command="iffse check --repair")
    except IffseError as exc:
        return [Finding("database", False, str(exc), "restore catalog.sqlite from a backup")]
    with cat:
        problems = cat.integrity_problems()
        if problems:
            return [Finding("database", False, "; ".join(problems[:3]), "restore catalog.sqlite from a backup")]
        findings = [Finding("database", True, f"{cat.db_path.name}: integrity_check ok, catalogue {cat.catalog_id}")]
        findings += check_photos(cat, repair, progress)
        for tag in cat.model_tags():
            found, dropped = _vector_findings(cat, tag, repair)
            findings += found
            if dropped:
                findings.append(_recompute(cat, tag, progress))
            finding = _index_finding(cat, tag)
            if repair and (not finding.ok or dropped):
                from .catalog_index import update_index

                update_index(cat, tag, rebuild=True, progress=progress)
                finding = Finding("index", False, f"{tag}: rebuilt ({finding.message})", repaired=True)
            findings.append(finding)
    return findings


def _recompute(cat: Catalog, tag: str, progress: bool) -> Finding:
    """Embed again the faces whose ``tag`` vectors were dropped, from the raw photos and stored landmarks."""
    from .embedders import embedder_for_tag
    from .pipeline import index_photos

    counts = index_photos(cat, embedder_for_tag(tag), detector=None, progress=progress, detect_new=False)
    return Finding("vectors", False, f"{tag}: {counts.get('vectors', 0)} vectors computed again from the raw photos",
                   repaired=True)

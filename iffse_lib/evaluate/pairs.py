"""LFW's pairs files: reading and writing the official format, and making pairs from an LFW folder.

The format (Huang et al. 2007, "View 2"; :func:`read_pairs`): a first line with the number of folds
and the pairs per fold (``10 300``); then, fold by fold, that many same-person lines ``name i j``
followed by as many different-person lines ``name1 i name2 j``. :func:`make_pairs` deals every
same-person pair of a folder, and as many different-person ones, into folds of that format.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PairsFileError

if TYPE_CHECKING:
    import pandas as pd


def lfw_file(name: str, num: int) -> str:
    """LFW's file name of image ``num`` of ``name``: ``Aaron_Eckhart_0001.jpg``."""
    return f"{name}_{int(num):04d}.jpg"


def read_pairs(path: str | Path) -> pd.DataFrame:
    """An LFW pairs file as a DataFrame with columns ``fold, name1, num1, name2, num2, same``.

    Accepts View 2's ``pairs.txt`` (first line ``10 300``: ten folds of 300 same-person then 300
    different-person pairs) and View 1's ``pairsDevTrain.txt`` (first line ``1100``: one fold).
    ``df.attrs`` holds ``n_folds`` and ``per_fold``.
    """
    import pandas as pd

    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise PairsFileError(f"cannot read the pairs file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PairsFileError(f"{path} is not a text file; expected LFW's pairs format (pairs.txt)") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise PairsFileError(f"{path} is empty; expected LFW's pairs format (first line: folds and pairs per fold)")
    try:
        head = [int(v) for v in lines[0]]
    except ValueError:
        raise PairsFileError(f"{path}: the first line must be '<folds> <pairs per fold>' "
                             f"(e.g. '10 300'), not {' '.join(lines[0])!r}") from None
    if len(head) == 1:
        n_folds, per_fold = 1, head[0]
    elif len(head) == 2:
        n_folds, per_fold = head
    else:
        raise PairsFileError(f"{path}: the first line must hold two numbers, folds and pairs per fold")
    if n_folds < 1 or per_fold < 1:
        raise PairsFileError(f"{path}: folds and pairs per fold must be positive, got {n_folds} and {per_fold}")
    expected = 2 * n_folds * per_fold
    body = lines[1:]
    if len(body) != expected:
        raise PairsFileError(f"{path}: the header promises {n_folds} folds x {per_fold} same + {per_fold} "
                             f"different pairs = {expected} lines, but the file has {len(body)}")
    rows = []
    for n, parts in enumerate(body):
        fold, pos = divmod(n, 2 * per_fold)
        same = pos < per_fold
        lineno = n + 2
        try:
            if same and len(parts) == 3:
                rows.append((fold, parts[0], int(parts[1]), parts[0], int(parts[2]), True))
            elif not same and len(parts) == 4:
                rows.append((fold, parts[0], int(parts[1]), parts[2], int(parts[3]), False))
            else:
                want = "'name i j' (a same-person pair)" if same else "'name1 i name2 j' (a different-person pair)"
                raise PairsFileError(f"{path}, line {lineno}: expected {want} at this place of fold {fold + 1}, "
                                     f"got {' '.join(parts)!r}")
        except ValueError:
            raise PairsFileError(f"{path}, line {lineno}: image numbers must be integers: {' '.join(parts)!r}") from None
    df = pd.DataFrame(rows, columns=["fold", "name1", "num1", "name2", "num2", "same"])
    df.attrs.update(n_folds=n_folds, per_fold=per_fold)
    return df


def write_pairs(pairs, path: str | Path) -> Path:
    """Write pairs (a DataFrame like :func:`read_pairs` returns) in the official format."""
    n_folds = int(pairs["fold"].max()) + 1 if len(pairs) else 0
    per_fold = None
    out = []
    for fold in range(n_folds):
        part = pairs[pairs["fold"] == fold]
        same, diff = part[part["same"]], part[~part["same"]]
        if len(same) != len(diff) or (per_fold is not None and len(same) != per_fold):
            raise PairsFileError(f"fold {fold + 1} has {len(same)} same and {len(diff)} different pairs; the "
                                 "official format needs the same number of each in every fold")
        per_fold = len(same)
        out += [f"{r.name1}\t{r.num1}\t{r.num2}" for r in same.itertuples()]
        out += [f"{r.name1}\t{r.num1}\t{r.name2}\t{r.num2}" for r in diff.itertuples()]
    if not per_fold:
        raise PairsFileError("no pairs to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{n_folds}\t{per_fold}\n" + "\n".join(out) + "\n")
    return path


def make_pairs(lfw_dir: str | Path, n_folds: int = 10, seed: int = 0, max_same_per_person: int | None = None,
               max_per_fold: int | None = None) -> pd.DataFrame:
    """Pairs in ten folds from an LFW folder: every same-person pair it holds and as many different ones.

    Same-person pairs: every unordered pair of images of each person (at most
    ``max_same_per_person`` of them per person, drawn at random, when given), shuffled and dealt
    into ``n_folds`` equal folds; the few left over by the division are dropped. Different-person
    pairs, as many: two distinct people drawn uniformly (people with a single image included),
    then one image of each, no pair twice. ``max_per_fold`` caps the pairs of each kind per fold.

    Unlike LFW's own View 2, the folds are not disjoint in people (the A-C subset's Colin Powell
    alone has 27,730 of its 37,547 same-person pairs). Only a threshold is fitted on nine folds, so
    this does not leak anything a model could learn.
    """
    import pandas as pd

    from ..sources.lfw import LFWSource

    if n_folds < 1:
        raise ValueError("n_folds must be >= 1")
    rng = np.random.default_rng(seed)
    people: dict[str, list[int]] = defaultdict(list)
    for rec in LFWSource(lfw_dir):
        people[rec.identity].append(int(rec.meta["image_num"]))
    names = sorted(people)
    same = []
    for name in names:
        nums = sorted(people[name])
        combos = [(name, a, name, b) for i, a in enumerate(nums) for b in nums[i + 1:]]
        if max_same_per_person is not None and len(combos) > max_same_per_person:
            keep = rng.choice(len(combos), max_same_per_person, replace=False)
            combos = [combos[i] for i in sorted(keep)]
        same += combos
    order = rng.permutation(len(same))
    per_fold = len(same) // n_folds
    if max_per_fold is not None:
        per_fold = min(per_fold, max_per_fold)
    if per_fold == 0:
        raise PairsFileError(f"{lfw_dir} holds {len(same)} same-person pairs, too few for {n_folds} folds")
    same = [same[i] for i in order[:per_fold * n_folds]]
    if len(names) < 2:
        raise PairsFileError(f"{lfw_dir} holds fewer than two people; no different-person pairs")
    n_diff = per_fold * n_folds
    n_possible = (sum(len(v) for v in people.values()) ** 2 - sum(len(v) ** 2 for v in people.values())) // 2
    if n_diff > n_possible:
        raise PairsFileError(f"{lfw_dir} allows only {n_possible} different-person pairs, {n_diff} needed")
    nums_of = [np.array(sorted(people[n])) for n in names]
    sizes = np.array([len(v) for v in nums_of])
    diff, seen = [], set()
    while len(diff) < n_diff:
        # Draw in batches (vectorised); keep the draws in order, dropping repeats.
        m = 2 * (n_diff - len(diff)) + 16
        a = rng.integers(0, len(names), m)
        b = (a + rng.integers(1, len(names), m)) % len(names)  # uniform over the other people
        ia = (rng.random(m) * sizes[a]).astype(int)
        ib = (rng.random(m) * sizes[b]).astype(int)
        for pa, pb, xa, xb in zip(a.tolist(), b.tolist(), ia.tolist(), ib.tolist()):
            na, nb = names[pa], names[pb]
            ja, jb = int(nums_of[pa][xa]), int(nums_of[pb][xb])
            key = (na, ja, nb, jb) if (na, ja) < (nb, jb) else (nb, jb, na, ja)
            if key in seen:
                continue
            seen.add(key)
            diff.append((na, ja, nb, jb))
            if len(diff) == n_diff:
                break
    rows = []
    for fold in range(n_folds):
        rows += [(fold, *p, True) for p in same[fold * per_fold:(fold + 1) * per_fold]]
        rows += [(fold, *p, False) for p in diff[fold * per_fold:(fold + 1) * per_fold]]
    df = pd.DataFrame(rows, columns=["fold", "name1", "num1", "name2", "num2", "same"])
    df.attrs.update(n_folds=n_folds, per_fold=per_fold)
    return df

"""How good the vectors and the search are, in the terms the field uses.

- :mod:`.pairs`: LFW's pairs files (read, write, make from an LFW folder).
- :mod:`.lfw_vectors`: one vector per LFW photo, through the pipeline's own steps, with the
  fixed central box for photos whose subject the detector misses.
- :mod:`.verification`: LFW verification, the ten-fold protocol (:func:`~.verification.evaluate_lfw_pairs`,
  :class:`~.verification.LFWResult`).
- :mod:`.retrieval`: precision@k and mAP of exact search and of the index
  (:func:`~.retrieval.evaluate_retrieval`).

Import each name from the module that holds it (``from iffse_lib.evaluate.pairs import read_pairs``);
this package itself holds only :func:`output_dir`, where evaluation files go.
"""

from __future__ import annotations

from pathlib import Path


def output_dir(out_dir: str | Path | None, catalog) -> Path:
    """Where evaluation files go: ``out_dir`` if given, else ``<catalogue>/evaluation`` (made)."""
    path = Path(out_dir) if out_dir is not None else Path(catalog.root) / "evaluation"
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Compare two faces in a widget: pick any two catalogued faces by name and see
:func:`iffse_lib.plots_compare.comparison` (chips, landmarks, distance against the threshold and
among same/different-person distances), with the occlusion map ("why they match") on request.

For scripts and tests: :meth:`FaceCompare.compare`, ``comparison`` (the last
:class:`~iffse_lib.compare.Comparison`), ``message_text`` and ``seconds`` (the last response time).
"""

from __future__ import annotations

import logging
import time

from . import config
from .widgets import _ERROR, _INFO, _View, _label, _message_html

log = logging.getLogger(__name__)


class FaceCompare(_View):
    """Two face pickers (Comboboxes of every face, by name), a threshold slider and an
    "occlusion map" checkbox; the comparison is drawn as a PNG below."""

    def __init__(self, catalog, embedder=None, threshold: float = config.DEFAULT_THRESHOLD,
                 occlusion_patch: int = 30, seed: int = 0):
        import ipywidgets as w

        from . import reduce
        from .embedders import get_embedder

        self.catalog = catalog
        self.embedder = embedder or get_embedder()
        self.occlusion_patch = occlusion_patch
        faces = catalog.faces(self.embedder.model_tag)
        faces = faces.assign(_unlabelled=faces["identity"].isna()).sort_values(
            ["_unlabelled", "identity", "photo_id", "idx"])
        self.face_labels = {_label(r): int(r["face_id"]) for _, r in faces.iterrows()}
        self._names = {int(f): i if isinstance(i, str) else f"face {f}" for f, i in zip(faces["face_id"], faces["identity"])}
        ids, vectors = catalog.vectors(self.embedder.model_tag)
        labels = faces.set_index("face_id").loc[ids, "identity"].to_numpy()
        #: same-person and different-person distances of the catalogue, to place a comparison among
        self.same, self.different = reduce.pair_distances(vectors, labels, seed=seed)
        self.comparison = None
        self.seconds: float | None = None
        picker = dict(options=list(self.face_labels), ensure_option=True, layout=w.Layout(width="420px"),
                      placeholder="type a name")
        self.pick_a = w.Combobox(description="face A", **picker)
        self.pick_b = w.Combobox(description="face B", **picker)
        self.threshold = w.FloatSlider(value=threshold, min=0.2, max=1.2, step=0.02, description="threshold",
                                       continuous_update=False, readout_format=".2f")
        self.occlusion = w.Checkbox(value=False, description="why they match (occlusion map)", indent=False)
        self.message = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width="1100px", display="none"))
        for control in (self.pick_a, self.pick_b, self.threshold, self.occlusion):
            control.observe(lambda ch: self._update(), names="value")
        self.widget = w.VBox([self.pick_a, self.pick_b, w.HBox([self.threshold, self.occlusion]),
                              self.message, self.image])
        self.widget.add_class("iffse-compare")

    @property
    def message_text(self) -> str:
        import html
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.message.value)).strip()

    def compare(self, face_a: int, face_b: int) -> None:
        """Draw the comparison of two catalogued faces (what picking them does)."""
        from . import compare, plots, plots_compare

        t = time.perf_counter()
        try:
            cmp = compare.compare_faces(self.catalog, face_a, face_b, stored=True, labels=self._names,
                                        embedder=self.embedder,
                                        threshold=self.threshold.value,
                                        occlusion_patch=self.occlusion_patch if self.occlusion.value else None,
                                        same=self.same, different=self.different)
            fig = plots_compare.comparison(cmp, self.same, self.different)
            self.image.value = plots.to_png(fig, dpi=80)
        except Exception as exc:  # never a traceback in the widget
            log.exception("comparison failed")
            self.message.value = _message_html(f"Cannot compare these faces: {type(exc).__name__}: {exc}", _ERROR)
            return
        self.comparison = cmp
        self.image.layout.display = None
        self.seconds = time.perf_counter() - t
        self.message.value = _message_html(cmp.summary() + ".", _INFO)

    def _update(self) -> None:
        a, b = self.face_labels.get(self.pick_a.value), self.face_labels.get(self.pick_b.value)
        if a is not None and b is not None:
            self.compare(a, b)


def face_compare(catalog, **kwargs) -> FaceCompare:
    """A :class:`FaceCompare` over ``catalog``'s faces."""
    return FaceCompare(catalog, **kwargs)

"""Compare two faces in a widget: pick any two catalogued faces by name, or upload a photo for
either side (its largest face is used), and see
:func:`iffse_lib.plots_compare.comparison` (chips, landmarks, distance against the threshold and
among same/different-person distances), with the occlusion map ("why they match") on request.

For scripts and tests: :meth:`FaceCompare.compare` (a face id or a photo's bytes for each side),
``comparison`` (the last
:class:`~iffse_lib.compare.Comparison`), ``message_text`` and ``seconds`` (the last response time).

Nothing is computed twice: the widget keeps its recent faces (:class:`~iffse_lib.compare.FaceSide`:
photo, chip, stored vector, the greyed copies' vectors once the occlusion map has been on) and
one :class:`~iffse_lib.plots_compare.ComparisonFigure` with the occlusion map and one without, so
that picking another face B embeds B's copies only, and moving the threshold embeds nothing.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import time

from . import config
from .widgets import _ERROR, _INFO, _View, _label, _message_html

log = logging.getLogger(__name__)


class FaceCompare(_View):
    """Two face pickers (Comboboxes of every face, by name), each with an upload button for a
    photo from outside the catalogue, a threshold slider and an "occlusion map" checkbox; the
    comparison is drawn as a PNG below."""

    #: faces kept with what was computed for them (a catalogued face, or an uploaded photo's)
    KEEP_SIDES = 32

    def __init__(self, catalog, embedder=None, threshold: float = config.DEFAULT_THRESHOLD,
                 occlusion_patch: int = 30, seed: int = 0):
        import ipywidgets as w

        from . import reduce
        from .embedders import query_embedder

        self.catalog = catalog
        self.embedder = embedder or query_embedder()
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
        self._sides: collections.OrderedDict = collections.OrderedDict()
        self._figures: dict = {}  # occlusion map on / off -> ComparisonFigure
        picker = dict(options=list(self.face_labels), ensure_option=True, layout=w.Layout(width="420px"),
                      placeholder="type a name")
        self.pick_a = w.Combobox(description="face A", **picker)
        self.pick_b = w.Combobox(description="face B", **picker)
        upload = dict(accept="image/*", multiple=False, layout=w.Layout(width="210px"))
        self.upload_a = w.FileUpload(description="or upload photo A", **upload)
        self.upload_b = w.FileUpload(description="or upload photo B", **upload)
        #: an uploaded photo's bytes per side; it replaces that side's picked face until one is picked
        self._uploaded: dict[str, bytes | None] = {"a": None, "b": None}
        self._detector = None
        self.threshold = w.FloatSlider(value=threshold, min=0.2, max=1.2, step=0.02, description="threshold",
                                       continuous_update=False, readout_format=".2f")
        self.occlusion = w.Checkbox(value=False, description="why they match (occlusion map)", indent=False)
        self.message = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width="1100px", display="none"))
        for control in (self.threshold, self.occlusion):
            control.observe(lambda ch: self._update(), names="value")
        self.pick_a.observe(lambda ch: self._on_pick("a"), names="value")
        self.pick_b.observe(lambda ch: self._on_pick("b"), names="value")
        self.upload_a.observe(lambda ch: self._on_upload("a", ch["new"]), names="value")
        self.upload_b.observe(lambda ch: self._on_upload("b", ch["new"]), names="value")
        self.widget = w.VBox([w.HBox([self.pick_a, self.upload_a]), w.HBox([self.pick_b, self.upload_b]),
                              w.HBox([self.threshold, self.occlusion]), self.message, self.image])
        self.widget.add_class("iffse-compare")

    @property
    def message_text(self) -> str:
        import html
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.message.value)).strip()

    def compare(self, face_a: int | bytes, face_b: int | bytes) -> None:
        """Draw the comparison of two faces (what picking or uploading them does): each a
        catalogued face's id, or a photo's bytes (its largest face)."""
        from . import compare, plots_compare

        t = time.perf_counter()
        occlusion = self.occlusion.value
        try:
            cmp = compare.compare(self._side(face_a, "A"), self._side(face_b, "B"), embedder=self.embedder,
                                  threshold=self.threshold.value,
                                  occlusion_patch=self.occlusion_patch if occlusion else None,
                                  same=self.same, different=self.different)
            if occlusion not in self._figures:
                self._figures[occlusion] = plots_compare.ComparisonFigure(self.same, self.different, occlusion)
            figure = self._figures[occlusion]
            figure.show(cmp)
            self.image.value = figure.png(dpi=80)
        except Exception as exc:  # never a traceback in the widget
            log.exception("comparison failed")
            self.message.value = _message_html(f"Cannot compare these faces: {type(exc).__name__}: {exc}", _ERROR)
            return
        self.comparison = cmp
        self.image.layout.display = None
        self.seconds = time.perf_counter() - t
        self.message.value = _message_html(cmp.summary() + ".", _INFO)

    def _side(self, face: int | bytes, which: str):
        """The face of one side, kept (with its vectors) for the next comparisons."""
        from . import compare

        upload = isinstance(face, (bytes, bytearray, memoryview))
        key = ("upload", which, hashlib.sha256(bytes(face)).hexdigest()) if upload else int(face)
        if key in self._sides:
            self._sides.move_to_end(key)
            return self._sides[key]
        if upload:
            if self._detector is None:  # cut as the catalogue's faces were cut
                from .faces import default_detector
                from .search import catalog_detector

                self._detector = catalog_detector(self.catalog) or default_detector()
            side = compare.photo_side(bytes(face), f"uploaded photo {which}", self._detector)
        else:
            side = compare.side(self.catalog, int(face), self._names.get(int(face)), self.embedder.model_tag)
        self._sides[key] = side
        while len(self._sides) > self.KEEP_SIDES:
            self._sides.popitem(last=False)
        return side

    def _choice(self, which: str) -> int | bytes | None:
        if self._uploaded[which] is not None:
            return self._uploaded[which]
        return self.face_labels.get((self.pick_a if which == "a" else self.pick_b).value)

    def _on_pick(self, which: str) -> None:
        if (self.pick_a if which == "a" else self.pick_b).value:
            self._uploaded[which] = None  # a picked face replaces an uploaded photo
        self._update()

    def _on_upload(self, which: str, files) -> None:
        if not files:
            return
        self._uploaded[which] = bytes(files[0]["content"])
        self._update()

    def _update(self) -> None:
        a, b = self._choice("a"), self._choice("b")
        if a is not None and b is not None:
            self.compare(a, b)


def face_compare(catalog, **kwargs) -> FaceCompare:
    """A :class:`FaceCompare` over ``catalog``'s faces."""
    return FaceCompare(catalog, **kwargs)

"""ipywidgets views built on the library: a landmark browser and the lookalike search.

Both are plain objects holding their widgets; show them by leaving one as a cell's last value
(they display their ``widget``). Callbacks never let an exception escape into the notebook:
a bad upload, a photo without a face or an unexpected error becomes a message in the widget.
"""

from __future__ import annotations

import html
import io
import logging
from typing import Any

import numpy as np

from . import config
from .errors import BadImage, IffseError, NoFaceFound

log = logging.getLogger(__name__)

#: Colours for messages in the widgets.
_INFO, _WARN, _ERROR = "#31708f", "#8a6d3b", "#a94442"
#: Result colours when the query's identity is known: the same person, someone else.
_SAME, _DIFFERENT = "#009E73", "#D55E00"


def pd_objects(values):
    """A list as an object-dtype column (keeps None and booleans apart)."""
    import pandas as pd

    return pd.Series(values, dtype=object).to_numpy()


def _jpeg(image: np.ndarray, quality: int = 88) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _message_html(text: str, colour: str = _INFO) -> str:
    if not text:
        return ""
    return (f'<div class="iffse-message" style="color:{colour};border-left:4px solid {colour};'
            f'padding:4px 8px;margin:4px 0">{html.escape(text)}</div>')


class _View:
    widget: Any

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# -- landmark browser ---------------------------------------------------------------------------

class LandmarkBrowser(_View):
    """Step through photos (slider, or a dropdown by person) and redraw the landmark view.

    Faces already in the catalogue are drawn from it; photos not yet detected are detected on
    the spot, by ``detector`` (default: the detector that found most of the catalogue's faces,
    else :func:`~iffse_lib.faces.default_detector`). A checkbox switches to the alignment steps
    of the photo's largest face. ``browser.show(i)`` draws the i-th photo; the image widget
    holds the figure as PNG.
    """

    def __init__(self, catalog, photos=None, alignment: bool = False, max_photos: int | None = None,
                 detector=None):
        import ipywidgets as w

        from . import faces

        self.catalog = catalog
        if detector is None:
            tag = catalog.main_detector()
            detector = faces.FaceDetector.from_tag(tag) if tag else faces.default_detector()
        self.detector = detector
        photos = catalog.photos() if photos is None else photos
        if max_photos is not None:
            photos = photos.head(max_photos)
        self.photos = photos.reset_index(drop=True)
        if self.photos.empty:
            raise IffseError(f"no photos in {catalog.root}; collect some first (notebook 01, or `iffse collect folder DIR`)")
        self._faces: dict[int, list] = {}
        # Slider and dropdown both count photos from 1 (show(i) takes the 0-based position).
        labels = [f"{i + 1}. {_photo_label(r)}" for i, r in self.photos.iterrows()]
        self.slider = w.IntSlider(value=1, min=1, max=len(self.photos), description="photo",
                                  continuous_update=False, layout=w.Layout(width="420px"))
        self.dropdown = w.Dropdown(options=list(zip(labels, range(1, len(labels) + 1))), value=1,
                                   description="or pick", layout=w.Layout(width="420px"))
        self.toggle = w.Checkbox(value=alignment, description="alignment steps", indent=False)
        self.image = w.Image(format="png", layout=w.Layout(max_width="900px"))
        self.message = w.HTML()
        w.link((self.slider, "value"), (self.dropdown, "value"))
        self.slider.observe(lambda ch: self.show(ch["new"] - 1), names="value")
        self.toggle.observe(lambda ch: self.show(self.slider.value - 1), names="value")
        self.widget = w.VBox([w.HBox([self.slider, self.toggle]), self.dropdown, self.message, self.image])
        self.show(0)

    def faces_of(self, i: int, image: np.ndarray) -> list:
        """The faces of the i-th photo: from the catalogue if detected there, else detected now."""
        row = self.photos.iloc[int(i)]
        pid = int(row["photo_id"])
        if pid not in self._faces:
            stored = self.catalog.faces_of_photo(pid)
            detected = row.get("n_faces")
            if stored or (detected is not None and detected == detected):  # n_faces not NaN: detected
                self._faces[pid] = stored
            else:
                self._faces[pid] = self.detector.detect(image)
        return self._faces[pid]

    def show(self, i: int) -> None:
        from . import plots
        from .images import load_image

        if self.slider.value != i + 1:
            self.slider.value = i + 1  # the observer calls show again
            return
        row = self.photos.iloc[int(i)]
        try:
            image = load_image(row["path"])
            found = self.faces_of(i, image)
            if not found:  # the photo at its own size (100 px an inch), not enlarged
                fig = plots.landmarks(image, [], title=f"no face found: {_photo_label(row)}",
                                      width=max(3.0, min(7.5, image.shape[1] / 100)))
            elif self.toggle.value:
                fig = plots.alignment_steps(image, found[0].landmarks, found[0].box, title=_photo_label(row))
            else:
                fig = plots.landmarks(image, found, title=_photo_label(row))
            self.image.value = plots.to_png(fig)
            self.message.value = ""
        except Exception as exc:  # never a traceback in the widget
            log.exception("landmark view failed")
            self.message.value = _message_html(f"Cannot draw this photo: {exc}", _ERROR)


def _name(row, n: int = 40) -> str:
    from .plots import display_name

    ident = row.get("identity")
    return display_name(ident if isinstance(ident, str) else str(row.get("source_id", "?")), n)


def _photo_label(row) -> str:
    return f"{_name(row)} (photo {row['photo_id']})"


def _label(row) -> str:
    ident = row.get("identity")
    name = _name(row) if isinstance(ident, str) else f"unlabelled face in {_name(row)}"
    return f"{name} (photo {row['photo_id']}, face {int(row.get('idx', 0)) + 1})"


# -- lookalike search ---------------------------------------------------------------------------

class LookalikeSearch(_View):
    """Upload a photo, or pick a catalogued face; see the nearest faces as a grid of thumbnails.

    The k and threshold sliders filter the last search without searching again (it fetched
    ``k_max`` neighbours). A photo with several faces shows them numbered, with buttons to choose
    which to search for. Bad files, photos without a face and errors become a message.

    For scripts and tests: :meth:`search_bytes`, :meth:`search_face`, :meth:`choose_face`,
    ``results`` (the matches on show), ``message_text`` and ``thumbnails``.
    """

    #: the query photo's preview, longest side in pixels
    QUERY_PX = 480

    def __init__(self, catalog, searcher=None, k: int = config.DEFAULT_K,
                 threshold: float = config.DEFAULT_THRESHOLD, k_max: int = 30, thumb_px: int = 112):
        import ipywidgets as w

        from .search import Searcher

        self.catalog = catalog
        self.searcher = searcher or Searcher(catalog)
        self.k_max = max(k_max, k)
        self.thumb_px = thumb_px
        self._found: list = []          # one DataFrame per face of the query
        self._query_image: np.ndarray | None = None
        self._face = 0
        self._query_name = "the photo"
        self.results = None

        self.upload = w.FileUpload(accept="image/*", multiple=False, description="Upload a photo",
                                   layout=w.Layout(width="190px"))
        faces = catalog.faces(self.searcher.index.model_tag)
        faces = faces.assign(_unlabelled=faces["identity"].isna()).sort_values(
            ["_unlabelled", "identity", "photo_id", "idx"])
        #: face label as shown in the picker -> face id (labels are unique: photo and face number)
        self.face_labels = {_label(r): int(r["face_id"]) for _, r in faces.iterrows()}
        #: face id -> the face's identity (None: unlabelled), for the results and their colours
        self.face_identity = {int(f): (i if isinstance(i, str) else None) for f, i in zip(faces["face_id"], faces["identity"])}
        self._query_identity: str | None = None
        self._sources: dict | None = None
        self.pick = w.Combobox(options=list(self.face_labels), value="", ensure_option=True,
                               placeholder=f"or type a name: {len(self.face_labels):,} faces", description="or pick",
                               layout=w.Layout(width="460px"))
        self.k = w.IntSlider(value=k, min=1, max=self.k_max, description="k", continuous_update=False)
        self.threshold = w.FloatSlider(value=threshold, min=0.2, max=1.2, step=0.02, description="max distance",
                                       continuous_update=False, readout_format=".2f",
                                       style={"description_width": "initial"})
        self.face_choice = w.ToggleButtons(options=[], description="face", layout=w.Layout(display="none"))
        self.message = w.HTML()
        self.query_view = w.Image(format="jpeg", layout=w.Layout(max_width=f"{self.QUERY_PX}px", display="none"))
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns=f"repeat(auto-fill, {thumb_px + 16}px)",
                                              grid_gap="6px"))
        self.grid.add_class("iffse-results")
        self.export = w.HTML()  # a link that downloads the results as CSV

        self.upload.observe(self._on_upload, names="value")
        self.pick.observe(self._on_pick, names="value")
        self.k.observe(lambda ch: self._render(), names="value")
        self.threshold.observe(lambda ch: self._render(), names="value")
        self.face_choice.observe(self._on_face_choice, names="value")
        self.widget = w.VBox([
            w.HBox([self.upload, self.pick]),
            w.HBox([self.k, self.threshold]),
            self.face_choice, self.message, self.query_view, self.grid, self.export,
        ])
        self.widget.add_class("iffse-lookalikes")

    # -- public -------------------------------------------------------------------------------
    @property
    def message_text(self) -> str:
        """The message on show, as plain text ('' when none)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.message.value)).strip()

    @property
    def thumbnails(self) -> list:
        """The result cells on show: (image widget, label widget) pairs."""
        return [(cell.children[0], cell.children[1]) for cell in self.grid.children]

    def search_bytes(self, data: bytes, name: str = "upload") -> None:
        """Search with an encoded photo (what the upload button does)."""
        from .images import load_image

        self._clear()
        try:
            image = load_image(bytes(data))
            found = self.searcher.search_image(image, k=self.k_max)
        except BadImage as exc:
            self._say(f"{name} is not a photo iffse can read ({exc.kind}): {exc}", _ERROR)
            return
        except NoFaceFound as exc:
            self._say(f"No face found in {name}. The catalogue's detector ({self.searcher.detector.tag}) finds "
                      f"{exc.finds or self.searcher.detector.finds()}; try a closer or more frontal photo.", _WARN)
            return
        except Exception as exc:  # never a traceback in the widget
            log.exception("search failed")
            self._say(f"The search failed: {type(exc).__name__}: {exc}", _ERROR)
            return
        self._query_image = image
        self._found = found
        if len(found) > 1:
            self.face_choice.unobserve(self._on_face_choice, names="value")
            self.face_choice.options = [(f"{i + 1}", i) for i in range(len(found))]
            self.face_choice.value = 0
            self.face_choice.observe(self._on_face_choice, names="value")
            self.face_choice.layout.display = None
        self._query_name = name
        self._face = 0
        self._say_faces()
        self._show_query()
        self._render()

    def search_face(self, face_id: int) -> None:
        """Search with a catalogued face (what picking one in the dropdown does)."""
        from .images import load_image

        self._clear()
        try:
            df = self.searcher.search_face(int(face_id), k=self.k_max)
            face = self.catalog.face(int(face_id))
            image = load_image(self.catalog.photo_path(face.photo_id))
        except Exception as exc:  # never a traceback in the widget
            log.exception("search failed")
            self._say(f"The search failed: {type(exc).__name__}: {exc}", _ERROR)
            return
        df.attrs["query_box"] = face.box
        self._query_identity = self.face_identity.get(int(face_id))
        self._query_image = image
        self._found = [df]
        self._face = 0
        self._show_query()
        self._render()

    def choose_face(self, i: int) -> None:
        """Show the matches of the query photo's i-th face (0: the largest)."""
        if not 0 <= i < len(self._found):
            self._say(f"There is no face {i + 1}; the photo has {len(self._found)}.", _ERROR)
            return
        self._face = i
        if self.face_choice.options and self.face_choice.value != i:
            self.face_choice.value = i
        self._say_faces()
        self._show_query()
        self._render()

    def to_csv(self, path) -> None:
        """Write the results on show as CSV (what the export link downloads)."""
        if self.results is None:
            raise IffseError("no results to export: search first")
        self.results.to_csv(path, index=False)

    # -- internals ----------------------------------------------------------------------------
    def _with_sources(self, df):
        """The matches with the face's own identity, whether it is the query's person (``same``:
        None when either is unknown), and where each came from: ``source`` (kind:id),
        ``photo_url`` (the stored photo) and ``source_url`` (the Instagram post, else the photo)."""
        from pathlib import Path

        if self._sources is None:
            photos = self.catalog.photos()
            self._sources = {int(r.photo_id): (r.source_kind, r.source_id, r.shortcode)
                             for r in photos[["photo_id", "source_kind", "source_id", "shortcode"]].itertuples()}
        df = df.copy()
        df["identity"] = [self.face_identity.get(int(f)) for f in df["face_id"]]
        q = self._query_identity
        df["same"] = pd_objects([None if q is None or i is None else i == q for i in df["identity"]])
        info = [self._sources.get(int(p), ("?", "?", None)) for p in df["photo_id"]]
        df["source"] = [f"{k}:{sid}" for k, sid, _ in info]
        df["photo_url"] = [Path(p).resolve().as_uri() for p in df["path"]]
        df["source_url"] = [f"https://www.instagram.com/p/{code}/" if isinstance(code, str) and code else url
                            for (_, _, code), url in zip(info, df["photo_url"])]
        return df

    # -- events -------------------------------------------------------------------------------
    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0]
        self.pick.unobserve(self._on_pick, names="value")
        self.pick.value = ""
        self.pick.observe(self._on_pick, names="value")
        self.search_bytes(bytes(f["content"]), f.get("name", "upload"))

    def _on_pick(self, change) -> None:
        face_id = self.face_labels.get(change["new"])
        if face_id is not None:
            self.search_face(face_id)

    def _faces_note(self) -> str:
        """Which face of a photo with several is on show ('' for one face)."""
        if len(self._found) <= 1:
            return ""
        return (f"{len(self._found)} faces in {self._query_name}, numbered largest first; showing face "
                f"{self._face + 1}. ")

    def _say_faces(self) -> None:
        if len(self._found) > 1:
            self._say(self._faces_note() + "Choose another with the buttons above.", _INFO)

    def _on_face_choice(self, change) -> None:
        if change["new"] is not None:
            self.choose_face(int(change["new"]))

    def _say(self, text: str, colour: str = _INFO) -> None:
        self.message.value = _message_html(text, colour)

    def _clear(self) -> None:
        self._query_identity = None
        self.export.value = ""
        self._found = []
        self._query_image = None
        self.results = None
        self.grid.children = ()
        self.message.value = ""
        self.query_view.layout.display = "none"
        self.face_choice.layout.display = "none"
        self.face_choice.unobserve(self._on_face_choice, names="value")
        self.face_choice.options = []
        self.face_choice.observe(self._on_face_choice, names="value")

    def _show_query(self) -> None:
        from PIL import Image, ImageDraw

        if self._query_image is None:
            return
        im = Image.fromarray(self._query_image)
        scale = min(1.0, self.QUERY_PX / max(im.size))
        if scale < 1:
            im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
        draw = ImageDraw.Draw(im)
        for i, df in enumerate(self._found):
            b = df.attrs.get("query_box")
            if b is None:
                continue
            rect = [b.left * scale, b.top * scale, b.right * scale, b.bottom * scale]
            chosen = i == self._face
            draw.rectangle(rect, outline=(0, 158, 115) if chosen else (240, 228, 66), width=3 if chosen else 2)
            if len(self._found) > 1:
                draw.rectangle([rect[0], rect[1], rect[0] + 14, rect[1] + 14], fill=(0, 0, 0))
                draw.text((rect[0] + 4, rect[1] + 1), str(i + 1), fill=(255, 255, 255))
        self.query_view.value = _jpeg(np.asarray(im))
        self.query_view.layout.display = None

    def _render(self) -> None:
        import ipywidgets as w

        from . import plots

        if not self._found:
            return
        df = self._found[self._face]
        shown = self._with_sources(df[df["distance"] <= self.threshold.value].head(self.k.value).reset_index(drop=True))
        self.results = shown
        self.export.value = _csv_link(shown) if len(shown) else ""
        cells = []
        try:
            for _, m in shown.iterrows():
                thumb = plots.face_crop(m["path"], m, size=self.thumb_px, margin=0.15)
                ident = plots.display_name(m["identity"], 22)
                img = w.Image(value=_jpeg(thumb), format="jpeg", width=self.thumb_px, height=self.thumb_px)
                img.add_class("iffse-thumb")
                colour = {True: _SAME, False: _DIFFERENT}.get(m["same"], "transparent")
                label = w.HTML(f'<div style="font-size:11px;line-height:1.2;width:{self.thumb_px}px;'
                               f'border-left:4px solid {colour};padding-left:3px">'
                               f'<b>{int(m["rank"])}.</b> {m["distance"]:.3f}<br>{html.escape(ident)}<br>'
                               f'<a href="{html.escape(m["photo_url"])}" target="_blank">photo</a> · '
                               f'<a href="{html.escape(m["source_url"])}" target="_blank" '
                               f'title="{html.escape(m["source"])}">source</a></div>')
                cells.append(w.VBox([img, label], layout=w.Layout(width=f"{self.thumb_px + 12}px")))
        except Exception as exc:  # a catalogued photo that vanished, say
            log.exception("drawing results failed")
            self._say(f"Cannot draw the results: {type(exc).__name__}: {exc}", _ERROR)
        self.grid.children = tuple(cells)
        if shown.empty:
            nearest = df["distance"].min() if len(df) else float("nan")
            self._say(f"{self._faces_note()}No catalogued face within distance {self.threshold.value:.2f} (the nearest is "
                      f"{nearest:.3f}); raise the max distance to see more.", _WARN)
        elif len(self._found) <= 1:
            self._say(f"{len(shown)} match{'es' if len(shown) != 1 else ''} within distance "
                      f"{self.threshold.value:.2f}, nearest first.", _INFO)


def _csv_link(df, name: str = "lookalikes.csv") -> str:
    import base64

    data = base64.b64encode(df.to_csv(index=False).encode()).decode()
    return (f'<a class="iffse-csv" download="{name}" href="data:text/csv;base64,{data}">'
            f'Export these {len(df)} results as CSV</a>')

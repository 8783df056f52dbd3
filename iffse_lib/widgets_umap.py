"""The UMAP map you can point at (notebook 04): hover over a face to see it, click it to search
for its lookalikes, draw a lasso or a box to select faces.

The map is a matplotlib figure drawn on ipympl's canvas (the widget ``%matplotlib widget`` uses),
so the mouse reaches it in JupyterLab. Without ipympl, or outside a kernel (scripts, tests), the
same object draws a static PNG and works through its Python API: :meth:`UmapExplorer.hover_at`,
:meth:`~UmapExplorer.click_at` and :meth:`~UmapExplorer.select_polygon` take data coordinates and
run the handlers the mouse runs; ``hovered``, ``hover_text``, ``picked`` and ``selection`` hold
what they found.

Points are found in display space (pixels), where the pointer is: the points' pixel positions are
computed once per view (zooming or resizing recomputes them) and each hover is one vectorised
nearest-point search, well under a millisecond for 10,000 faces.
"""

from __future__ import annotations

import html
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .errors import DependencyMissing, IffseError
from .widgets import _ERROR, _View, _jpeg, _message_html

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: the tools of the mouse's left button (hover works with each)
TOOLS = {"click: search": "click", "lasso": "lasso", "box": "box"}
_PICKED, _SELECTED = "#D55E00", "#000000"


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _attach_canvas(fig, interactive: bool | None) -> bool:
    """Give ``fig`` ipympl's widget canvas (True) or Agg's (False, a static PNG).

    ``interactive=None``: ipympl's when it imports and a Jupyter kernel runs this code.
    """
    if interactive is None:
        interactive = _in_kernel()
        quiet = True
    else:
        quiet = not interactive
    if interactive:
        try:
            from ipympl.backend_nbagg import Canvas, FigureManager
        except ImportError as exc:
            if not quiet:
                raise DependencyMissing("the interactive map needs ipympl: `pip install ipympl` "
                                        "(it is in requirements.txt), then restart the kernel") from exc
            log.info("ipympl is not installed: the UMAP map is a static image")
        else:
            canvas = Canvas(fig)
            FigureManager(canvas, 0)  # the webagg protocol goes through a manager; pyplot never sees it
            canvas.header_visible = False
            canvas.toolbar_position = "left"
            canvas.layout.min_width = f"{fig.get_figwidth() * fig.dpi:.0f}px"
            return True
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return False


class UmapExplorer(_View):
    """The 2-D map of the face vectors with a side panel.

    ``embedding``: (n, 2) UMAP coordinates; ``faces``: n rows of :meth:`Catalog.faces` in the same
    order (face_id, path and box columns); ``identities``: n names (None: unlabelled); ``labels``:
    n cluster labels, or None. ``on_pick(face_id)`` runs when a face is clicked; ``below``: a
    widget shown under the map (the lookalike search, in :func:`umap_explorer`).
    ``pick_radius``: how near the pointer must come to a point, in points (1/72 inch).
    """

    def __init__(self, embedding, faces, identities: Sequence, labels: Sequence | None = None,
                 on_pick: Callable[[int], None] | None = None, below=None, top: int = 10,
                 thumb_px: int = 160, pick_radius: float = 6.0, interactive: bool | None = None):
        import ipywidgets as w
        import pandas as pd
        from matplotlib.widgets import LassoSelector, RectangleSelector

        from . import plots

        xy = np.asarray(embedding, dtype=np.float64)
        faces = faces.reset_index(drop=True)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise IffseError(f"the embedding must be (n, 2) map coordinates, not {xy.shape}: use reduce.umap_2d")
        n = len(xy)
        if len(faces) != n or len(identities) != n or (labels is not None and len(labels) != n):
            raise IffseError(f"{n} map points but {len(faces)} faces, {len(identities)} identities"
                             + ("" if labels is None else f" and {len(labels)} cluster labels")
                             + ": pass them in the order of the embedding")
        self.xy = xy
        self.faces = faces
        self.on_pick = on_pick
        self.thumb_px = thumb_px
        self.pick_radius = pick_radius
        #: one row a face: face_id, identity, cluster (-1 without labels), path, x, y
        self.points = pd.DataFrame({
            "face_id": faces["face_id"].astype(int).to_numpy(),
            "identity": pd.Series(list(identities), dtype=object).where(lambda s: s.map(lambda v: isinstance(v, str)), None),
            "cluster": np.full(n, -1) if labels is None else np.asarray(labels).astype(int),
            "path": faces["path"].to_numpy(),
            "x": xy[:, 0], "y": xy[:, 1],
        })
        self._has_clusters = labels is not None
        self._sizes = self.points["cluster"].value_counts().to_dict()
        self._thumbs: OrderedDict[int, bytes] = OrderedDict()
        self._display_key = None
        self._display_xy = np.empty((0, 2))
        #: what the last hover found (a face id, or None), what the last click picked, the selection
        self.hovered: int | None = None
        self.picked: int | None = None
        self.selection = self.points.iloc[:0].copy()

        self.figure = plots.umap_scatter(xy, identities, top=top, title=f"UMAP of {n:,} faces")
        self.ax = self.figure.axes[0]
        self.interactive = _attach_canvas(self.figure, interactive)
        self.canvas = self.figure.canvas
        self._selected_artist = self.ax.scatter([], [], s=36, facecolors="none", edgecolors=_SELECTED,
                                                linewidths=0.9, zorder=4)
        self._picked_artist = self.ax.scatter([], [], s=160, facecolors="none", edgecolors=_PICKED,
                                              linewidths=2.2, zorder=5)
        self._lasso = LassoSelector(self.ax, lambda verts: self.select_polygon(verts),
                                    props={"color": _PICKED, "linewidth": 1.5}, button=1)
        self._box = RectangleSelector(self.ax, lambda press, release: self.select_box(
            press.xdata, press.ydata, release.xdata, release.ydata),
            props={"facecolor": _PICKED, "alpha": 0.15, "edgecolor": _PICKED}, button=1, minspanx=0, minspany=0)
        self.canvas.mpl_connect("motion_notify_event", self._on_motion)
        self.canvas.mpl_connect("axes_leave_event", lambda event: self._show_hover(None))
        self.canvas.mpl_connect("button_press_event", self._on_press)

        self.tool = w.ToggleButtons(options=list(TOOLS), value="click: search", description="left button",
                                    style={"description_width": "initial"})
        self.tool.observe(lambda ch: self._set_tool(TOOLS[ch["new"]]), names="value")
        self.clear = w.Button(description="clear selection", layout=w.Layout(width="130px"))
        self.clear.on_click(lambda _: self.clear_selection())
        self.thumb = w.Image(format="jpeg", width=thumb_px, height=thumb_px, layout=w.Layout(display="none"))
        self.hover_info = w.HTML()
        self.hover_info.add_class("iffse-umap-hover")
        self.selection_info = w.HTML()
        self.selection_info.add_class("iffse-umap-selection")
        self.message = w.HTML()
        side = w.VBox([self.thumb, self.hover_info, self.selection_info],
                      layout=w.Layout(width=f"{max(thumb_px, 200) + 20}px", min_width=f"{max(thumb_px, 200) + 20}px",
                                      padding="0 0 0 8px"))
        if self.interactive:
            view = self.canvas
        else:
            self.image = w.Image(format="png", layout=w.Layout(max_width="900px"))
            view = self.image
        hint = w.HTML('<span style="color:#666;font-size:12px">hover over a point to see the face; '
                      'click it to search for its lookalikes, or draw with the lasso or the box to select faces</span>')
        parts = [w.HBox([self.tool, self.clear]), hint, self.message, w.HBox([view, side])]
        self.widget = w.VBox(parts + ([below] if below is not None else []))
        self.widget.add_class("iffse-umap")
        self._set_tool("click")
        self._redraw()

    # -- public -------------------------------------------------------------------------------
    @property
    def hover_text(self) -> str:
        """The side panel's text about the hovered face, as plain text ('' when none)."""
        import re

        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", self.hover_info.value)).split())

    @property
    def thumbnail(self) -> bytes | None:
        """The hovered face's thumbnail as JPEG bytes (None when no face is hovered)."""
        return self.thumb.value if self.hovered is not None else None

    def nearest(self, x: float, y: float) -> int | None:
        """The position of the point nearest to data coordinates (x, y), if within ``pick_radius``
        on screen; else None."""
        px, py = self.ax.transData.transform((float(x), float(y)))
        return self._nearest_display(px, py)

    def hover_at(self, x: float, y: float) -> int | None:
        """What the pointer at data coordinates (x, y) does: show the nearest face in the side
        panel, or nothing over empty space. Returns the face id or None."""
        i = self.nearest(x, y)
        self._show_hover(i)
        return self.hovered

    def click_at(self, x: float, y: float) -> int | None:
        """What a click at data coordinates (x, y) does: mark the nearest face and call
        ``on_pick(face_id)``. Returns the face id, or None over empty space."""
        i = self.nearest(x, y)
        if i is None:
            return None
        face_id = int(self.points.at[i, "face_id"])
        self.picked = face_id
        self._picked_artist.set_offsets(self.xy[[i]])
        self._redraw()
        self._show_hover(i)
        if self.on_pick is not None:
            try:
                self.on_pick(face_id)
            except Exception as exc:  # never a traceback in the widget
                log.exception("on_pick failed")
                self.message.value = _message_html(f"Cannot open face {face_id}: {type(exc).__name__}: {exc}", _ERROR)
        return face_id

    def select_polygon(self, vertices) -> pd.DataFrame:
        """The faces inside a polygon of data coordinates become the selection (what the lasso
        does); returns and keeps ``selection``: face_id, identity, cluster, path, x, y."""
        from matplotlib.path import Path

        verts = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
        inside = Path(verts).contains_points(self.xy) if len(verts) >= 3 else np.zeros(len(self.xy), bool)
        self.selection = self.points[inside].reset_index(drop=True)
        self._selected_artist.set_offsets(self.xy[inside] if inside.any() else np.empty((0, 2)))
        self._redraw()
        self._show_selection()
        return self.selection

    def select_box(self, x0: float, y0: float, x1: float, y1: float) -> pd.DataFrame:
        """The faces in a rectangle of data coordinates become the selection (what the box tool does)."""
        if None in (x0, y0, x1, y1):
            return self.selection
        return self.select_polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def clear_selection(self) -> None:
        self.select_polygon([])

    # -- internals ----------------------------------------------------------------------------
    def _nearest_display(self, px: float, py: float) -> int | None:
        key = (tuple(self.ax.viewLim.bounds), tuple(self.ax.bbox.bounds))
        if key != self._display_key:
            self._display_xy = self.ax.transData.transform(self.xy)
            self._display_key = key
        if not len(self._display_xy):
            return None
        d2 = (self._display_xy[:, 0] - px) ** 2 + (self._display_xy[:, 1] - py) ** 2
        i = int(np.argmin(d2))
        radius = self.pick_radius * self.figure.dpi / 72
        return i if d2[i] <= radius * radius else None

    def _thumbnail(self, i: int) -> bytes:
        from . import plots

        face_id = int(self.points.at[i, "face_id"])
        if face_id in self._thumbs:
            self._thumbs.move_to_end(face_id)
            return self._thumbs[face_id]
        crop = plots.face_crop(self.faces.at[i, "path"], self.faces.iloc[i], size=self.thumb_px, margin=0.15)
        data = self._thumbs[face_id] = _jpeg(crop)
        if len(self._thumbs) > 512:
            self._thumbs.popitem(last=False)
        return data

    def _show_hover(self, i: int | None) -> None:
        from .plots import display_name

        face_id = None if i is None else int(self.points.at[i, "face_id"])
        if face_id == self.hovered:
            return
        if face_id is None:
            self.hovered = None
            self.thumb.layout.display = "none"
            self.hover_info.value = ""
            return
        row = self.points.iloc[i]
        try:
            self.thumb.value = self._thumbnail(i)
            self.thumb.layout.display = None
        except Exception as exc:  # a photo that vanished: the name still shows
            log.warning("no thumbnail for face %s: %s", face_id, exc)
            self.thumb.layout.display = "none"
        name = display_name(row["identity"]) if row["identity"] is not None else "unlabelled face"
        cluster = (f"cluster {row['cluster']} ({self._sizes[row['cluster']]} faces)" if self._has_clusters
                   else "no clusters")
        self.hover_info.value = (f'<div style="font-size:13px;line-height:1.3"><b>{html.escape(name)}</b><br>'
                                 f'{cluster}<br><span style="color:#666">face {face_id}</span></div>')
        self.hovered = face_id

    def _show_selection(self) -> None:
        from .plots import display_name

        sel = self.selection
        if sel.empty:
            self.selection_info.value = ""
            return
        people = sel["identity"].map(lambda v: display_name(v, 24) if v is not None else "unlabelled").value_counts()
        rows = "".join(f"<br>{html.escape(name)}: {k}" for name, k in people.head(8).items())
        more = f"<br>… and {len(people) - 8} more" if len(people) > 8 else ""
        self.selection_info.value = (f'<div style="font-size:12px;margin-top:8px;border-top:1px solid #ccc">'
                                     f'<b>{len(sel)} face{"s" if len(sel) != 1 else ""} selected</b>'
                                     f' ({len(people)} people)'
                                     f'{rows}{more}</div>')

    def _set_tool(self, tool: str) -> None:
        self._tool = tool
        self._lasso.set_active(tool == "lasso")
        self._box.set_active(tool == "box")

    def _redraw(self) -> None:
        from . import plots

        if self.interactive:
            self.canvas.draw_idle()
        else:
            self.image.value = plots.to_png(self.figure, dpi=80)

    # -- mouse events: convert the event, then run the same handler as the Python API ----------
    def _on_motion(self, event) -> None:
        if event.inaxes is not self.ax or event.xdata is None:
            self._show_hover(None)
            return
        try:
            self.hover_at(event.xdata, event.ydata)
        except Exception:  # never a traceback in the widget
            log.exception("hover failed")

    def _on_press(self, event) -> None:
        if (self._tool != "click" or event.button != 1 or event.inaxes is not self.ax or event.xdata is None
                or self.canvas.widgetlock.locked()):  # pan or zoom of the toolbar holds the lock
            return
        self.click_at(event.xdata, event.ydata)


def umap_explorer(catalog, embedding, faces, identities: Sequence, labels: Sequence | None = None,
                  **kwargs) -> UmapExplorer:
    """A :class:`UmapExplorer` whose clicks open the face in a lookalike search shown below the map
    (``explorer.search``: the :class:`~iffse_lib.widgets.LookalikeSearch`)."""
    from .widgets import LookalikeSearch

    search = LookalikeSearch(catalog)
    explorer = UmapExplorer(embedding, faces, identities, labels, on_pick=search.search_face,
                            below=search.widget, **kwargs)
    explorer.search = search
    return explorer

"""Text on the figures: names as people write them, cut with "…", titles that do not overlap."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg

from iffse_lib import faces, images, plots

from conftest import LFW


def test_names_are_shown_without_underscores_and_cut_with_an_ellipsis():
    names = sorted(p.name for p in LFW.iterdir() if p.is_dir())
    long = max(names, key=len)
    assert len(long) > 18 and "_" in long
    shown = plots.display_name(long, 18)
    assert len(shown) == 18 and shown.endswith("…") and "_" not in shown
    assert long.replace("_", " ").startswith(shown[:-1])
    assert plots.display_name("Christina_Aguilera", 30) == "Christina Aguilera"
    assert plots.display_name(None) == plots.display_name(float("nan")) == "unknown"


def test_the_alignment_title_does_not_overlap_the_panel_titles():
    image = images.load_image(LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    found = faces.default_detector().detect(image)
    fig = plots.alignment_steps(image, found[0].landmarks, found[0].box, title="Aaron Eckhart (photo 1)")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert not ax.title.get_window_extent(renderer).overlaps(title), ax.get_title()

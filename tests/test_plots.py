"""Plots return Figures that draw what they say; reduce's clustering and scores; the notebook check."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from iffse_lib import faces, images, plots, reduce

from conftest import FACES, ROOT


def test_landmarks_draws_68_points_per_face_and_each_box_with_its_score():
    image = images.load_image(FACES / "multi" / "facerec_obama_and_biden.jpg")
    found = faces.default_detector().detect(image)
    fig = plots.landmarks(image, found)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 68 * len(found) and len(found) >= 2
    texts = [t.get_text() for t in ax.texts]
    for i, d in enumerate(found):
        assert f"#{i + 1}  score {d.score:.2f}" in texts
    assert len(ax.patches) == len(found)


def test_alignment_steps_shows_photo_chip_and_openface_crop():
    image = images.load_image(FACES / "people" / "obama" / "facerec_obama.jpg")
    d = faces.default_detector().detect(image)[0]
    fig = plots.alignment_steps(image, d.landmarks, d.box)
    shapes = [ax.images[0].get_array().shape[:2] for ax in fig.axes]
    assert shapes[2] == (150, 150) and shapes[3] == (96, 96)


def test_face_crop_is_square_and_pads_faces_at_the_edge():
    image = np.zeros((100, 100, 3), np.uint8) + 200
    crop = plots.face_crop(image, (0, 0, 40, 40), size=64, margin=0.25)
    assert crop.shape == (64, 64, 3)
    assert (crop[0, 0] == 128).all() and (crop[-1, -1] == 200).all()


def test_distance_histograms_reports_error_rates_at_the_threshold():
    same, diff = np.array([0.3, 0.4, 0.7]), np.array([0.5, 0.9, 1.0, 1.1])
    fig = plots.distance_histograms(same, diff, 0.6)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "same rejected 33.3%" in text and "different accepted 25.0%" in text


def test_umap_scatter_colours_the_most_frequent_identities_and_greys_the_rest():
    ident = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"]
    fig = plots.umap_scatter(np.random.default_rng(0).normal(size=(len(ident), 2)), ident, top=2)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["a (5)", "b (4)", "others (4)"]


def test_one_panel_plots_draw_on_the_axes_they_are_given():
    import pandas as pd
    from types import SimpleNamespace

    from iffse_lib import plots_eval

    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 3).ravel()
    rng = np.random.default_rng(0)
    timings = pd.DataFrame({"stage": ["detect", "embed"], "ms_per_photo": [120.0, 30.0]})
    recall = pd.DataFrame({"search_k": [100, 1000], "k": [10, 10], "recall": [0.9, 0.99],
                           "ms_per_query": [0.1, 0.5], "exact_ms_per_query": [2.0, 2.0]})
    folds = SimpleNamespace(accuracies=np.array([0.98, 0.99]), thresholds=np.array([0.6, 0.61]), mean=0.985,
                            std=0.005)
    table = pd.DataFrame({"exact": [1.0, 0.9], "index": [1.0, 0.89]}, index=["precision@1", "mAP@100"])
    drawn = [
        plots.distance_histograms(np.array([0.3, 0.4]), np.array([0.9, 1.0]), 0.6, ax=axes[0]),
        plots.umap_scatter(rng.normal(size=(6, 2)), list("aabbcc"), top=2, ax=axes[1]),
        plots.stage_times(timings, ax=axes[2]),
        plots.recall_curve(recall, ax=axes[3]),
        plots_eval.fold_accuracy(SimpleNamespace(folds=folds, model_tag="m"), ax=axes[4]),
        plots_eval.retrieval_table(SimpleNamespace(table=table, counts={"queries": 3}, model_tag="m"), ax=axes[5]),
    ]
    assert all(d is fig for d in drawn) and len(fig.axes) == 6
    assert "threshold 0.60" in axes[0].texts[0].get_text()
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["a (2)", "b (2)", "others (2)"]
    assert [t.get_text() for t in axes[2].get_yticklabels()] == ["detect", "embed"]
    assert len(axes[3].lines[0].get_xdata()) == 2 and [len(c) for c in axes[4].containers] == [2]
    assert [len(c) for c in axes[5].containers] == [2, 2]
    # without ax, each makes its own figure with one panel
    alone = plots.stage_times(timings)
    assert alone is not fig and len(alone.axes) == 1


def test_failure_page_names_each_kind(people_catalog, tmp_path):
    failures = plots.detection_failures(people_catalog)
    assert failures.attrs["photos_detected"] == len(people_catalog.photos())
    import pandas as pd

    fake = pd.DataFrame([{"photo_id": 1, "path": str(FACES / "noface" / "dlib_dog.jpg"), "kind": "no_face",
                          "label": "dog"}, {"photo_id": None, "path": None, "kind": "truncated", "label": "x.jpg"}])
    fig = plots.failure_page(fake)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["no_face\ndog", "truncated\nx.jpg"]
    assert plots.save(fig, tmp_path, "failures").stat().st_size > 1000


def test_results_grid_labels_rank_distance_and_identity(people_catalog):
    from iffse_lib.search import Searcher

    matches = Searcher(people_catalog).search(FACES / "people" / "biden" / "facerec_biden.jpg", k=3)[0]
    fig = plots.results_grid(matches, np.zeros((10, 10, 3), np.uint8), threshold=0.6)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "query"
    assert titles[1] == f"1. {matches['distance'].iloc[0]:.3f}\nbiden"


def test_chinese_whispers_and_hdbscan_recover_separated_people():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 128))
    centres *= 1.5 / np.linalg.norm(centres, axis=1, keepdims=True)
    X = np.vstack([c + rng.normal(scale=0.02, size=(10, 128)) for c in centres]).astype(np.float32)
    ident = np.repeat([f"p{i}" for i in range(6)], 10)
    for labels in (reduce.chinese_whispers(X, threshold=0.6), reduce.hdbscan(X, min_cluster_size=3)):
        scores = reduce.cluster_scores(ident, labels)
        assert scores["purity"] == 1.0 and scores["completeness"] == pytest.approx(1.0)
        assert scores["n_clusters"] == 6


@pytest.mark.slow  # NN-descent compiles its numba code on first use: about a minute
def test_knn_graph_by_nn_descent_matches_the_exact_one_and_clusters_alike():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(150, 128))
    centres *= 1.5 / np.linalg.norm(centres, axis=1, keepdims=True)
    X = np.vstack([c + rng.normal(scale=0.03, size=(12, 128)) for c in centres]).astype(np.float32)
    X[1] = X[0]  # a duplicate: still left out as "itself" only where it is itself
    ident = np.repeat(np.arange(150), 12)
    exact_p, exact_d = reduce.knn_graph(X, k=10)
    approx_p, approx_d = reduce.knn_graph(X, k=10, exact_below=0)
    n = len(X)
    for pos in (exact_p, approx_p):
        assert pos.shape == (n, 10) and not (pos == np.arange(n)[:, None]).any()
    assert exact_p[0, 0] == 1 and exact_d[0, 0] == 0.0
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_p, exact_p)])
    assert recall >= 0.95, recall
    exact_labels = reduce.chinese_whispers(X, threshold=0.6)
    approx_labels = reduce.chinese_whispers(X, threshold=0.6, exact_below=0)
    for labels in (exact_labels, approx_labels):
        scores = reduce.cluster_scores(ident, labels)
        assert scores["purity"] == 1.0 and scores["n_clusters"] == 150


def test_chinese_whispers_keeps_lonely_faces_as_singletons():
    X = np.array([[0, 0], [0.1, 0], [5, 5], [10, 0], [10, 0.2]], np.float32)
    labels = reduce.chinese_whispers(X, threshold=0.6, k=2)
    assert len(labels) == 5 and labels[0] == labels[1] and labels[3] == labels[4]
    assert len({labels[0], labels[2], labels[3]}) == 3
    lonely_last = reduce.chinese_whispers(X[[0, 1, 3, 4, 2]], threshold=0.6, k=2)
    assert len(lonely_last) == 5 and lonely_last[4] not in lonely_last[:4]


def test_cluster_scores_on_known_labels():
    s = reduce.cluster_scores(["a", "a", "b", "b"], [0, 0, 0, 1])
    assert s["purity"] == 0.75 and s["n_clusters"] == 2 and s["n_singletons"] == 1
    assert s["clustered_share"] == 0.75


@pytest.mark.slow
def test_umap_keeps_blobs_trustworthy():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=300, n_features=20, centers=5, random_state=0)
    emb = reduce.umap_2d(X, n_neighbors=10, seed=0)
    assert emb.shape == (300, 2)
    assert reduce.trustworthiness(X, emb, n_neighbors=10) >= 0.95


@pytest.mark.slow
def test_check_notebooks_fails_on_a_notebook_with_outputs(tmp_path):
    import nbformat

    src = ROOT / "notebooks" / "05-search-lookalikes.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    nb.cells[1].execution_count = 1
    bad = tmp_path / src.name
    nbformat.write(nb, bad)
    (tmp_path / src.with_suffix(".py").name).write_text(src.with_suffix(".py").read_text())
    tool = [sys.executable, str(ROOT / "tools" / "check_notebooks.py")]
    r = subprocess.run([*tool, str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "cell 2 has 1 output(s)" in r.stderr
    r = subprocess.run(tool, capture_output=True, text=True)  # the committed notebooks
    assert r.returncode == 0, r.stderr

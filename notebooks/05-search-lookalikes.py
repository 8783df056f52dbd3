# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Search for lookalikes
#
# A query photo's faces are detected, aligned and embedded like the catalogue's; the index returns
# the nearest catalogued faces. Below: one search as a figure, then an interactive search —
# upload your own photo or pick a catalogued face, and set how many matches (k) and how close
# (max distance; 0.6 is dlib's same-person threshold).

# %%
from iffse_lib import compare, glue, plots, plots_compare, reduce, widgets, widgets_compare
from iffse_lib.catalog import Catalog
from iffse_lib.search import Searcher

# %% tags=["parameters"]
DATA_DIR = None        # None: the project's data/ (what `make demo` fills; IFFSE_DATA overrides)
QUERY_PHOTO = None     # a photo to search with; None: a catalogued face of the most photographed person
K = 10
THRESHOLD = 0.6
FIGURES_DIR = None     # None: <DATA_DIR>/figures
OCCLUSION_PATCH = 30   # compare: side in pixels of the squares greyed out on the 150 px chips

# %%
cat = Catalog(DATA_DIR, readonly=True)  # a reader: runs while `iffse index` writes
figures = plots.figures_dir(FIGURES_DIR, cat)
searcher = Searcher(cat)
searcher.index

# %% [markdown]
# ## One search

# %%
if QUERY_PHOTO is not None:
    matches = searcher.search(QUERY_PHOTO, k=K, threshold=THRESHOLD)[0]  # the largest face
    query = plots.face_crop(QUERY_PHOTO, matches.attrs["query_box"], size=150)
else:
    top = cat.faces(searcher.index.model_tag).query("identity == identity")
    row = top[top["identity"] == top["identity"].value_counts().index[0]].iloc[0]
    matches = searcher.search_face(int(row["face_id"]), k=K, threshold=THRESHOLD)
    query = plots.face_crop(row["path"], row, size=150)
glue.record(f"top match: {matches['identity'].iloc[0] if len(matches) else None}",
            top_match=matches["identity"].iloc[0] if len(matches) else None)
matches[["rank", "distance", "identity", "photo_id", "face_id"]]

# %%
fig = plots.results_grid(matches, query, THRESHOLD)
print(plots.save(fig, figures, "05-results"))
fig

# %% [markdown]
# ## Compare two faces, and why they match
# The two nearest matches of the search above: photo crops with landmarks, the aligned chips, the
# distance against the threshold among the catalogue's same-person and different-person
# distances, and the occlusion map: each square of a chip greyed out in turn, all copies
# embedded in one batch; red squares held the likeness (greying them raises the distance).

# %%
if len(matches) >= 2:
    face_ids, vectors = cat.vectors(searcher.index.model_tag)
    labels = cat.faces(searcher.index.model_tag).set_index("face_id").loc[face_ids, "identity"].to_numpy()
    same, different = reduce.pair_distances(vectors, labels)
    pair = compare.compare_faces(cat, int(matches["face_id"].iloc[0]), int(matches["face_id"].iloc[1]), stored=True,
                                 occlusion_patch=OCCLUSION_PATCH, threshold=THRESHOLD, same=same, different=different)
    glue.record(pair.summary(), distance=pair.distance, threshold=pair.threshold, same=pair.same,
                same_farther=pair.same_farther)
    fig = plots_compare.comparison(pair, same, different)
    print(plots.save(fig, figures, "05-compare"))
    display(fig)

# %% [markdown]
# ## Interactive search
# Results out: `search.results` is the DataFrame of the matches on show (with each face's
# identity, `same` when the query face is labelled, `source`, `photo_url`, `source_url`); the
# link under the grid downloads it as CSV, and `search.to_csv(path)` writes it.

# %%
search = widgets.LookalikeSearch(cat, searcher=searcher, k=K, threshold=THRESHOLD)
search

# %% [markdown]
# Any two faces, compared the same way: pick them by name, or upload a photo for either side (its
# largest face); tick the box for the occlusion map.

# %%
widgets_compare.FaceCompare(cat, threshold=THRESHOLD, occlusion_patch=OCCLUSION_PATCH)

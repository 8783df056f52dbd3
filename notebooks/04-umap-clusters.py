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
# # 04 · The faces on a map, and clusters of people
#
# UMAP squeezes the 128-d vectors into 2-D, keeping near neighbours near; trustworthiness says how
# well (1.0: no point gets 2-D neighbours that are not neighbours in 128-d). Clustering the vectors
# finds people without labels: *purity* is the share of faces whose cluster's majority is their own
# person, *completeness* how well each person stays in one cluster.

# %%
from iffse_lib import glue, plots, reduce, widgets_clusters, widgets_umap
from iffse_lib.catalog import Catalog
from iffse_lib.embedders import get_embedder

# %% tags=["parameters"]
DATA_DIR = None              # None: the project's data/ (what `make demo` fills; IFFSE_DATA overrides)
N_NEIGHBOURS = 15            # UMAP's n_neighbors
MIN_DIST = 0.1               # UMAP's min_dist
TOP_IDENTITIES = 10          # identities in colour on the map
N_THUMBNAILS = 250           # faces drawn on the thumbnail map
CLUSTER_METHOD = "chinese_whispers"  # or "hdbscan"
CLUSTER_THRESHOLD = 0.5      # Chinese whispers: edges between faces closer than this
FIGURES_DIR = None           # None: <DATA_DIR>/figures
SEED = 0

# %%
cat = Catalog(DATA_DIR, readonly=True)  # a reader: runs while `iffse index` writes
figures = plots.figures_dir(FIGURES_DIR, cat)
model = get_embedder().model_tag
faces = cat.faces(model)
face_ids, vectors = cat.vectors(model)
faces = faces.set_index("face_id").loc[face_ids].reset_index()
identities = faces["identity"].to_numpy()  # None: a bystander (labels name a photo's subject face)
glue.record(f"{len(vectors):,} vectors of {model}, {len(set(identities[reduce.labelled(identities)])):,} identities, "
            f"{(~reduce.labelled(identities)).sum():,} unlabelled faces",
            vectors=len(vectors), unlabelled_faces=(~reduce.labelled(identities)).sum())

# %% [markdown]
# ## UMAP

# %%
embedding = reduce.umap_2d(vectors, n_neighbors=N_NEIGHBOURS, min_dist=MIN_DIST, seed=SEED)
trust = reduce.trustworthiness(vectors, embedding, n_neighbors=10)
glue.record(f"trustworthiness: {trust:.3f}", trustworthiness=trust)

# %%
fig = plots.umap_scatter(embedding, identities, top=TOP_IDENTITIES)
print(plots.save(fig, figures, "04-umap-identities"))
fig

# %%
fig = plots.umap_thumbnails(embedding, faces, identities, top=TOP_IDENTITIES, max_thumbs=N_THUMBNAILS, seed=SEED)
print(plots.save(fig, figures, "04-umap-thumbnails"))
fig

# %% [markdown]
# ## Clusters of people

# %%
labels = reduce.cluster(vectors, CLUSTER_METHOD, threshold=CLUSTER_THRESHOLD, seed=SEED)
scores = reduce.cluster_scores(identities, labels)
glue.record(f"purity: {scores['purity']:.3f}, completeness: {scores['completeness']:.3f}",
            purity=scores["purity"], completeness=scores["completeness"])
scores

# %%
fig = plots.cluster_gallery(faces, labels)
print(plots.save(fig, figures, "04-clusters"))
fig

# %% [markdown]
# ## Every cluster, one by one
# Largest or least pure first: the cluster's faces (black: its majority person; red: someone
# else; grey: unlabelled), its purity, where its person splits into other clusters and who merged in.

# %%
widgets_clusters.ClusterBrowser(faces, labels)

# %% [markdown]
# ## Point at the map
# Hover over a point to see that face, its name and its cluster; click it to search for its
# lookalikes (shown below the map); choose "lasso" or "box" and draw to select faces
# (`explorer.selection` holds them as a table). In JupyterLab the map is ipympl's widget (what
# `%matplotlib widget` draws with), with its zoom and pan tools; without ipympl it is a still image.

# %%
explorer = widgets_umap.umap_explorer(cat, embedding, faces, identities, labels)
explorer

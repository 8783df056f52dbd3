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
# # 06 · Evaluate
#
# How good are the vectors and the search, in the terms papers use?
#
# - **LFW verification.** Pairs of photos in LFW's official format, ten folds: the distance
#   threshold is chosen on nine folds and accuracy measured on the tenth; mean ± standard
#   deviation, the thresholds, ROC AUC. dlib reports 99.38% ± 0.27% for its face ResNet on the full
#   LFW. Each photo uses the face nearest its centre; photos where the detector finds no face are
#   aligned from landmarks placed in a fixed central box (LFW photos are centred on the face).
# - **Retrieval.** Every labelled face whose identity has other faces queries the catalogue:
#   precision@1, precision@5 and mAP, with exact search and with the index.
#
# Reads the catalogue of notebook 03 (its vectors are reused where they were made with the same
# detector and embedder settings; the rest are computed through the pipeline's own detect,
# landmark and chip steps) and writes the pairs file and the figures' numbers (JSON) under
# `<DATA_DIR>/evaluation`, the figures (PNG) under `<DATA_DIR>/figures` like every notebook's. The
# last section compares test-time augmentations on the same pairs (README, "Choosing the
# landmarks and the augmentation").

# %%
import json

from iffse_lib import plots, plots_eval
from iffse_lib.catalog import Catalog
from iffse_lib.embedders import get_embedder
from iffse_lib.evaluate import output_dir
from iffse_lib.evaluate.pairs import make_pairs, read_pairs, write_pairs
from iffse_lib.evaluate.retrieval import evaluate_retrieval
from iffse_lib.evaluate.verification import compare_tta, evaluate_lfw_pairs, fallback_report
from iffse_lib.faces import FaceDetector
from iffse_lib.sources.lfw import lfw_folder

# %% tags=["parameters"]
DATA_DIR = None              # None: the project's data/ (what `make demo` fills; IFFSE_DATA overrides)
LFW_DIR = None               # None: IFFSE_LFW_DIR (`make lab` sets it as `make demo` finds LFW), else scikit-learn's download
PAIRS_FILE = None            # None: make pairs from LFW_DIR (every same-person pair, as many different)
MAX_SAME_PER_PERSON = None   # None: every same-person pair; a number caps the big identities
EMBEDDER = None              # None: the default embedder; "dlib" or "torch"
DETECTOR = "hog"             # "hog" or "cnn": the pipeline's detector, landmarks and chips
UPSAMPLE = 1                 # the detector's upsampling
TTA = "none"                 # test-time augmentation of the torch embedder: "none", "flip", "jitter:10"
COMPARE_TTA = ["none", "flip"]  # augmentations compared on the same pairs at the end ([]: skip)
N_WORST = 8                  # worst false matches and misses shown
RETRIEVAL_DEPTH = 100        # ranks scored for mAP
OUT_DIR = None               # None: <DATA_DIR>/evaluation (pairs file, JSON)
SEED = 0
FIGURES_DIR = None           # None: <DATA_DIR>/figures

# %%
cat = Catalog(DATA_DIR, readonly=True)  # a reader: runs while `iffse index` writes
out = output_dir(OUT_DIR, cat)
figures = plots.figures_dir(FIGURES_DIR, cat)
lfw_dir = lfw_folder(LFW_DIR, parameter="LFW_DIR")
embedder = get_embedder(EMBEDDER, **({"tta": TTA} if TTA != "none" else {}))
detector = FaceDetector(DETECTOR, UPSAMPLE)
pairs_file = PAIRS_FILE or write_pairs(
    make_pairs(lfw_dir, seed=SEED, max_same_per_person=MAX_SAME_PER_PERSON), out / "pairs.txt")
pairs = read_pairs(pairs_file)
print(f"{pairs_file}: {len(pairs)} pairs, {pairs.attrs['n_folds']} folds of {pairs.attrs['per_fold']} + "
      f"{pairs.attrs['per_fold']}")

# %% [markdown]
# ## LFW verification, ten folds

# %%
result = evaluate_lfw_pairs(pairs, lfw_dir=lfw_dir, catalog=cat, embedder=embedder, detector=detector)
(out / "lfw-pairs.json").write_text(json.dumps(result.to_dict(), indent=2))
print(result.summary())

# %% [markdown]
# ## ROC curve
# True positive rate (same person called same) against false positive rate (different people
# called same), over every threshold; the dot is the mean of the ten fold thresholds.

# %%
fig = plots_eval.roc_curve(result)
print(plots.save(fig, figures, "06-roc"))
fig

# %% [markdown]
# ## Same-person and different-person distances

# %%
p = result.pairs
fig = plots.distance_histograms(p.loc[p["same"], "distance"], p.loc[~p["same"], "distance"],
                                threshold=float(result.folds.thresholds.mean()))
print(plots.save(fig, figures, "06-distances"))
fig

# %% [markdown]
# ## Accuracy per fold
# Each fold's threshold was chosen on the other nine.

# %%
fig = plots_eval.fold_accuracy(result)
print(plots.save(fig, figures, "06-folds"))
fig

# %% [markdown]
# ## The worst false matches
# Different people, closest first (below their fold's threshold). `*` marks a photo whose face the
# detector missed (aligned from the central box).

# %%
fig = plots_eval.pair_grid(result, result.worst("false_match", N_WORST), title="worst false matches")
print(plots.save(fig, figures, "06-false-matches"))
fig

# %% [markdown]
# ## The worst misses
# The same person, farthest first (above their fold's threshold).

# %%
fig = plots_eval.pair_grid(result, result.worst("miss", N_WORST), title="worst misses")
print(plots.save(fig, figures, "06-misses"))
fig

# %% [markdown]
# ## Photos without a detected face
# How the pairs that involve them fare, against the others.

# %%
fallback_report(result)

# %% [markdown]
# ## Retrieval: exact search and the index
# Every labelled face whose identity has other faces in the catalogue is a query; the query face
# itself is left out of its results.

# %%
retrieval = evaluate_retrieval(cat, embedder.model_tag, depth=RETRIEVAL_DEPTH)
(out / "retrieval.json").write_text(json.dumps(retrieval.to_dict(), indent=2))
print(retrieval.summary())

# %%
fig = plots_eval.retrieval_table(retrieval)
print(plots.save(fig, figures, "06-retrieval"))
fig

# %% [markdown]
# ## Test-time augmentation, compared
# The same pairs with each augmentation of `COMPARE_TTA` (the torch embedder, the same detector):
# each vector the mean over the chip and its mirror image (`flip`) or over N of dlib's jittered
# copies (`jitter:N`). Each is its own model tag: only vectors the catalogue holds with that tag
# are reused.

# %%
comparison = compare_tta(pairs, COMPARE_TTA, lfw_dir=lfw_dir, catalog=cat, detector=detector)
(out / "tta.json").write_text(comparison.to_json(orient="records", indent=2))
comparison

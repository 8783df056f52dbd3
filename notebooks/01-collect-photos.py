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
# # 01 · Collect photos
#
# Photos come from a **source** into the catalogue (`DATA_DIR`): Labeled Faces in the Wild (the
# default), a folder of your own, or Instagram hashtags (as IFFSE did in 2017 with `#selfie`;
# without a logged-in session's cookies, from iffse's local imitation of Instagram).
# Collecting again skips what is already there; unreadable files are recorded, not fatal.
# The next notebook draws the faces found in them.

# %%
from iffse_lib import plots
from iffse_lib.catalog import Catalog
from iffse_lib.sources import collect_photos

# %% tags=["parameters"]
DATA_DIR = None             # None: the project's data/ (what `make demo` fills; IFFSE_DATA overrides)
SOURCE = "lfw"              # lfw, folder or instagram
LFW_DIR = None              # None: IFFSE_LFW_DIR (`make lab` sets it as `make demo` finds LFW), else scikit-learn's download
FOLDER = None               # folder source: a folder of photos
IDENTITY_FROM_FOLDER = True # folder source: people/NAME/photo.jpg gives the identity NAME
INSTAGRAM_TAGS = "selfie"   # instagram source: hashtags, without the hash sign
INSTAGRAM_API = "web"       # web (today's, needs a login) or legacy (the 2017 endpoints IFFSE used)
INSTAGRAM_COOKIES = None    # a logged-in browser session's cookies.txt (never stored); None: the imitation
INSTAGRAM_URL = None        # None: instagram.com with cookies, else iffse's local imitation (no account needed)
MAX_PHOTOS = None           # None: all of them (instagram: posts; a carousel gives several photos)
N_CONTACT = 48              # photos on the contact sheet
FIGURES_DIR = None          # None: <DATA_DIR>/figures
SEED = 0

# %%
cat = Catalog(DATA_DIR)
figures = plots.figures_dir(FIGURES_DIR, cat)
# cat

# %% [markdown]
# ## Collect
# One library call, whichever the source (`iffse_lib.sources.collect_photos`). It returns counts:
# `stored` (new photos), `skipped` (seen before), `duplicates` (same bytes under another name) and
# `errors` (rejected files).

# %%
collected = collect_photos(cat, SOURCE, lfw_dir=LFW_DIR, lfw_parameter="LFW_DIR", folder=FOLDER,
                           identity_from_folder=IDENTITY_FROM_FOLDER, tags=INSTAGRAM_TAGS, api=INSTAGRAM_API,
                           cookies=INSTAGRAM_COOKIES, base_url=INSTAGRAM_URL, max_photos=MAX_PHOTOS)
collected

# %% [markdown]
# ## What is in the catalogue

# %%
photos = cat.photos()
cat.counts()

# %%
photos.groupby("source_kind").agg(photos=("photo_id", "size"), identities=("identity", "nunique"),
                                  median_width=("width", "median"), median_height=("height", "median"),
                                  megabytes=("nbytes", lambda b: round(b.sum() / 1e6, 1)))

# %% [markdown]
# Photos per identity (the most photographed first):

# %%
photos["identity"].value_counts().head(15)

# %%
photos[["width", "height", "nbytes"]].describe().round(0)

# %% [markdown]
# Files that were rejected, and why (`catalog.errors()`):

# %%
cat.errors().tail(20)

# %% [markdown]
# ## Contact sheet

# %%
sample = photos.sample(min(N_CONTACT, len(photos)), random_state=SEED).sort_values("photo_id")
fig = plots.contact_sheet(sample["path"], sample["identity"].fillna(sample["source_id"]),
                          title=f"{len(sample)} of {len(photos):,} collected photos")
print(plots.save(fig, figures, "01-contact-sheet"))
fig

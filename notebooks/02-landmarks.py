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
# # 02 · Faces and landmarks
#
# dlib's HOG detector finds each face (a box and a score: the SVM margin, higher is surer);
# its shape predictor places 68 landmarks (jaw, brows, nose, eyes, lips). The landmarks align the
# face: dlib's 150 px chip is what the embedder sees, and the 96 px OpenFace crop is what IFFSE
# showed. Photos where detection failed are listed at the end.

# %%
from iffse_lib import faces, glue, images, plots, widgets
from iffse_lib.catalog import Catalog

# %% tags=["parameters"]
DATA_DIR = None       # None: the project's data/ (what `make demo` fills; IFFSE_DATA overrides)
N_EXAMPLES = 3        # photos drawn with their landmarks
MAX_BROWSE = None     # photos in the browser widget (None: every photo)
UPSAMPLE = 1          # HOG upsampling for photos detected here (1 finds faces down to ~40 px)
FIGURES_DIR = None    # None: <DATA_DIR>/figures
SEED = 0

# %%
cat = Catalog(DATA_DIR, readonly=True)  # a reader: runs while `iffse index` writes
figures = plots.figures_dir(FIGURES_DIR, cat)
photos = cat.photos()
examples = photos.sample(min(N_EXAMPLES, len(photos)), random_state=SEED)
examples[["photo_id", "identity", "width", "height", "n_faces"]]

# %% [markdown]
# ## Detection and 68 landmarks
# Detected here, on the spot, for the sample photos (the catalogue keeps its own after notebook 03).

# %%
example_images = [images.load_image(p) for p in examples["path"]]
detector = faces.FaceDetector("hog", upsample=UPSAMPLE)
detections = [detector.detect(im) for im in example_images]
[(len(d), [round(x.score, 2) for x in d]) for d in detections]

# %%
for n, (image, found) in enumerate(zip(example_images, detections)):
    fig = plots.landmarks(image, found)
    print(plots.save(fig, figures, f"02-landmarks-{n + 1}"))
    display(fig)

# %% [markdown]
# ## Alignment step by step
# Photo → landmarks → dlib's 150 px chip (eyes and mouth on fixed points, 25 % padding) → the
# 96 px OpenFace crop (outer eye corners and nose tip mapped onto OpenFace's template).

# %%
first = next(i for i, d in enumerate(detections) if d) if any(detections) else None
fig = plots.alignment_steps(example_images[first], detections[first][0].landmarks, detections[first][0].box)
print(plots.save(fig, figures, "02-alignment"))
fig

# %% [markdown]
# ## Browse
# Step through the photos with the slider (or pick one); tick *alignment steps* to see the chip
# and crop of the largest face.

# %%
widgets.LandmarkBrowser(cat, max_photos=MAX_BROWSE)

# %% [markdown]
# ## Where detection failed
# `no_face`: the detector found nothing (profiles, small or occluded faces); other kinds are
# files that could not be decoded. Empty until the photos have been through notebook 03.

# %%
failures = plots.detection_failures(cat)
glue.record(f"{len(failures)} of {failures.attrs['photos_detected']} detected photos have no usable face",
            photos_without_face=len(failures), photos_detected=failures.attrs["photos_detected"])
failures["kind"].value_counts()

# %%
fig = plots.failure_page(failures)
print(plots.save(fig, figures, "02-failures"))
fig

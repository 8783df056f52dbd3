"""Test-time augmentation (flip, dlib's jitter) on real faces, its model tags, and the --tta option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import LFW, iffse, one_line_error
from iffse_lib import faces, images, tta
from iffse_lib.embed import DlibEmbedder
from iffse_lib.embedders import embedder_for_tag
from iffse_lib.embed_torch import TorchEmbedder

#: every augmentation embedded in torch and compared with dlib; make test-fast leaves these out
pytestmark = pytest.mark.slow

PEOPLE = ("obama", "biden", "angelina_jolie", "alex_lacamoire")


@pytest.fixture(scope="module")
def people_chips(faces_dir):
    """The largest HOG face of every photo of four people in ../shared/data/faces/people."""
    chips, who = [], []
    for person in PEOPLE:
        for path in sorted((faces_dir / "people" / person).iterdir()):
            image = images.load_image(path)
            found = faces.default_detector().detect(image)
            if found:
                chips.append(faces.face_chips(image, [found[0].landmarks])[0])
                who.append(person)
    assert len(chips) >= 18
    return np.stack(chips), np.array(who)


def _nearest_other(vectors: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    np.fill_diagonal(d, np.inf)
    return d.argmin(axis=1)


@pytest.mark.parametrize("spec", ["flip", "jitter:6"])
def test_augmented_vectors_differ_and_keep_each_face_nearest_its_person(people_chips, spec):
    chips, who = people_chips
    plain = TorchEmbedder().embed(chips)
    augmented = TorchEmbedder(tta=spec).embed(chips)
    moved = np.linalg.norm(augmented - plain, axis=1)
    print(f"\n{spec}: moved by median {np.median(moved):.3f}, largest {moved.max():.3f}")
    assert moved.min() > 0.02 and moved.max() < 0.3  # other vectors, of the same faces
    assert (who[_nearest_other(augmented)] == who).all()
    assert (who[_nearest_other(plain)] == who).all()


def test_flip_is_the_mean_of_the_chip_and_its_mirror_image(people_chips):
    chips = people_chips[0][:5]
    plain = TorchEmbedder()
    expected = (plain.embed(chips) + plain.embed(np.ascontiguousarray(chips[:, :, ::-1]))) / 2
    np.testing.assert_allclose(TorchEmbedder(tta="flip").embed(chips), expected, atol=1e-5)


@pytest.mark.parametrize("spec", ["flip", "jitter:4"])
def test_batching_gives_the_vectors_of_one_by_one(people_chips, spec):
    chips = people_chips[0][:9]
    batched = TorchEmbedder(tta=spec, batch_size=16).embed(chips)
    single = np.concatenate([TorchEmbedder(tta=spec, batch_size=1).embed(c[None]) for c in chips])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # and in another order, in other batches: a face's jitter depends on its chip, not its place
    order = np.random.default_rng(1).permutation(len(chips))
    np.testing.assert_allclose(TorchEmbedder(tta=spec, batch_size=3).embed(chips[order]), batched[order], atol=1e-5)


def test_jitter_is_seeded(people_chips):
    chips = people_chips[0][:6]
    a = TorchEmbedder(tta="jitter:5").embed(chips)
    np.testing.assert_array_equal(TorchEmbedder(tta="jitter:5").embed(chips), a)
    other = TorchEmbedder(tta="jitter:5", tta_seed=7).embed(chips)
    assert np.linalg.norm(other - a, axis=1).min() > 1e-3
    assert TorchEmbedder(tta="jitter:5", tta_seed=7).model_tag == "dlib-resnet-v1+jit5s7"


def test_jitter_stays_within_dlibs_bounds():
    """Every copy's map: the 144 px square moved by at most 2% (3 px), grown to 144/s for s in
    [0.97, 1), turned by at most 3 degrees; about half the copies mirrored."""
    thetas = np.concatenate([tta.jitter_thetas(key, 50, 0, 150) for key in range(40)])
    sx = np.hypot(thetas[:, 0, 0], thetas[:, 1, 0])
    sy = np.hypot(thetas[:, 0, 1], thetas[:, 1, 1])
    np.testing.assert_allclose(sx, sy)
    box = sx * 149 + 1  # whole pixels: int(144 / s), 144 to 148
    assert np.allclose(box, np.round(box)) and np.round(box).min() == 144 and np.round(box).max() == 148
    angle = np.degrees(np.arctan2(-thetas[:, 0, 1], thetas[:, 1, 1]))  # theta = s R diag(+-1, 1)
    assert np.abs(angle).max() <= 3.0 + 1e-9 and np.abs(angle).max() > 2.5
    centre = (thetas[:, :, 2] + 1) * 74.5  # the crop's centre in chip pixels
    assert np.abs(centre - 74.5).max() <= 3.5  # 2% of 144 px, rounded, plus dlib's centre (75) of odd boxes
    mirrored = np.sign(np.linalg.det(thetas[:, :, :2])) < 0
    assert 0.4 < mirrored.mean() < 0.6


def test_jitter_lands_near_dlibs_own(people_chips):
    """dlib's compute_face_descriptor(num_jitters=10) draws other copies, so its vectors are not
    ours; but ours lie as close to dlib's as another seed of ours does, much closer than the
    plain vector."""
    chips = people_chips[0][::4][:5]
    dlib10 = DlibEmbedder(num_jitters=10).embed(chips)
    ours = TorchEmbedder(tta="jitter:10").embed(chips)
    ours2 = TorchEmbedder(tta="jitter:10", tta_seed=1).embed(chips)
    plain = TorchEmbedder().embed(chips)
    to_dlib = np.linalg.norm(ours - dlib10, axis=1).mean()
    seeds = np.linalg.norm(ours - ours2, axis=1).mean()
    from_plain = np.linalg.norm(plain - dlib10, axis=1).mean()
    print(f"\nmean distance to dlib's jitter: ours {to_dlib:.3f}, plain {from_plain:.3f}; seed to seed {seeds:.3f}")
    assert to_dlib < 1.6 * seeds and to_dlib < 0.6 * from_plain


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("spec", ["none", "flip", "jitter:10"])
def test_model_tags_map_back_to_their_embedder(dtype, spec):
    embedder = TorchEmbedder(dtype=dtype, tta=spec)
    again = embedder_for_tag(embedder.model_tag)
    assert again.model_tag == embedder.model_tag
    assert str(getattr(again, "tta", "none")) == spec


def test_tags_name_precision_then_augmentation():
    assert TorchEmbedder(tta="flip").model_tag == "dlib-resnet-v1+flip"
    assert TorchEmbedder(tta="jitter:10").model_tag == "dlib-resnet-v1+jit10"
    assert TorchEmbedder(dtype="bf16", tta="flip").model_tag == "dlib-resnet-v1+bf16+flip"
    for bad in ("dlib-resnet-v1+flip+bf16", "dlib-resnet-v1+jit0", "dlib-resnet-v1+flop"):
        with pytest.raises(Exception, match="no embedder makes vectors"):
            embedder_for_tag(bad)
    with pytest.raises(ValueError):
        TorchEmbedder(tta="jitter:0")


@pytest.mark.parametrize("command", [["index"], ["search", str(sorted(LFW.glob("*/*.jpg"))[0])],
                                     ["evaluate", "lfw-pairs", "--pairs", "pairs.txt"]])
@pytest.mark.parametrize("value", ["jitter:0", "foo", "jitter:101", "flip:2"])
def test_bad_tta_values_exit_2_with_one_line(tmp_path, command, value):
    done = iffse(*command, "--tta", value, data=tmp_path / "data")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "argument --tta" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "data").exists()


def test_tta_with_dlibs_embedder_is_one_line(small_copy):
    msg = one_line_error(iffse("index", "--embedder", "dlib", "--tta", "flip", data=small_copy))
    assert "--embedder dlib" in msg


def test_augmented_vectors_never_mix_with_plain_ones(small_copy):
    """The same catalogue indexed plain and with flip: two model tags, each with every face, each
    searched with its own index; a query must name the augmentation its catalogue was indexed with."""
    from iffse_lib.catalog import Catalog

    iffse("index", "--tta", "flip", "--quiet", data=small_copy, check=0)
    with Catalog(small_copy, readonly=True) as cat:
        assert set(cat.model_tags()) == {"dlib-resnet-v1", "dlib-resnet-v1+flip"}
        ids_plain, plain = cat.vectors("dlib-resnet-v1")
        ids_flip, flip = cat.vectors("dlib-resnet-v1+flip")
    assert len(ids_plain) == len(ids_flip) >= 8 and (np.sort(ids_plain) == np.sort(ids_flip)).all()
    order = np.argsort(ids_flip)
    moved = np.linalg.norm(flip[order] - plain[np.argsort(ids_plain)], axis=1)
    assert moved.min() > 0.02
    photo = sorted(LFW.glob("*/*.jpg"))[0]  # the first photo collected: it is in the catalogue
    for spec in ("none", "flip"):
        done = iffse("search", photo, "--tta", spec, "--json", "-k", 2, data=small_copy, check=0)
        (face,) = json.loads(done.stdout)
        assert face["matches"][0]["distance"] < 1e-4 and face["matches"][0]["identity"] == photo.parent.name
        assert face["matches"][1]["distance"] > 0.3
    assert "'dlib-resnet-v1+jit3'" in one_line_error(iffse("search", photo, "--tta", "jitter:3", data=small_copy))

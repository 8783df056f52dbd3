"""Forget means erased: after `iffse forget` and the `iffse index` it asks for, no file under the
data folder holds a forgotten vector's bytes or the forgotten photo's bytes."""

from __future__ import annotations

from iffse_lib.catalog import Catalog

from conftest import faces_find_themselves, iffse, one_line_error

TAG = "dlib-resnet-v1"


def _files_holding(data, needle: bytes) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file() and needle in p.read_bytes())


def test_forget_erases_vectors_and_photo_from_every_file(small_copy):
    with Catalog(small_copy, readonly=True) as cat:
        faces = cat.faces(TAG)
        photo_id = int(faces["photo_id"].iloc[2])
        face_ids = faces.loc[faces["photo_id"] == photo_id, "face_id"].tolist()
        _, vectors = cat.vectors(TAG, face_ids)
        photo = cat.photo_path(photo_id).read_bytes()
        n_faces = len(faces)
    secrets = [v.astype("<f4").tobytes() for v in vectors] + [photo]
    assert face_ids and all(_files_holding(small_copy, s) for s in secrets)  # the scan can find them
    assert f"vectors/{TAG}.npy" in _files_holding(small_copy, secrets[0])
    assert f"index/{TAG}.ann" in _files_holding(small_copy, secrets[0])

    out = iffse("forget", "--photo", photo_id, data=small_copy, check=0).stdout
    assert "removed 1 photos" in out and "`iffse index`" not in out or "run `iffse index`" in out
    rebuilt = iffse("index", data=small_copy, check=0).stdout
    assert "rebuilt" in rebuilt and "erased" in rebuilt
    for secret in secrets:
        assert _files_holding(small_copy, secret) == []
    assert faces_find_themselves(small_copy) == n_faces - len(face_ids)
    iffse("check", "--quiet", data=small_copy, check=0)


def test_forget_of_something_unknown_is_an_error_and_remembers_nothing(small_copy):
    for who in (["--owner", "nobody_we_know"], ["--photo", "99999999999999999999999"], ["--photo", "12345"],
                ["--photo", "NotAShortcode"]):
        line = one_line_error(iffse("forget", *who, data=small_copy))
        assert "nothing was removed" in line
    with Catalog(small_copy, readonly=True) as cat:
        assert cat.forgotten_names() == set() and cat.counts()["photos"] == 8


def test_forget_erases_vectors_from_index_shards_too(small_copy):
    iffse("index", "--shards", "2", "--rebuild", "--backend", "flat", data=small_copy, check=0)
    with Catalog(small_copy, readonly=True) as cat:
        faces = cat.faces(TAG)
        photo_id = int(faces["photo_id"].iloc[1])
        _, vectors = cat.vectors(TAG, faces.loc[faces["photo_id"] == photo_id, "face_id"].tolist())
    secrets = [v.astype("<f4").tobytes() for v in vectors]
    assert any(p.startswith(f"index/{TAG}.shards/") for p in _files_holding(small_copy, secrets[0]))
    iffse("forget", "--photo", photo_id, data=small_copy, check=0)
    out = iffse("index", data=small_copy, check=0).stdout
    assert "2 index shards" in out and "rebuilt" in out.split("index shards")[1]
    for secret in secrets:
        assert _files_holding(small_copy, secret) == []


def test_an_ivfpq_index_finds_every_face_and_forgets_like_the_others(small_copy):
    """The compressed index (the default from 1M faces on), built by `iffse index --backend ivfpq`:
    every face finds itself at distance 0 through its codes and the re-rank from the vector file;
    after `forget` the index is rebuilt as ivfpq again (the backend chosen is kept) and neither
    holds nor returns the forgotten faces; `--backend auto` returns to the size's default."""
    from iffse_lib import catalog_index

    out = iffse("index", "--rebuild", "--backend", "ivfpq", data=small_copy, check=0).stdout
    assert "ivfpq" in out
    n_faces = faces_find_themselves(small_copy)
    with Catalog(small_copy, readonly=True) as cat:
        faces = cat.faces(TAG)
        photo_id = int(faces["photo_id"].iloc[0])
        face_ids = faces.loc[faces["photo_id"] == photo_id, "face_id"].tolist()
        _, vectors = cat.vectors(TAG, face_ids)
    iffse("forget", "--photo", photo_id, data=small_copy, check=0)
    rebuilt = iffse("index", data=small_copy, check=0).stdout
    assert "rebuilt" in rebuilt and "erased" in rebuilt
    with Catalog(small_copy, readonly=True) as cat:
        index = catalog_index.load_index(cat, TAG, sync=False)
        assert index.backend == "ivfpq" and not set(face_ids) & set(index.face_ids.tolist())
        got, _ = index.query(vectors, k=3)
        assert not set(face_ids) & set(got.ravel().tolist())
    assert faces_find_themselves(small_copy) == n_faces - len(face_ids)
    for v in vectors:
        assert _files_holding(small_copy, v.astype("<f4").tobytes()) == []
    assert "annoy" in iffse("index", "--backend", "auto", data=small_copy, check=0).stdout
    with Catalog(small_copy, readonly=True) as cat:
        assert catalog_index.load_index(cat, TAG).backend == "annoy"

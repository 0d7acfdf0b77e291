"""cnnlearn.data.faces: the AT&T faces on the real files, and corrupt input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import require

from cnnlearn import data


@pytest.fixture(scope="module")
def faces_dir(data_dir):
    path = data_dir / "att_faces"
    require((path / "s1" / "1.pgm").is_file(), "AT&T faces not found in data dir")
    return path


def test_loads_the_400_originals(faces_dir):
    faces = data.load_att_faces(faces_dir.parent)
    assert faces.images.shape == (400, 112, 92) and faces.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(faces.labels), np.full(40, 10))
    assert faces.labels[0] == 0 and faces.labels[-1] == 39
    assert "PGM" in faces.source
    # The README's checks: pixel range and mean, all images distinct.
    assert faces.images.min() == 0 and faces.images.max() == 251
    assert round(float(faces.images.mean()), 2) == 112.63
    assert len({im.tobytes() for im in faces.images}) == 400


def test_read_pgm_matches_the_payload(faces_dir):
    path = faces_dir / "s1" / "1.pgm"
    image = data.read_pgm(path)
    assert image.shape == (112, 92)
    np.testing.assert_array_equal(
        image.ravel(), np.frombuffer(path.read_bytes()[-10304:], np.uint8)
    )


def test_checksum_mismatch_names_the_file(faces_dir, tmp_path):
    copy = tmp_path / "att_faces"
    shutil.copytree(faces_dir, copy)
    raw = bytearray((copy / "s3" / "5.pgm").read_bytes())
    raw[-1] ^= 0xFF  # one pixel: still a valid PGM, not the original
    (copy / "s3" / "5.pgm").write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"s3/5\.pgm"):
        data.load_att_faces(copy)
    assert data.load_att_faces(copy, verify=False).images.shape == (400, 112, 92)


def test_truncated_pgm_is_a_clear_error(faces_dir, tmp_path):
    bad = tmp_path / "short.pgm"
    bad.write_bytes((faces_dir / "s1" / "1.pgm").read_bytes()[:5000])
    with pytest.raises(data.DataError, match=r"short\.pgm: truncated.*10304"):
        data.read_pgm(bad)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"P6\n2 2\n255\n" + bytes(12), "not a PGM"),
        (b"P5\n2 x\n255\n" + bytes(4), "bad PGM header"),
        (b"P5\n2 2\n255\n" + bytes(5), "size mismatch"),
        (b"P5\n2", "truncated PGM header"),
        (b"P2\n2 1\n15\n3 16\n", "above maxval"),
    ],
)
def test_corrupt_pgm(tmp_path, content, message):
    path = tmp_path / "bad.pgm"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=rf"bad\.pgm.*{message}"):
        data.read_pgm(path)


def test_ascii_pgm_with_comment_and_small_maxval(tmp_path):
    path = tmp_path / "tiny.pgm"
    path.write_bytes(b"P2\n# a comment\n3 2\n15\n0 15 5\n10 0 15\n")
    np.testing.assert_array_equal(data.read_pgm(path), [[0, 255, 85], [170, 0, 255]])


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="s1/1.pgm"):
        data.load_att_faces(tmp_path)


def test_split_per_subject_is_7_3_and_disjoint():
    labels = np.repeat(np.arange(40), 10)
    train, test = data.split_per_subject(labels, 7, seed=0)
    assert len(train) == 280 and len(test) == 120 and not set(train) & set(test)
    np.testing.assert_array_equal(np.bincount(labels[test]), np.full(40, 3))
    again, _ = data.split_per_subject(labels, 7, seed=0)
    np.testing.assert_array_equal(train, again)
    with pytest.raises(ValueError, match="leaves none"):
        data.split_per_subject(labels, 10)

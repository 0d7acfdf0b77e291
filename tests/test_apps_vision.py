"""cnnlearn.apps.vision: the face CNN on real faces, predict_image end to end."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import require

from cnnlearn import data
from cnnlearn.apps import vision


@pytest.fixture(scope="module")
def faces(data_dir):
    require((data_dir / "att_faces" / "s1" / "1.pgm").is_file(), "AT&T faces missing")
    return data.load_att_faces(data_dir)


@pytest.fixture(scope="module")
def face_run(faces):
    return vision.train_faces(faces, epochs=8, augment=False, seed=0)


def test_face_cnn_beats_chance_on_held_out_faces(face_run):
    assert len(face_run.train_index) == 280 and len(face_run.test_index) == 120
    assert face_run.evaluation.accuracy > 0.3  # chance is 1/40


def test_embeddings_and_verification_scores(face_run, faces):
    x = data.preprocess_images(faces.images[face_run.test_index[:9]])
    e = vision.embeddings(face_run.model, x)
    assert e.shape == (9, 64)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)
    similarity, same = vision.verification_scores(
        e, np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    )
    assert len(similarity) == 36 and same.sum() == 9
    assert np.all(similarity <= 1 + 1e-9)


def test_predict_image_pgm_and_resized_png(face_run, data_dir, tmp_path):
    pgm = data_dir / "att_faces" / "s2" / "1.pgm"
    from_pgm = vision.predict_image(
        pgm, face_run.model, [f"s{i}" for i in range(1, 41)]
    )
    assert from_pgm.name == f"s{from_pgm.label + 1}"
    np.testing.assert_allclose(from_pgm.probabilities.sum(), 1.0, rtol=1e-5)
    # the same face as an RGB PNG twice the size: grayscale + resize back
    image = data.read_pgm(pgm)
    big = tf.image.resize(image[..., None], (224, 184), method="nearest").numpy()
    png = tmp_path / "face.png"
    png.write_bytes(tf.io.encode_png(np.repeat(big, 3, axis=-1)).numpy())
    np.testing.assert_array_equal(
        vision.load_image(png, (112, 92)), vision.load_image(pgm, (112, 92))
    )
    assert vision.predict_image(png, face_run.model).label == from_pgm.label


def test_predict_image_bad_files(face_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        vision.predict_image(tmp_path / "nothing.png", face_run.model)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(data.DataError, match="junk.png: not a readable image"):
        vision.predict_image(junk, face_run.model)

"""cnnlearn.apps.text: metrics by hand, Kim's CNN on real SMS, predict_text."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import require

from cnnlearn import data
from cnnlearn.apps import text


def test_binary_metrics_by_hand():
    y_true = [1, 1, 1, 0, 0, 0, 0, 1]
    y_pred = [1, 1, 0, 1, 0, 0, 0, 0]
    m = text.binary_metrics(y_true, y_pred)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 2, 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert text.binary_metrics([0, 0], [0, 0])["f1"] == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        text.binary_metrics([0, 1], [0])


def test_ids_depend_on_the_vocabulary_they_were_fitted_on():
    """Chapter 9: the article's tokenized sentence means something only in the
    vocabulary the model was trained with; another one maps the same words to
    other ids, silently."""
    sentence = np.array(["This is a good book."])
    own = text.make_vectorizer(sentence, 100, 8)
    other = text.make_vectorizer(["a book is good", "this is a book", "good"], 100, 8)
    own_ids, other_ids = np.asarray(own(sentence))[0], np.asarray(other(sentence))[0]
    assert (own_ids[:5] > 1).all() and (other_ids[:5] > 1).all()  # all words known
    assert list(own_ids[:5]) != list(other_ids[:5])
    # padding raw words instead of ids is an error, not a silent mistake
    with pytest.raises(ValueError, match="invalid literal for int"):
        keras.utils.pad_sequences([["This", "is", "a", "good", "book."]], maxlen=10)


def test_vectorizer_maps_words_to_ids():
    vectorizer = text.make_vectorizer(["free prize now", "see you at home"], 100, 6)
    ids = np.asarray(vectorizer(np.array(["FREE prize!", "unseen words"])))
    assert ids.shape == (2, 6) and ids[0, 0] > 1 and ids[0, 1] > 1
    np.testing.assert_array_equal(ids[1, :2], [1, 1])  # out of vocabulary
    assert (ids[:, 2:] == 0).all()  # padding


@pytest.fixture(scope="module")
def split(data_dir):
    path = data_dir / "sms_spam"
    require((path / "SMSSpamCollection").is_file(), "SMS spam not found in data dir")
    return data.split_messages(data.load_sms_spam(path), 0.2, seed=0)


def test_kim_cnn_learns_spam_on_real_data(split):
    train_set, test_set = split
    classifier = text.train_text_cnn(train_set, epochs=2, seed=0)
    predicted = classifier.probabilities(test_set.texts).argmax(axis=1)
    metrics = text.binary_metrics(test_set.labels, predicted)
    # chance (always ham) has F1 0 and accuracy 0.873 on this split
    assert metrics["f1"] > 0.7 and metrics["accuracy"] > 0.9
    out = text.predict_text(classifier, ["This is a good book.", test_set.texts[0]])
    assert [o["text"] for o in out] == ["This is a good book.", test_set.texts[0]]
    assert all(o["label"] in ("ham", "spam") and 0 <= o["p_spam"] <= 1 for o in out)
    assert text.predict_text(classifier, "hello")[0]["text"] == "hello"

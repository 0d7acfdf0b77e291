"""cnnlearn.data.sms: the SMS Spam Collection, its duplicates and bad lines."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import require

from cnnlearn import data


@pytest.fixture(scope="module")
def sms_dir(data_dir):
    path = data_dir / "sms_spam"
    require((path / "SMSSpamCollection").is_file(), "SMS spam not found in data dir")
    return path


@pytest.fixture(scope="module")
def messages(sms_dir):
    return data.load_sms_spam(sms_dir)


def test_counts_of_the_original(messages):
    assert len(messages) == 5574 and int(messages.labels.sum()) == 747
    # 54 lines start with a quote; without quote handling none is merged.
    assert sum(t.startswith('"') for t in messages.texts) == 54


def test_deduplicate(messages):
    unique = data.deduplicate(messages)
    assert len(unique) == 5171 and int(unique.labels.sum()) == 653
    assert len(set(unique.texts)) == len(unique)


def test_split_after_dedup_has_no_overlap_and_is_stratified(messages):
    train, test = data.split_messages(messages, 0.2, seed=0)
    assert len(train) + len(test) == 5171
    assert not set(train.texts) & set(test.texts)
    assert int(test.labels.sum()) == round(653 * 0.2)
    assert abs(train.labels.mean() - test.labels.mean()) < 0.005
    again, _ = data.split_messages(messages, 0.2, seed=0)
    assert list(again.texts) == list(train.texts)


def test_checksum_mismatch(sms_dir, tmp_path):
    shutil.copy(sms_dir / "SMSSpamCollection", tmp_path)
    path = tmp_path / "SMSSpamCollection"
    path.write_bytes(path.read_bytes().replace(b"ham\t", b"spam\t", 1))
    with pytest.raises(data.DataError, match="SMSSpamCollection: SHA-256 mismatch"):
        data.load_sms_spam(tmp_path)
    assert int(data.load_sms_spam(tmp_path, verify=False).labels.sum()) == 748


@pytest.mark.parametrize(
    "content, message",
    [
        (b"ham\thello\nspam no tab here\n", r"line 2: expected 'label<TAB>text'"),
        (b"ham\ta\tb\n", "line 1:.*found 3"),
        (b"ham\thi\nSPAM\tbuy\n", "line 2: unknown label 'SPAM'"),
        (b"ham\thi\n\nham\tyo\n", "line 2"),
        (b"ham\t\xff\xfe\n", "not UTF-8"),
    ],
)
def test_malformed_lines(content, message):
    with pytest.raises(data.DataError, match=f"sms.tsv: {message}"):
        data.parse_sms(content, "sms.tsv")


def test_quotes_are_plain_characters():
    parsed = data.parse_sms(b'ham\t"Hi\nspam\tWIN now"\n', "x")
    assert list(parsed.texts) == ['"Hi', 'WIN now"'] and list(parsed.labels) == [0, 1]


def test_conflicting_duplicate_labels():
    messages = data.parse_sms(b"ham\tsame\nspam\tsame\n")
    with pytest.raises(data.DataError, match="both ham and spam"):
        data.deduplicate(messages)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="SMSSpamCollection"):
        data.load_sms_spam(tmp_path)


def test_split_rejects_bad_fraction():
    messages = data.Messages(np.array(["a", "b"], dtype=object), np.array([0, 1]))
    with pytest.raises(ValueError, match="test_fraction"):
        data.split_messages(messages, 1.0)

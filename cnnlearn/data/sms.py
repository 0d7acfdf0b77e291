"""The UCI SMS Spam Collection v.1: loader, de-duplication, split (chapter 9).

5,574 English SMS messages labelled ``ham`` or ``spam`` (Almeida, Gómez Hidalgo
and Yamakami, DocEng 2011; CC BY 4.0). Two traps this module avoids:

* the file is ``label<TAB>text`` with **no quoting**: 54 messages start with a
  ``"``, and a CSV reader with default quoting merges lines (5,572 rows);
* only 5,171 messages are distinct, so a random split of the raw lines puts
  copies of test messages into the training set. :func:`split_messages`
  de-duplicates first.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlearn.data.load import DataError

__all__ = [
    "SMS_LABELS",
    "SMS_SPAM_URL",
    "Messages",
    "deduplicate",
    "load_sms_spam",
    "parse_sms",
    "split_messages",
]

SMS_LABELS = ("ham", "spam")  # label index: spam = 1
SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
_FILE = "SMSSpamCollection"
_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"


@dataclass
class Messages:
    """Texts and labels (0 = ham, 1 = spam)."""

    texts: np.ndarray  # object array of str
    labels: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index) -> Messages:
        return Messages(self.texts[index], self.labels[index])


def parse_sms(content: bytes, source: str = "<bytes>") -> Messages:
    """Parse ``label<TAB>text`` lines, without any quote handling.

    A line without exactly one tab, with a label other than ``ham``/``spam``, or
    bytes that are not UTF-8 raise :class:`DataError` naming ``source`` and the
    line number.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text ({exc})") from None
    texts, labels = [], []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the file ends with a newline
    for number, line in enumerate(lines, start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{source}: line {number}: expected 'label<TAB>text' (2 fields), "
                f"found {len(fields)}: {line[:60]!r}"
            )
        label, message = fields
        if label not in SMS_LABELS:
            raise DataError(
                f"{source}: line {number}: unknown label {label!r}, expected one "
                f"of {SMS_LABELS}"
            )
        texts.append(message)
        labels.append(SMS_LABELS.index(label))
    return Messages(np.array(texts, dtype=object), np.array(labels, dtype=np.int64))


def _find_file(data_dir: str | os.PathLike | None) -> Path | None:
    if data_dir is not None:
        candidates = [Path(data_dir), Path(data_dir) / "sms_spam"]
    else:
        env = os.environ.get("CNNLEARN_DATA_DIR")
        candidates = [Path(env) / "sms_spam"] if env else []
    for directory in candidates:
        if (directory / _FILE).is_file():
            return directory / _FILE
    return None


def _download() -> tuple[bytes, str]:
    import keras  # on demand, for its download cache: cnnlearn.data loads no TF

    archive = keras.utils.get_file("sms_spam_collection.zip", SMS_SPAM_URL)
    with zipfile.ZipFile(archive) as zf:
        return zf.read(_FILE), f"{archive}:{_FILE}"


def load_sms_spam(
    data_dir: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    download: bool = True,
) -> Messages:
    """Load all 5,574 messages (duplicates included) in file order.

    Looks for ``SMSSpamCollection`` in ``data_dir`` (or ``data_dir/sms_spam``),
    else ``$CNNLEARN_DATA_DIR/sms_spam``; otherwise downloads the UCI zip (with
    ``download``). ``verify`` checks the SHA-256 of the original file. Used in
    chapter 9.
    """
    path = _find_file(data_dir)
    if path is not None:
        content, source = path.read_bytes(), str(path)
    elif data_dir is not None or not download:
        raise FileNotFoundError(
            f"{_FILE} not found in {data_dir or '$CNNLEARN_DATA_DIR/sms_spam'}"
        )
    else:
        content, source = _download()
    if verify:
        digest = hashlib.sha256(content).hexdigest()
        if digest != _SHA256:
            raise DataError(
                f"{source}: SHA-256 mismatch: expected {_SHA256}, found {digest} "
                "(not the original file; pass verify=False to load it anyway)"
            )
    return parse_sms(content, source)


def deduplicate(messages: Messages) -> Messages:
    """Keep the first copy of every distinct text, in file order.

    A text that occurs with both labels would be ambiguous and raises
    :class:`DataError` (the original file has none).
    """
    first: dict[str, int] = {}
    for i, (text, label) in enumerate(zip(messages.texts, messages.labels)):
        j = first.setdefault(text, i)
        if messages.labels[j] != label:
            raise DataError(f"message {text[:40]!r} occurs as both ham and spam")
    return messages[np.array(sorted(first.values()), dtype=np.int64)]


def split_messages(
    messages: Messages, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Messages, Messages]:
    """De-duplicate, then split stratified by label: ``(train, test)``.

    Each class keeps its share in both parts; no text is in both (the split is
    made after :func:`deduplicate`).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    unique = deduplicate(messages)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(unique.labels):
        index = rng.permutation(np.flatnonzero(unique.labels == label))
        n_test = int(round(len(index) * test_fraction))
        test.extend(index[:n_test])
        train.extend(index[n_test:])
    return unique[rng.permutation(train)], unique[np.sort(test)]

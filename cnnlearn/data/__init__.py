"""Data: load the original files, check them, clean them (chapters 3 and 4).

``cnnlearn.data.load`` reads the IDX originals with checksums;
``cnnlearn.data.quality`` validates, de-duplicates, cleans and normalizes.
``cnnlearn.data.faces``, ``.sms`` and ``.recsys`` load the chapter 9 data (AT&T
faces, SMS spam, MovieLens 100K and the session simulator).
Everything is importable from ``cnnlearn.data`` directly.
"""

from cnnlearn.data.faces import (
    ATT_FACES_ACKNOWLEDGEMENT,
    Faces,
    find_faces_dir,
    load_att_faces,
    read_pgm,
    split_per_subject,
)
from cnnlearn.data.load import (
    CLASS_NAMES,
    DATASETS,
    DEBIAN_FASHION_MNIST_DIR,
    MAX_IDX_BYTES,
    DataError,
    check_images,
    find_dataset_dir,
    load_dataset,
    load_idx,
    preprocess_images,
    take_fraction,
)
from cnnlearn.data.quality import (
    ValidationReport,
    clean,
    describe,
    find_cross_duplicates,
    find_duplicates,
    find_near_duplicates,
    normalization_layer,
    standardization_stats,
    validate_images,
)
from cnnlearn.data.recsys import (
    MOVIELENS_100K_URL,
    Sessions,
    last_window,
    leave_last_out,
    load_movielens_100k,
    parse_movielens,
    sequence_windows,
    simulate_sessions,
)
from cnnlearn.data.sms import (
    SMS_LABELS,
    SMS_SPAM_URL,
    Messages,
    deduplicate,
    load_sms_spam,
    parse_sms,
    split_messages,
)

__all__ = [
    "ATT_FACES_ACKNOWLEDGEMENT",
    "CLASS_NAMES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "MAX_IDX_BYTES",
    "DataError",
    "Faces",
    "MOVIELENS_100K_URL",
    "Messages",
    "SMS_LABELS",
    "SMS_SPAM_URL",
    "Sessions",
    "ValidationReport",
    "check_images",
    "clean",
    "deduplicate",
    "describe",
    "find_cross_duplicates",
    "find_dataset_dir",
    "find_duplicates",
    "find_faces_dir",
    "find_near_duplicates",
    "last_window",
    "leave_last_out",
    "load_att_faces",
    "load_dataset",
    "load_idx",
    "load_movielens_100k",
    "load_sms_spam",
    "normalization_layer",
    "parse_movielens",
    "parse_sms",
    "preprocess_images",
    "read_pgm",
    "sequence_windows",
    "simulate_sessions",
    "split_messages",
    "split_per_subject",
    "standardization_stats",
    "take_fraction",
    "validate_images",
]

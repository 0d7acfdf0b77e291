"""Data: load the original files, check them, clean them (chapters 3 and 4).

``cnnlearn.data.load`` reads the IDX originals with checksums;
``cnnlearn.data.quality`` validates, de-duplicates, cleans and normalizes.
Everything is importable from ``cnnlearn.data`` directly.
"""

from cnnlearn.data.load import (
    CLASS_NAMES,
    DATASETS,
    DEBIAN_FASHION_MNIST_DIR,
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
    find_cross_duplicates,
    find_duplicates,
    find_near_duplicates,
    normalization_layer,
    standardization_stats,
    validate_images,
)

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "DataError",
    "ValidationReport",
    "check_images",
    "clean",
    "find_cross_duplicates",
    "find_dataset_dir",
    "find_duplicates",
    "find_near_duplicates",
    "load_dataset",
    "load_idx",
    "normalization_layer",
    "preprocess_images",
    "standardization_stats",
    "take_fraction",
    "validate_images",
]

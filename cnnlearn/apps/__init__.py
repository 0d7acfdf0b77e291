"""Three applications, from raw input to prediction (chapter 9).

``cnnlearn.apps.vision`` (Fashion-MNIST products, AT&T face identification and
verification, ``predict_image``), ``cnnlearn.apps.text`` (SMS spam with Kim's
CNN, ``predict_text``) and ``cnnlearn.apps.recommend`` (Caser next-item
recommendation, HitRate@10 / NDCG@10 and the baselines);
``cnnlearn.apps.fitting`` is the plain compile-and-fit the text and
recommendation models share. Every public name is also importable from here,
as ``apps.predict_text``; the chapter reads them by application,
``from cnnlearn.apps import text``.
"""

from cnnlearn.apps.fitting import FitResult, fit_ids
from cnnlearn.apps.recommend import (
    CaserRun,
    caser_scores,
    evaluate_scores,
    hit_rate_at_k,
    ndcg_at_k,
    oracle_scores,
    popularity_scores,
    random_scores,
    ranks_of_targets,
    recommend_items,
    train_caser,
)
from cnnlearn.apps.text import (
    TextClassifier,
    binary_metrics,
    make_vectorizer,
    predict_text,
    train_text_cnn,
)
from cnnlearn.apps.vision import (
    FaceRun,
    Prediction,
    embeddings,
    load_image,
    predict_image,
    train_faces,
    verification_scores,
)

__all__ = [
    "CaserRun",
    "FaceRun",
    "FitResult",
    "Prediction",
    "TextClassifier",
    "binary_metrics",
    "caser_scores",
    "embeddings",
    "evaluate_scores",
    "fit_ids",
    "hit_rate_at_k",
    "load_image",
    "make_vectorizer",
    "ndcg_at_k",
    "oracle_scores",
    "popularity_scores",
    "predict_image",
    "predict_text",
    "random_scores",
    "ranks_of_targets",
    "recommend_items",
    "train_caser",
    "train_faces",
    "train_text_cnn",
    "verification_scores",
]

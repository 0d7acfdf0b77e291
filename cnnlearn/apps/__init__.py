"""Three applications, from raw input to prediction (chapter 9).

``cnnlearn.apps.vision`` (Fashion-MNIST products, AT&T face identification and
verification, ``predict_image``), ``cnnlearn.apps.text`` (SMS spam with Kim's
CNN, ``predict_text``) and ``cnnlearn.apps.recommend`` (Caser next-item
recommendation, HitRate@10 / NDCG@10 and the baselines). Import the submodule
you need: ``from cnnlearn.apps import text``.
"""

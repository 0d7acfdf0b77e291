"""Automated hyperparameter search with KerasTuner (chapter 7).

:func:`search_space` turns KerasTuner hyperparameters into a CNN: the number of
convolution blocks, filters per block, kernel size, batch norm, dropout, dense
units, learning rate (log scale) and optimizer. :class:`CNNHyperModel` adds a
parameter budget, so that "better" cannot simply mean "bigger": an over-budget
model is rejected before it trains (``"reject"``) or has its score cut
(``"penalize"``). :func:`run_search` runs Hyperband, RandomSearch or Bayesian
optimization (KerasTuner's, not ours) on the share of the training set its
:class:`~cnnlearn.config.RunConfig` names, retrains the best configuration on
the full training set, evaluates it on the test set once and writes
``trials.csv``, ``best_hparams.json``, ``best_model.keras`` and
``search.json``. A search resumes: run it again on the
same directory and finished trials are read back, not retrained.

The package re-exports the public names (``__all__``) of its two modules,
:mod:`~cnnlearn.tune.space` and :mod:`~cnnlearn.tune.search`.
"""

from cnnlearn.tune.search import (
    DEFAULT_BATCH_SIZE,
    SEARCH_FILES,
    SearchResult,
    fit_and_test,
    make_tuner,
    publish_search,
    retrain,
    run_search,
    summarize_trials,
    trials_table,
)
from cnnlearn.tune.space import (
    ALGORITHMS,
    BUDGET_POLICIES,
    CNNHyperModel,
    build_model,
    check_budget,
    count_params,
    sample_configurations,
    search_space,
    smallest_params,
    space_table,
)

__all__ = [
    "ALGORITHMS",
    "BUDGET_POLICIES",
    "DEFAULT_BATCH_SIZE",
    "SEARCH_FILES",
    "CNNHyperModel",
    "SearchResult",
    "build_model",
    "check_budget",
    "count_params",
    "fit_and_test",
    "make_tuner",
    "publish_search",
    "retrain",
    "run_search",
    "sample_configurations",
    "search_space",
    "smallest_params",
    "space_table",
    "summarize_trials",
    "trials_table",
]

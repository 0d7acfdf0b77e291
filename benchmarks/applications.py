"""Benchmark: the three applications of chapter 9, trained on the real data.

Writes ``benchmarks/results/applications.json``; chapter 9 reads it.

* vision: Fashion-MNIST with the article's CNN and the BN CNN (full training
  set, test accuracy per epoch, confusion matrix); AT&T faces, 7 training
  images per subject, 3 held out, several seeds (identification accuracy,
  verification ROC AUC of the embeddings);
* text: Kim's CNN on the de-duplicated, stratified SMS spam split, several
  seeds (spam precision, recall, F1), and how many test messages a naive split
  of the raw lines would leak;
* recommendation: Caser against random, popularity and the oracle on the
  simulator (HitRate@10, NDCG@10), and on MovieLens 100K when it can be
  downloaded.

    python benchmarks/applications.py                 # everything (~20 CPU-minutes)
    python benchmarks/applications.py --only text     # one part

Fashion-MNIST trains with the pinned plan ``train.PLAIN`` (the recipe's batch,
float32, ``fit(numpy)``); the faces CNN with :func:`cnnlearn.compute.plan`'s
choice (its batch of 16 is never grown: 280 images); text and recommendation
with a plain ``Model.fit``. Every run records the plan it trained with and when
it was measured. ``--only`` replaces those parts and keeps the others; each
part records its own config and the notes say which part came from which run.

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import roc_auc_score
from train_mnist import TestAccuracy  # benchmarks/ is on the path when run

from cnnlearn import data, models, train
from cnnlearn._io import write_json
from cnnlearn.apps import recommend, text, vision
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "applications.json"
PARTS = ("recommend", "text", "faces", "fashion")
FASHION_PLAN = train.PLAIN  # the recipes' batch sizes (32, 128) in float32
# name: (batch size, epochs, learning rate, schedule)
FASHION = {
    "seed_cnn": (32, 3, 1e-3, "constant"),
    "bn_cnn": (128, 10, 2e-3, "cosine"),
}


def fashion(seed: int) -> dict:
    (x_train, y_train), (x_test, y_test) = data.load_dataset("fashion_mnist")
    x_train, x_test = data.preprocess_images(x_train), data.preprocess_images(x_test)
    runs = {}
    builders = {
        "seed_cnn": models.seed_cnn,
        "bn_cnn": lambda: models.strong_cnn(augment=False),
    }
    for name, (batch, epochs, lr, schedule) in FASHION.items():
        model = builders[name]()
        keras.utils.set_random_seed(seed)
        accuracy = TestAccuracy(x_test, y_test)
        result = train.fit(
            model,
            x_train,
            y_train,
            epochs=epochs,
            batch_size=batch,
            validation_split=0.0,
            learning_rate=lr,
            lr_schedule=schedule,
            seed=seed,
            callbacks=[accuracy],
            verbose=2,
            plan=FASHION_PLAN,
        )
        evaluation = train.evaluate(
            result.model, x_test, y_test, data.CLASS_NAMES["fashion_mnist"]
        )
        runs[name] = {
            "params": int(result.model.count_params()),
            "batch_size": result.plan.batch_size,  # what it trained with
            "epochs": epochs,
            "median_seconds_per_epoch": result.seconds_per_epoch,
            "test_accuracy_per_epoch": accuracy.values,
            "test_accuracy": evaluation.accuracy,
            "per_class": evaluation.per_class,
            "confusion_matrix": evaluation.confusion_matrix.tolist(),
            "plan": result.plan.to_dict(),
            "measured_at": provenance.measured_at(),
        }
        print(f"fashion {name}: {evaluation.accuracy:.4f}", flush=True)
    return {"class_names": data.CLASS_NAMES["fashion_mnist"], "runs": runs}


def faces(seeds: list[int], epochs: int) -> dict:
    dataset = data.load_att_faces()
    x = data.preprocess_images(dataset.images)
    runs = []
    for seed in seeds:
        run = vision.train_faces(dataset, epochs=epochs, seed=seed)
        embedded = vision.embeddings(run.model, x[run.test_index])
        similarity, same = vision.verification_scores(
            embedded, dataset.labels[run.test_index]
        )
        runs.append(
            {
                "seed": seed,
                "test_accuracy": run.evaluation.accuracy,
                "train_seconds": run.result.train_seconds,
                "verification_auc": float(roc_auc_score(same, similarity)),
                "n_train": len(run.train_index),
                "n_test": len(run.test_index),
                "plan": run.result.plan.to_dict(),
                "measured_at": provenance.measured_at(),
            }
        )
        print(f"faces seed {seed}: {run.evaluation.accuracy:.4f}", flush=True)
    accuracies = [r["test_accuracy"] for r in runs]
    return {
        "source": dataset.source.split(" in ")[0],
        "acknowledgement": data.ATT_FACES_ACKNOWLEDGEMENT,
        "epochs": epochs,
        "params": int(run.model.count_params()),
        "runs": runs,
        "mean_test_accuracy": float(np.mean(accuracies)),
        "min_test_accuracy": float(np.min(accuracies)),
        "mean_verification_auc": float(np.mean([r["verification_auc"] for r in runs])),
    }


def naive_split_leak(messages: data.Messages, seed: int) -> dict:
    """Test lines with an exact copy in train when the raw lines are split 80/20."""
    order = np.random.default_rng(seed).permutation(len(messages))
    n_test = int(round(0.2 * len(messages)))
    test, train_texts = order[:n_test], set(messages.texts[order[n_test:]])
    leaked = sum(t in train_texts for t in messages.texts[test])
    return {"n_test": n_test, "leaked": int(leaked)}


def text_part(seeds: list[int], epochs: int) -> dict:
    messages = data.load_sms_spam()
    unique = data.deduplicate(messages)
    runs = []
    for seed in seeds:
        train_set, test_set = data.split_messages(messages, 0.2, seed)
        classifier = text.train_text_cnn(train_set, epochs=epochs, seed=seed)
        predicted = classifier.probabilities(test_set.texts).argmax(axis=1)
        metrics = text.binary_metrics(test_set.labels, predicted)
        runs.append(
            {
                "seed": seed,
                "n_train": len(train_set),
                "n_test": len(test_set),
                "train_seconds": classifier.result.train_seconds,
                **metrics,
                "measured_at": provenance.measured_at(),
            }
        )
        print(f"text seed {seed}: F1 {metrics['f1']:.4f}", flush=True)
    return {
        "lines": len(messages),
        "spam_lines": int(messages.labels.sum()),
        "distinct": len(unique),
        "distinct_spam": int(unique.labels.sum()),
        "epochs": epochs,
        "params": int(classifier.model.count_params()),
        "runs": runs,
        "mean_f1": float(np.mean([r["f1"] for r in runs])),
        "min_f1": float(np.min([r["f1"] for r in runs])),
        "naive_split_leak": naive_split_leak(messages, seeds[0]),
    }


def ranking(sessions: data.Sessions, seed: int, epochs: int) -> dict:
    history, targets = data.leave_last_out(sessions)
    scores = {
        "random": recommend.random_scores(sessions.n_users, sessions.n_items, seed),
        "popularity": recommend.popularity_scores(history, sessions.n_items),
    }
    if sessions.truth is not None:
        scores["oracle"] = recommend.oracle_scores(sessions.truth, history)
    run = recommend.train_caser(history, sessions.n_items, epochs=epochs, seed=seed)
    scores["caser"] = recommend.caser_scores(run, history)
    methods = {m: recommend.evaluate_scores(s, targets) for m, s in scores.items()}
    methods["caser"]["train_seconds"] = run.train_seconds
    return {
        "source": sessions.source,
        "users": sessions.n_users,
        "items": sessions.n_items,
        "interactions": int(sum(len(s) for s in sessions.sequences)),
        "training_windows": run.n_examples,
        "epochs": epochs,
        "params": int(run.model.count_params()),
        "methods": methods,
        "caser_over_popularity_hr": methods["caser"]["hr@10"]
        / methods["popularity"]["hr@10"],
        "measured_at": provenance.measured_at(),
    }


def recommend_part(seed: int, epochs: int) -> dict:
    out = {"simulator": ranking(data.simulate_sessions(seed=seed), seed, epochs)}
    print(f"simulator: {out['simulator']['methods']}", flush=True)
    try:
        movielens = data.load_movielens_100k()
    except OSError as exc:
        out["movielens_100k"] = {"unavailable": str(exc).splitlines()[0][:200]}
    else:
        out["movielens_100k"] = ranking(movielens, seed, epochs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {PARTS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    parts = args.only.split(",") if args.only else list(PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {list(PARTS)}")
    seeds = [args.seed, args.seed + 1, args.seed + 2]
    config = {k: v for k, v in vars(args).items() if k != "output"}
    every = {
        "fashion": {"seed": args.seed, "runs": FASHION, "plan": FASHION_PLAN},
        "faces": {"seeds": seeds, "epochs": 60, "batch_size": 16, "plan": None},
        "text": {"seeds": seeds, "epochs": 5},
        "recommend": {"seed": args.seed, "epochs": 10},
    }
    config["parts"] = {part: every[part] for part in parts}
    record = provenance.start(config)
    report = json.loads(args.output.read_text()) if args.output.exists() else {}
    kept = [p for p in PARTS if p in report and p not in parts]
    provenance.mark_sources(record, report.get("provenance"), parts, kept)
    report["provenance"] = record
    jobs = {
        "fashion": lambda: fashion(args.seed),
        "faces": lambda: faces(seeds, epochs=60),
        "text": lambda: text_part(seeds, epochs=5),
        "recommend": lambda: recommend_part(args.seed, epochs=10),
    }
    for part in parts:
        start = time.perf_counter()
        report[part] = jobs[part]()
        report[part]["wall_seconds"] = time.perf_counter() - start
        report[part]["config"] = config["parts"][part]
        report["machine"] = provenance.machine()
        report["seed"] = args.seed
        args.output.parent.mkdir(parents=True, exist_ok=True)
        provenance.finish(record)
        write_json(args.output, report)  # after every part: partial progress is kept
        print(f"{part}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

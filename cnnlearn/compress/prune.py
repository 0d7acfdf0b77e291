"""Magnitude pruning for Keras 3 models, without tf_keras (chapter 6).

The weights with the smallest absolute value matter least; pruning sets them to
zero and keeps them there while the rest of the network fine-tunes around the
gap. A schedule (:mod:`cnnlearn.compress.schedules`) says *when* masks are
recomputed and *how many* weights each holds at that step (same semantics as
tensorflow-model-optimization: ``begin_step``, ``end_step``, ``frequency``,
initial and final sparsity); the :class:`MagnitudePruning` callback recomputes
the masks on schedule (:meth:`~MagnitudePruning.update_masks`, with
:func:`magnitude_mask`) and re-applies them before and after every training
step (:meth:`~MagnitudePruning.apply_masks`). :func:`strip` returns a plain
model to export, :func:`sparsity_report` says what each layer holds.

Unlike tfmot, a schedule that can never reach its target during the run it is
given (``frequency=100`` on a short run, ``end_step`` past the last step) raises
a ``ValueError`` when training starts instead of silently pruning less.
"""

from __future__ import annotations

from collections.abc import Mapping

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn import train
from cnnlearn.compress.common import copy_model
from cnnlearn.compress.schedules import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
    check_sparsity,
    ramp_end_step,
)

__all__ = [
    "FIT_PLAN",
    "MagnitudePruning",
    "is_m_by_n_sparse",
    "m_by_n_mask",
    "magnitude_mask",
    "prunable_layers",
    "prune_model",
    "sparsity_report",
    "strip",
]


#: ``cnnlearn.train.fit(..., plan=FIT_PLAN)``: the masks are re-applied after
#: every step, so Keras must return to Python after every step.
FIT_PLAN = {"steps_per_execution": 1, "batch_scale": 1}


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """A 0/1 mask keeping the ``round(n * (1 - sparsity))`` largest ``|weights|``."""
    check_sparsity(sparsity)
    flat = np.abs(np.asarray(weights)).ravel()
    keep = int(round(flat.size * (1.0 - sparsity)))
    mask = np.zeros(flat.size, dtype=np.float32)
    if keep:
        mask[np.argsort(-flat, kind="stable")[:keep]] = 1.0
    return mask.reshape(np.shape(weights))


def m_by_n_mask(weights: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """Keep the ``n`` largest of every ``m`` consecutive weights along the inputs.

    The groups run along the input-channel axis (the second to last axis of a
    Dense or Conv2D kernel), the layout sparse tensor cores accelerate (2:4).
    Raises ``ValueError`` if that axis is not a multiple of ``m``.
    """
    w = np.asarray(weights)
    if not 0 < n < m:
        raise ValueError(f"need 0 < n < m for n:m sparsity, got {n}:{m}")
    if w.ndim < 2 or w.shape[-2] % m:
        raise ValueError(
            f"n:m sparsity needs a kernel whose input axis is a multiple of {m}, "
            f"got shape {w.shape}"
        )
    moved = np.moveaxis(np.abs(w), -2, -1)  # (..., out, in)
    groups = moved.reshape(*moved.shape[:-1], -1, m)
    order = np.argsort(-groups, axis=-1, kind="stable")
    mask = np.zeros_like(groups, dtype=np.float32)
    np.put_along_axis(mask, order[..., :n], 1.0, axis=-1)
    return np.moveaxis(mask.reshape(moved.shape), -1, -2)


def is_m_by_n_sparse(weights: np.ndarray, n: int = 2, m: int = 4) -> bool:
    """Whether every group of ``m`` inputs holds at most ``n`` nonzero weights."""
    w = np.moveaxis(np.asarray(weights), -2, -1)
    if w.shape[-1] % m:
        return False
    groups = w.reshape(*w.shape[:-1], -1, m)
    return bool(np.all(np.count_nonzero(groups, axis=-1) <= n))


def prunable_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers with a ``kernel`` of rank >= 2 (Dense, Conv*), nested models included.

    Biases and batch-norm parameters are few and sensitive; like tfmot we leave
    them dense.
    """
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and len(kernel.shape) >= 2:
            found.append(layer)
    return found


class MagnitudePruning(keras.callbacks.Callback):
    """Prune a model's kernels by magnitude while it trains.

    Parameters
    ----------
    schedule
        One :class:`PruningSchedule` for every prunable layer, or a mapping
        ``{layer name: schedule}`` that prunes only the layers named (e.g. a
        higher sparsity on the big Dense layer).
    m_by_n
        ``(n, m)``, e.g. ``(2, 4)``: structured n:m sparsity instead of the
        schedule's unstructured masks (the schedule then only says when). Layers
        whose input axis is not a multiple of ``m`` are left dense, and listed in
        :attr:`skipped`.

    The masks are recomputed at each pruning step from the current weights and
    re-applied after every training step, so the optimizer can never revive a
    pruned weight. Weights that are already zero when training starts (a pruned
    model loaded from disk) stay zero until the first pruning step. Used in
    chapter 6.
    """

    def __init__(
        self,
        schedule: PruningSchedule | Mapping[str, PruningSchedule],
        m_by_n: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.schedule = schedule
        self.m_by_n = m_by_n
        self.masks: dict[str, np.ndarray] = {}
        self.skipped: list[str] = []
        self._tensors: dict[str, object] = {}
        self._layers: dict[str, tuple[keras.layers.Layer, PruningSchedule]] = {}

    def _select(self) -> None:
        layers = {layer.name: layer for layer in prunable_layers(self.model)}
        if isinstance(self.schedule, Mapping):
            unknown = sorted(set(self.schedule) - set(layers))
            if unknown:
                raise ValueError(
                    f"no prunable layer named {unknown}: expected some of "
                    f"{sorted(layers)}"
                )
            chosen = {name: (layers[name], s) for name, s in self.schedule.items()}
        else:
            chosen = {name: (layer, self.schedule) for name, layer in layers.items()}
        if not chosen:
            raise ValueError("the model has no prunable layer (Dense or Conv kernel)")
        if self.m_by_n is not None:
            n, m = self.m_by_n
            self.skipped = [
                name
                for name, (layer, _) in chosen.items()
                if layer.kernel.shape[-2] % m
            ]
            chosen = {k: v for k, v in chosen.items() if k not in self.skipped}
        self._layers = chosen

    def on_train_begin(self, logs=None):
        per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if per_call > 1:
            raise ValueError(
                f"MagnitudePruning needs one training step per call, but the model "
                f"was compiled with steps_per_execution={per_call}: pass "
                f"plan=prune.FIT_PLAN to cnnlearn.train.fit"
            )
        self._select()
        self._steps = 0  # counted here: a frozen model's optimizer never steps
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if steps and epochs:
            for schedule in {id(s): s for _, s in self._layers.values()}.values():
                schedule.check(int(steps) * int(epochs))
        for name, (layer, _) in self._layers.items():
            if name not in self.masks:  # keep what a loaded, pruned model holds
                kernel = np.asarray(layer.kernel.numpy())
                self._set_mask(name, (kernel != 0).astype(np.float32))

    def _set_mask(self, name: str, mask: np.ndarray) -> None:
        self.masks[name] = mask
        self._tensors[name] = keras.ops.convert_to_tensor(mask, dtype="float32")

    def on_train_batch_begin(self, batch, logs=None):
        self.update_masks(self._steps)
        self.apply_masks()

    def on_train_batch_end(self, batch, logs=None):
        self.apply_masks()
        self._steps += 1

    def update_masks(self, step: int) -> None:
        """Recompute the mask of every layer whose schedule prunes at ``step``,
        from the kernel's current magnitudes (or its n:m groups)."""
        for name, (layer, schedule) in self._layers.items():
            if schedule.should_prune(step):
                kernel = np.asarray(layer.kernel.numpy())
                if self.m_by_n is not None:
                    mask = m_by_n_mask(kernel, *self.m_by_n)
                else:
                    mask = magnitude_mask(kernel, schedule.sparsity(step))
                self._set_mask(name, mask)

    def apply_masks(self) -> None:
        """Multiply every pruned kernel by its mask, ``w ← w ⊙ m``."""
        for name, (layer, _) in self._layers.items():
            kernel = layer.kernel
            kernel.assign(keras.ops.multiply(kernel.value, self._tensors[name]))


def strip(model: keras.Model, pruning: MagnitudePruning | None = None) -> keras.Model:
    """A plain, uncompiled copy of ``model`` for export, zeros enforced.

    Our pruning wraps nothing, so unlike tfmot's ``strip_pruning`` there are no
    wrapper layers to remove: the copy has the same architecture and weights,
    with ``pruning``'s masks (if given) multiplied in once more, and carries no
    optimizer state. Save it, convert it (:func:`cnnlearn.compress.quantize.convert`)
    or gzip it.
    """
    clone = copy_model(model)
    if pruning is not None:
        layers = {layer.name: layer for layer in prunable_layers(clone)}
        for name, mask in pruning.masks.items():
            kernel = layers[name].kernel
            kernel.assign(kernel.numpy() * mask)
    return clone


def sparsity_report(model: keras.Model) -> list[dict]:
    """One row per prunable layer: its kernel's size, nonzeros and sparsity.

    A last row ``"total"`` sums them. Used in chapter 6 and by ``cnnlearn
    compress``.
    """
    rows = []
    for layer in prunable_layers(model):
        kernel = np.asarray(layer.kernel.numpy())
        nonzero = int(np.count_nonzero(kernel))
        rows.append(
            {
                "layer": layer.name,
                "kind": type(layer).__name__,
                "shape": list(kernel.shape),
                "weights": int(kernel.size),
                "nonzero": nonzero,
                "sparsity": 1.0 - nonzero / kernel.size,
            }
        )
    total = sum(r["weights"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    rows.append(
        {
            "layer": "total",
            "kind": "",
            "shape": [],
            "weights": total,
            "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / total if total else 0.0,
        }
    )
    return rows


def prune_model(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    sparsity: float | Mapping[str, float],
    *,
    epochs: int = 2,
    batch_size: int = 128,
    initial_sparsity: float = 0.0,
    frequency: int = 10,
    ramp: float = 0.7,
    m_by_n: tuple[int, int] | None = None,
    learning_rate: float = 5e-4,
    validation_split: float = 0.1,
    seed: int = 0,
    device: str = "auto",
    verbose: int | str = 0,
) -> tuple[keras.Model, MagnitudePruning]:
    """Fine-tune a trained ``model`` while pruning it; return the stripped copy.

    ``sparsity`` is one target for every Dense and Conv kernel, or
    ``{layer name: target}``. Sparsity rises along a :class:`PolynomialDecay`
    from ``initial_sparsity`` to the target over the first ``ramp`` of the
    ``epochs``; the rest fine-tunes at the target. With ``m_by_n=(2, 4)`` the
    masks are 2:4 structured instead. ``model`` itself is trained in place
    (:func:`cnnlearn.train.fit`, on ``device``; on a TPU, fit's copy of it);
    the returned model is :func:`strip`'s copy. Used in chapter 6 and by
    ``cnnlearn compress --method prune``.
    """
    n_train = len(x) - (
        int(round(len(x) * validation_split)) if validation_split else 0
    )
    total = -(-n_train // batch_size) * epochs
    end = ramp_end_step(total, frequency, ramp)
    if end == 0:
        end = 1 if total > 1 else 0

    def schedule(target: float) -> PruningSchedule:
        check_sparsity(target)
        if end < 1 or initial_sparsity >= target:
            return ConstantSparsity(target_sparsity=target, frequency=frequency)
        return PolynomialDecay(
            initial_sparsity=initial_sparsity,
            final_sparsity=target,
            begin_step=0,
            end_step=end,
            frequency=frequency,
        )

    if isinstance(sparsity, Mapping):
        plan = {name: schedule(target) for name, target in sparsity.items()}
    else:
        plan = schedule(sparsity)
    pruning = MagnitudePruning(plan, m_by_n=m_by_n)
    result = train.fit(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        validation_split=validation_split,
        seed=seed,
        device=device,
        callbacks=[pruning],
        verbose=verbose,
        plan=FIT_PLAN,
    )
    return strip(result.model, pruning), pruning

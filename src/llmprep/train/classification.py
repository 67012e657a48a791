"""Sequence classification (seed 003): metrics at each evaluation and predictions from a finished run.

Metrics: `accuracy` and `f1` = macro F1 (the unweighted mean of each class's F1 over the classes
that occur in the references or the predictions), so the number does not depend on which class is
called "positive" or on the order of the label names.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy_f1(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro F1. Example: pred [0, 1, 1, 0], ref [0, 1, 0, 0] -> accuracy 0.75, f1 0.7333..."""
    pred = np.asarray(predictions, dtype=np.int64)
    ref = np.asarray(references, dtype=np.int64)
    if len(pred) != len(ref) or len(ref) == 0:
        raise ValueError(f"need as many predictions as references, got {len(pred)} and {len(ref)}")
    f1s = []
    for c in np.union1d(pred, ref):
        tp = int(((pred == c) & (ref == c)).sum())
        fp = int(((pred == c) & (ref != c)).sum())
        fn = int(((pred != c) & (ref == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": float((pred == ref).mean()), "f1": float(np.mean(f1s))}


def compute_metrics(eval_pred) -> dict[str, float]:
    """HF Trainer's compute_metrics: logits -> argmax -> accuracy + macro F1 (logged as eval_accuracy, eval_f1)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return accuracy_f1(np.argmax(logits, axis=-1), labels)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64. Example: [[0, 0]] -> [[0.5, 0.5]]"""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def prediction_rows(logits: np.ndarray, id2label: dict[int, str]) -> list[dict]:
    """One output row per input row: label id, its name, the probability of every class by name.

    Example: [[2.0, 0.0]], {0: "reply", 1: "unrelated"}
    -> [{"label": 0, "label_name": "reply", "probabilities": {"reply": 0.8808, "unrelated": 0.1192}}]
    """
    probs = softmax(logits)
    rows = []
    for p in probs:
        k = int(p.argmax())
        rows.append({"label": k, "label_name": id2label.get(k, str(k)),
                     "probabilities": {id2label.get(i, str(i)): round(float(x), 6) for i, x in enumerate(p)}})
    return rows

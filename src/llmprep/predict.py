"""Predictions of a trained classifier: one output row per input row (label, its name, probabilities).

    RUN_DIR + INPUT (raw records or a prepared directory) -> predictions.jsonl

Raw records are prepared with the run's own tokenizer, strictly (a bad record stops the run with its
file:line instead of being skipped), so output row i is input record i.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from llmprep.errors import ConfigError
from llmprep.models import CLASSIFICATION


def load_classifier(spec: str):
    """(model, tokenizer, id2label) of a classification run or checkpoint. Raises for a causal LM."""
    from llmprep import models
    from llmprep.tokenizer import load_tokenizer

    src = models.resolve(spec)
    model = models.load(src, task=CLASSIFICATION, merge=True)
    archs = getattr(model.config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs) and src.kind != "adapter":
        raise ConfigError(f"--model {spec!r} is not a trained classifier ({', '.join(archs) or 'no architecture'}); "
                          "predict takes the --out of `llmprep train` on sentence pairs or labelled texts. "
                          "For chat models use `llmprep generate`")
    id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
    return model.eval(), load_tokenizer(src.tokenizer), id2label


def input_rows(inputs: Sequence[str], tokenizer_spec: str, *, split: str | None = None):
    """The rows to predict: a split of a prepared directory, or raw records prepared strictly, in order."""
    from llmprep.train.data import is_prepared, task_of

    if len(inputs) == 1 and is_prepared(inputs[0]):
        from datasets import Dataset, load_from_disk

        data = load_from_disk(inputs[0])
        if isinstance(data, Dataset):
            return data
        name = split or ("test" if "test" in data else "train")
        if name not in data:
            raise ConfigError(f"--split {name!r}: INPUT has the splits {', '.join(data)}")
        rows = data[name]
    else:
        from llmprep.prepare import prepare

        # strict and no dedup: every record gives one row, in input order (a repeated record is predicted twice)
        data = prepare(list(inputs), tokenizer=tokenizer_spec, strict=True, dedup="none", progress=False,
                       cache=False)
        rows = data["train"]
    if task_of({"train": rows}) != CLASSIFICATION:
        raise ConfigError("INPUT holds chats or documents (token labels); predict needs sentence pairs "
                          "(sentence1, sentence2) or labelled texts (text, label)")
    return rows


def predict_rows(model, tokenizer, rows, id2label: dict[int, str], *, batch_size: int = 32,
                 on_done: Callable[[int], None] | None = None) -> list[dict]:
    """Run the classifier over `rows` (dynamic padding per batch). Example: 2 pairs -> 2 prediction dicts."""
    import torch

    from llmprep.collate import PaddingCollator
    from llmprep.train.classification import prediction_rows
    from llmprep.train.collators import pad_id

    collate = PaddingCollator(pad_token_id=pad_id(tokenizer))
    keep = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in rows.column_names]
    out: list[dict] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows.select(range(start, min(start + batch_size, len(rows))))
        batch = collate([{k: r[k] for k in keep} for r in chunk])
        with torch.no_grad():
            logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float().cpu().numpy()
        preds = prediction_rows(logits, id2label)
        labels = chunk["labels"] if "labels" in chunk.column_names else [None] * len(chunk)
        for i, (p, y) in enumerate(zip(preds, labels)):
            row = {"row": start + i, **p}
            if y is not None:
                row["true_label"], row["true_label_name"] = int(y), id2label.get(int(y), str(y))
            out.append(row)
        if on_done:
            on_done(len(chunk))
    return out


def write_jsonl_atomic(path: str | Path, rows: Sequence[dict], *, flag: str = "--out",
                       inputs: Sequence[str] = ()) -> Path:
    """Write rows as JSON lines, atomically (llmprep.store.atomic_output_file): never a half-written file,
    never over an input. Example: write_jsonl_atomic("p.jsonl", [{"row": 0}]) -> p.jsonl holding '{"row": 0}\n'"""
    from llmprep.store import atomic_output_file

    with atomic_output_file(path, flag=flag, inputs=inputs) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)

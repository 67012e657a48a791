"""The data a run trains on: a directory written by `llmprep prepare`, or raw records prepared once.

    DATA -> TrainData(splits, task, tokenizer, label names, template)

The task comes from the data: scalar `labels` (one class id per row, sentence pairs or labelled
texts) mean classification; token `labels` (a list per row) mean causal-LM. A --task that disagrees
with the data is an error naming both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from llmprep.errors import ConfigError
from llmprep.models import CAUSAL_LM, CLASSIFICATION


@dataclass
class TrainData:
    """A loaded, checked dataset. Example: out/demo -> TrainData(task="causal-lm", packed=False, ...)"""

    splits: object  # datasets.DatasetDict with "train" (and maybe "test")
    task: str
    tokenizer: str | None  # the tokenizer it was prepared with (report.json), when known
    report: dict = field(default_factory=dict)
    label_names: list[str] | None = None

    @property
    def packed(self) -> bool:
        cols = self.splits["train"].column_names
        return "position_ids" in cols or "seq_lengths" in cols

    @property
    def eval_split(self):
        return self.splits["test"] if "test" in self.splits else None

    @property
    def template(self) -> tuple[str | None, str | None]:
        """(--template value, sha256) the chats were rendered with, from report.json."""
        return (self.report.get("options", {}).get("template"), (self.report.get("template") or {}).get("sha256"))


def is_prepared(path: str | Path) -> bool:
    """A directory `llmprep prepare` (or datasets' save_to_disk) wrote. Example: out/demo -> True"""
    p = Path(path)
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "dataset_info.json").is_file())


def task_of(splits) -> str:
    """classification when labels are one integer per row, causal-lm when they are token lists.

    Example: columns input_ids, token_type_ids, labels (int64) -> "classification"
    """
    feature = splits["train"].features.get("labels")
    if feature is None:
        raise ConfigError(f"DATA has no 'labels' column (columns: {', '.join(splits['train'].column_names)}); "
                          "expected a directory written by `llmprep prepare`")
    from datasets import ClassLabel, Value

    return CLASSIFICATION if isinstance(feature, (ClassLabel, Value)) else CAUSAL_LM


def load_prepared(path: str | Path, *, task: str = "auto") -> TrainData:
    """Load a prepared directory and check it can train `task`.

    Example: load_prepared("data/pairs") -> TrainData(task="classification", label_names=["reply", "unrelated"])
    """
    from datasets import Dataset, DatasetDict, load_from_disk

    p = Path(path)
    for name in _empty_splits(p):  # datasets cannot even load a split saved with no rows
        raise ConfigError(f"DATA {str(p)!r}: the {name!r} split is empty; expected at least one row")
    try:
        splits = load_from_disk(str(p))
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise ConfigError(f"DATA {str(p)!r}: could not load it as a prepared dataset ({exc})") from exc
    if isinstance(splits, Dataset):
        splits = DatasetDict({"train": splits})
    if "train" not in splits:
        raise ConfigError(f"DATA {str(p)!r}: no 'train' split (found {', '.join(splits) or 'none'})")
    for name in splits:
        if len(splits[name]) == 0:
            raise ConfigError(f"DATA {str(p)!r}: the {name!r} split is empty; expected at least one row")
    report = {}
    if (p / "report.json").is_file():
        report = json.loads((p / "report.json").read_text(encoding="utf-8"))
    found = task_of(splits)
    if task != "auto" and task != found:
        what = ("sentence pairs / labelled texts (one class id per row)" if found == CLASSIFICATION
                else "chats or documents (token labels)")
        raise ConfigError(f"--task {task}: DATA {str(p)!r} holds {what}, which trains --task {found}")
    tokenizer = (report.get("tokenizer") or {}).get("name")
    data = TrainData(splits, found, tokenizer, report)
    if found == CLASSIFICATION:
        data.label_names = label_names(splits)
    return data


def _empty_splits(path: Path) -> list[str]:
    """Splits saved with no data files (0 rows). Example: a DatasetDict saved with an empty test -> ["test"]"""
    try:
        names = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError):
        return []
    empty = []
    for name in names:
        try:
            state = json.loads((path / name / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not state.get("_data_files"):
            empty.append(name)
    return empty


def label_names(splits) -> list[str]:
    """Class names by id: the ClassLabel's names when the data had string labels, else the ids as text.

    Every row must carry a label. Example: ClassLabel(names=["reply", "unrelated"]) -> ["reply", "unrelated"];
    int labels {0, 2} -> ["0", "1", "2"]
    """
    from datasets import ClassLabel

    feature = splits["train"].features["labels"]
    seen: set[int] = set()
    for name in splits:
        values = splits[name]["labels"]
        missing = sum(v is None for v in values)
        if missing:
            raise ConfigError(f"DATA split {name!r}: {missing} of {len(values)} rows have no label; "
                              "classification needs a label on every row")
        seen.update(int(v) for v in values)
    if min(seen) < 0:
        raise ConfigError(f"DATA: class ids must be 0 or more, found {min(seen)}")
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    return [str(i) for i in range(max(seen) + 1)]

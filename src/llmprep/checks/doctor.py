"""`doctor(...)`: check a tokenizer + template (+ model) (+ data) the way `llmprep doctor` does.

DATA is a directory written by `llmprep prepare`, or raw input files: those are prepared in memory
first (as `llmprep prepare` would with the same --template/--max-length/--test-size/--seed), so
every check that looks at rows sees exactly what training would get.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from llmprep.checks import Report, local_dir, run_checks
from llmprep.checks.model import load_model_info
from llmprep.checks.prepared import Data, tokenizer_entry
from llmprep.checks.subject import Subject
from llmprep.constants import DEFAULT_MAX_LENGTH, DEFAULT_TOKENIZER
from llmprep.errors import ConfigError


def is_prepared(path: str | Path) -> bool:
    """A directory written by prepare (or any save_to_disk dataset). Example: "data/sft" -> True"""
    p = Path(path)
    return p.is_dir() and any((p / name).is_file() for name in ("dataset_dict.json", "state.json", "report.json"))


def doctor(tokenizer: str = DEFAULT_TOKENIZER, *, model: str | None = None, template: str = "auto",
           data: Sequence[str] = (), max_length: int = DEFAULT_MAX_LENGTH, test_size: float = 0.0,
           seed: int = 42) -> Report:
    """Run every check that applies. Example: doctor("smollm2", model="smollm2", data=["chats.jsonl"])"""
    from llmprep.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    info = load_model_info(model) if model else None
    data = list(data)
    prepared = [d for d in data if is_prepared(d)]
    if prepared and (len(prepared) > 1 or len(data) > 1):
        raise ConfigError(f"DATA: give one directory written by `llmprep prepare`, or raw input files; got "
                          f"{', '.join(map(repr, data))}")
    subject = Subject.build(tok, template=template, tokenizer_dir=local_dir(tokenizer), model=info)
    if prepared:
        subject.data = Data.from_dir(prepared[0])
        _check_same_tokenizer(subject.data, tok, tokenizer)
        return run_checks(subject)
    if not data:
        return run_checks(subject)
    return _raw(subject, tokenizer, template, data, max_length, test_size, seed)


def _raw(subject: Subject, tokenizer: str, template: str, data: list[str], max_length: int, test_size: float,
         seed: int) -> Report:
    """Prepare raw inputs in memory, then check; chats without a template are checked unprepared."""
    from llmprep.prepare import PrepareConfig, run
    from llmprep.records import expand_inputs

    files = expand_inputs(data)
    if subject.template is None and has_chats(files):
        subject.data = Data.from_files(files, rows_error=f"DATA was not prepared: {subject.template_error}")
        return run_checks(subject)
    cfg = PrepareConfig(tokenizer=tokenizer, template=template, max_length=max_length, test_size=test_size,
                        seed=seed, progress=False)
    with tempfile.TemporaryDirectory(prefix="llmprep-doctor-") as tmp:
        result = run(cfg, [str(f) for f in files], out=Path(tmp) / "data")  # runs the cheap checks on what it writes
        subject.data = Data.from_dir(result.out, verify_inputs=False)
        return Report.from_json(result.report["doctor"]) + run_checks(subject, cheap=False)


def has_chats(files: list[Path]) -> bool:
    """Does any file hold chats? Decided by each file's first readable example, as prepare detects formats."""
    from llmprep.examples import Example, to_examples
    from llmprep.records import read_file

    for f in files:
        first = next((x for x in to_examples(read_file(f, lazy=True)) if isinstance(x, Example)), None)
        if first is not None and first.kind == "chat":
            return True
    return False


def _check_same_tokenizer(data: Data, tok, name: str) -> None:
    """Row checks decode ids with --tokenizer: it must be the one the data was prepared with."""
    from llmprep.prepare import _tokenizer_fingerprint

    entry = tokenizer_entry(data.report)
    if entry.get("fingerprint") and entry["fingerprint"] != _tokenizer_fingerprint(tok):
        raise ConfigError(f"--tokenizer {name!r} is not the tokenizer the data was prepared with "
                          f"({entry.get('name')!r}); pass that one")

"""`llmprep doctor`: checks of the whole fine-tuning setup (tokenizer, template, model, data) that catch
the silent bugs before training — each finding with a stable id, a severity, where and how to fix it.

    run_checks(Subject.build(tokenizer, template="auto", data=Data.from_dir("data/sft")))
    -> Report(findings=[Finding("duplicates", "warning", ...)], skipped={"generation-eos": "no --model given"})

Modules: finding (Finding, exit codes), registry (@check, CHECKS by id), subject (what is examined),
probe (what a template writes), templates, slowfast, rows, dedup (data), model + modelchecks (--model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmprep.checks import dedup, modelchecks, rows, slowfast, templates  # noqa: F401  (registers the checks)
from llmprep.checks.finding import SEVERITIES, Finding, exit_code, ordered
from llmprep.checks.prepared import Data, tokenizer_entry
from llmprep.checks.registry import CHECKS, IDS, Check, Skip
from llmprep.checks.subject import Subject


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # check id -> why it did not apply
    scope: dict | None = None  # {"examples": 2000, "of": 20000} when the example checks read only the first ones

    @property
    def exit_code(self) -> int:
        return exit_code(self.findings)

    def to_json(self, *, examples: bool = False) -> dict:
        """{"findings": [{id, severity, message, where, fix}, ...], "skipped": [{id, reason}, ...]}"""
        out = {"findings": [f.to_json(examples=examples) for f in self.findings],
               "skipped": [{"id": k, "reason": v} for k, v in self.skipped.items()]}
        return out | ({"scope": self.scope} if self.scope else {})

    @classmethod
    def from_json(cls, data: dict) -> "Report":
        return cls([Finding.from_json(f) for f in data.get("findings", [])],
                   {s["id"]: s["reason"] for s in data.get("skipped", [])}, data.get("scope"))

    def __add__(self, other: "Report") -> "Report":
        return Report(ordered(self.findings + other.findings), {**self.skipped, **other.skipped},
                      self.scope or other.scope)


def run_checks(subject: Subject, *, model: bool = True, cheap: bool = True) -> Report:
    """Run the registered checks (cheap ones, and those needing --model when `model`) on a subject."""
    report = Report()
    for chk in (CHECKS[i] for i in IDS):
        if not (model if chk.needs_model else cheap):
            continue
        try:
            report.findings += chk.run(subject)
        except Skip as why:
            report.skipped[chk.id] = str(why)
    report.findings = ordered(report.findings)
    return report


# Examples prepare's own checks read back (duplicates, leakage, control text). Reading every example again
# and comparing near duplicates (MinHash) took longer than preparing the data (20k chats: ~60% of the run);
# prepare's --dedup already covers the whole data, and `llmprep doctor DIR` runs these checks on everything.
PREPARE_SCAN = 2_000


def prepared_checks(out_dir: Path, tokenizer, *, scan_limit: int | None = PREPARE_SCAN,
                    data: Data | None = None) -> Report:
    """The cheap checks on a directory prepare just wrote (its report.json names the rest of the setup);
    the example checks look at the first `scan_limit` examples and say so when there are more. `data`:
    the directory as the caller read it already (Data.from_dir), its rows then kept for the caller."""
    if data is None:
        data = Data.from_dir(out_dir, verify_inputs=False)  # prepare has just read and hashed the inputs
    data.scan_limit = scan_limit
    spec = tokenizer_entry(data.report).get("name")
    subject = Subject.build(tokenizer, template=data.options.get("template", "auto"), tokenizer_dir=local_dir(spec),
                            data=data)
    report = run_checks(subject, model=False)
    scan = subject.__dict__.get("scan")  # the example pass, if a check ran it (a cached_property)
    if scan is not None and scan.total is not None:
        report.scope = {"examples": scan.items, "of": scan.total}
    return report


def local_dir(tokenizer_spec) -> Path | None:
    """The local directory/file a --tokenizer value names, if any. Example: "smollm2" -> .../assets/smollm2"""
    from llmprep.tokenizer import resolve_tokenizer_path

    if not isinstance(tokenizer_spec, (str, Path)):
        return None
    path = Path(resolve_tokenizer_path(str(tokenizer_spec)))
    try:
        return path if path.exists() else None
    except OSError:  # not a path: e.g. the repr of a tokenizer object passed to prepare() (too long a name)
        return None


__all__ = ["CHECKS", "IDS", "Check", "Data", "Finding", "Report", "SEVERITIES", "Skip", "Subject", "exit_code",
           "prepared_checks", "run_checks"]

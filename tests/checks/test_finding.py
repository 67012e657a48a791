"""Finding, exit codes and the registry: the contract ids, one check each."""

import re
from pathlib import Path

import pytest

from llmprep.checks import CHECKS, IDS, Finding, Report, exit_code
from llmprep.checks.registry import check

README = Path(__file__).parents[2] / "README.md"

# The table, verbatim order: these ids are part of the contract.
CONTRACT = ["double-bos", "eot-untrained", "no-stop-token", "generation-eos", "pad-is-eos", "template-prefix",
            "control-token-split", "untrained-embeddings", "vocab-mismatch", "slow-fast-mismatch", "max-length",
            "no-chat-template", "zero-trained-rows", "truncation-loss", "duplicates", "leakage", "control-text"]


def test_every_contract_id_has_exactly_one_check():
    assert list(IDS) == CONTRACT
    assert sorted(CHECKS) == sorted(CONTRACT)
    assert {c.id for c in CHECKS.values() if c.needs_model} == {"generation-eos", "untrained-embeddings",
                                                                 "vocab-mismatch", "max-length"}


def test_unknown_or_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="not one of IDS"):
        check("made-up", "x")(lambda s: [])
    with pytest.raises(ValueError, match="registered twice"):
        check("leakage", "x")(lambda s: [])


@pytest.mark.parametrize("severities, code", [([], 0), (["info"], 0), (["info", "warning"], 1),
                                              (["warning", "error", "info"], 2)])
def test_exit_code(severities, code):
    assert exit_code([Finding("leakage", s, "m", "w", "f") for s in severities]) == code


def test_bad_severity_is_refused():
    with pytest.raises(ValueError, match="error, warning, info"):
        Finding("leakage", "fatal", "m", "w", "f")


def test_json_round_trip_keeps_the_contract_fields():
    f = Finding("duplicates", "warning", "m", "a.jsonl:1", "fix it", ("a.jsonl:1 = a.jsonl:2",))
    assert list(f.to_json()) == ["id", "severity", "message", "where", "fix"]
    report = Report([f], {"leakage": "no test split"})
    back = Report.from_json(report.to_json(examples=True))
    assert back.findings == [f] and back.findings[0].examples == f.examples
    assert back.skipped == {"leakage": "no test split"}


def test_readme_documents_every_id_once():
    section = README.read_text(encoding="utf-8").split("## `llmprep doctor`")[1].split("\n## ")[0]
    listed = re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.M)
    assert listed == CONTRACT

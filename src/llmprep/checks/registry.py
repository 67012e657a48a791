"""The checks by id. Each check is a function Subject -> list[Finding], registered with @check.

Cheap checks look at the tokenizer, the template and the data; model checks also need `--model`
(its config, generation config and embedding matrix). `prepare` runs the cheap ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from llmprep.checks.finding import Finding
    from llmprep.checks.subject import Subject


# The ids are a contract (scripts grep for them): every check has one of these, in this order.
IDS = ("double-bos", "eot-untrained", "no-stop-token", "generation-eos", "pad-is-eos", "template-prefix",
       "control-token-split", "untrained-embeddings", "vocab-mismatch", "slow-fast-mismatch", "max-length",
       "no-chat-template", "zero-trained-rows", "truncation-loss", "duplicates", "leakage", "control-text")


class Skip(Exception):
    """The check does not apply to this setup (no data, no model, no SentencePiece model...): why."""


@dataclass(frozen=True)
class Check:
    id: str
    summary: str  # one line: what it catches (README and `llmprep doctor --list`)
    needs_model: bool
    run: Callable[["Subject"], list["Finding"]]


CHECKS: dict[str, Check] = {}  # by id, in registration order; run in IDS order


def check(id: str, summary: str, *, needs_model: bool = False):
    """Register a check. Example: @check("double-bos", "the template writes BOS ...") def f(subject): ..."""
    def register(fn: Callable[["Subject"], list["Finding"]]):
        if id in CHECKS or id not in IDS:
            raise ValueError(f"check id {id!r}: registered twice or not one of IDS")
        CHECKS[id] = Check(id, summary, needs_model, fn)
        return fn
    return register

"""What a check reports: a Finding with a stable id, a severity, what is wrong, where, and the fix.

    Finding("double-bos", "warning", "the template writes <s> and the tokenizer adds another", "template",
            "remove {{ bos_token }} from the template")
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    message: str
    where: str
    fix: str
    # A few concrete cases (file:line, a rendered snippet); report.json and report.html keep them,
    # `llmprep doctor --json` prints only the five contract fields.
    examples: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: expected one of {', '.join(SEVERITIES)}")

    def to_json(self, *, examples: bool = False) -> dict:
        """The contract fields (id, severity, message, where, fix), plus `examples` when asked."""
        out = {"id": self.id, "severity": self.severity, "message": self.message, "where": self.where,
               "fix": self.fix}
        if examples:
            out["examples"] = list(self.examples)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Finding":
        return cls(data["id"], data["severity"], data["message"], data["where"], data["fix"],
                   tuple(data.get("examples") or ()))


def exit_code(findings: list[Finding]) -> int:
    """0: nothing above info; 1: warnings only; 2: at least one error.

    Example: [info, warning] -> 1; [warning, error] -> 2; [] -> 0
    """
    severities = {f.severity for f in findings}
    return 2 if "error" in severities else 1 if "warning" in severities else 0


def ordered(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; stable within a severity."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))

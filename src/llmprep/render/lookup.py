"""Find a chat template by --template value: the tokenizer's own, a built-in .jinja file, or a path."""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

from llmprep.errors import ConfigError


def builtin_templates() -> dict[str, Path]:
    """Named templates shipped as llmprep/templates/NAME.jinja."""
    root = Path(str(importlib.resources.files("llmprep") / "templates"))
    return {p.stem: p for p in sorted(root.glob("*.jinja"))}


def resolve_template(template: str | None, tokenizer=None) -> tuple[str, str]:
    """--template value -> (name, jinja source).

    "auto" (default): the tokenizer's own chat template; a built-in name ("chatml", "llama3", ...);
    or a path to a .jinja file.
    Example: "chatml" -> ("chatml", "{% for message in messages %}...")
    """
    template = template or "auto"
    names = builtin_templates()
    if template == "auto":
        source = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
        if isinstance(source, dict):  # some repos ship several named templates
            source = source.get("default") or next(iter(source.values()))
        if not source:
            raise ConfigError("--template auto: the tokenizer has no chat template. Pass --template with one "
                              f"of the built-in names ({', '.join(names)}) or a path to a .jinja file.")
        return "auto", source
    if template in names:
        return template, names[template].read_text(encoding="utf-8")
    path = Path(template)
    if path.suffix == ".jinja" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"--template {template!r}: no such file")
        return path.name, path.read_text(encoding="utf-8")
    raise ConfigError(f"--template {template!r} is not a known template. Available: auto, "
                      f"{', '.join(names)}, or a path to a .jinja file")


def template_fingerprint(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]

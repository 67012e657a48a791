"""What the doctor examines: a tokenizer, its chat template, optionally a model (checks.model) and data
(checks.prepared: a directory written by `llmprep prepare`, or raw inputs not prepared)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.checks.prepared import Data
from llmprep.checks.registry import Skip
from llmprep.errors import ConfigError


@dataclass
class Subject:
    """Tokenizer + template (+ model) (+ data): everything a check may look at."""

    tokenizer: Any
    template: str | None = None  # jinja source; None when none could be resolved
    template_name: str | None = None
    template_error: str | None = None  # why there is no template
    tokenizer_dir: Path | None = None  # where the tokenizer's files are (slow-fast looks for tokenizer.model)
    model: Any = None  # llmprep.checks.model.ModelInfo
    data: Data | None = None

    @classmethod
    def build(cls, tokenizer, *, template: str | None = "auto", tokenizer_dir: str | Path | None = None,
              model=None, data: Data | None = None) -> "Subject":
        """Resolve the template the way prepare does (--template auto/name/path). A tokenizer without a
        template is a finding (no-chat-template) when the data holds chats; a bad --template is an error."""
        from llmprep.render import compile_template, resolve_template

        name = source = error = None
        try:
            name, source = resolve_template(template, tokenizer)
        except ConfigError as exc:
            if template not in (None, "auto"):
                raise
            error = str(exc)
        if source is not None:
            compile_template(source)  # a template that does not compile: one clear error now
        return cls(tokenizer, source, name, error, Path(tokenizer_dir) if tokenizer_dir else None, model, data)

    @functools.cached_property
    def renderer(self):
        """The ChatRenderer prepare would use, or None without a template."""
        from llmprep.render import ChatRenderer

        return ChatRenderer.for_tokenizer(self.template, self.tokenizer) if self.template else None

    @functools.cached_property
    def probe(self):
        from llmprep.checks.probe import probe_template

        return probe_template(self)

    @functools.cached_property
    def scan(self):
        from llmprep.checks.dedup import scan_data

        return scan_data(self)

    def require_data(self) -> Data:
        if self.data is None:
            raise Skip("no DATA given")
        return self.data

    def require_model(self):
        if self.model is None:
            raise Skip("no --model given")
        return self.model

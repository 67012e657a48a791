"""A mix recipe: which sources, how much of each (share of trained tokens, or a fixed count), what budget.

    seed: 42                        # optional (default 42): seeds down-sampling and repeats
    total_tokens: 2000000           # trained tokens of the whole mix, or `scarcest`: the largest mix in
                                    # which no share source repeats (the scarcest one is used fully)
    sources:
      - name: chat-en               # unique; names the source in the report
        path: data/en/*.jsonl       # or paths: [a.jsonl, more/]; files, directories or globs,
                                    # relative to the recipe file
        format: messages            # optional, as --format (detected when omitted)
        columns: {question: prompt} # optional, as --column NEW=OLD
        share: 0.7                  # one of: share (of total_tokens) | tokens | rows
      - name: zh
        path: zh.jsonl
        share: 0.3

Shares are fractions of total_tokens; sources with a fixed `tokens` or `rows` count are inside it, so
shares plus fixed token counts must fill the budget. Every problem is collected and reported together,
each naming the recipe file, the source and the field, with the bad value and what is valid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmprep.errors import ConfigError
from llmprep.formats import FORMATS
from llmprep.records import expand_inputs

AMOUNTS = ("share", "tokens", "rows")
SOURCE_FIELDS = ("name", "path", "paths", "format", "columns") + AMOUNTS
TOP_FIELDS = ("sources", "total_tokens", "seed")
SCARCEST = "scarcest"
SHARE_SUM_TOLERANCE = 1e-3


class RecipeError(ConfigError):
    """A recipe file with one or more problems (all listed)."""


@dataclass(frozen=True)
class Source:
    """One source of a mix: its files and how much of it goes in (`amount` is share | tokens | rows)."""

    name: str
    paths: tuple[str, ...]  # as written, resolved against the recipe's folder
    amount: str
    value: float
    format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    path: str
    sources: tuple[Source, ...]
    total_tokens: int | None  # None: "scarcest"
    seed: int = 42

    @property
    def scarcest(self) -> bool:
        return self.total_tokens is None


def load_recipe(path: str | Path, *, check_paths: bool = True) -> Recipe:
    """Read and validate a YAML or JSON recipe file.

    Example: load_recipe("mix.yaml") -> Recipe(sources=(Source("chat-en", ("data/en/*.jsonl",), "share", 0.7), ...),
    total_tokens=2000000, seed=42)
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"--mix {str(path)!r}: cannot read the recipe: {exc}") from None
    import yaml

    is_json = path.suffix.lower() == ".json"
    try:
        doc = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = exc.lineno if is_json else (mark.line + 1 if mark else None)
        raise RecipeError(f"--mix {path}: not valid {'JSON' if is_json else 'YAML'}"
                          f"{f' at line {line}' if line else ''}: {str(exc).splitlines()[0]}") from None
    return parse_recipe(doc, path, check_paths=check_paths)


def parse_recipe(doc: Any, path: Path, *, check_paths: bool = True) -> Recipe:
    """Validate a loaded recipe document; `path` names it in errors and anchors relative paths."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise RecipeError(f"{path}: expected a mapping with {', '.join(TOP_FIELDS)}, got {type(doc).__name__}")
    for key in doc:
        if key not in TOP_FIELDS:
            problems.append(f"field {key!r} is not known; valid fields: {', '.join(TOP_FIELDS)}")
    seed = doc.get("seed", 42)
    if not _is_int(seed):
        problems.append(f"field 'seed': {seed!r} is not valid; expected an integer")
    total = doc.get("total_tokens")
    if total is not None and total != SCARCEST and not (_is_int(total) and total > 0):
        problems.append(f"field 'total_tokens': {total!r} is not valid; expected a positive number of trained "
                        f"tokens (e.g. 2000000) or '{SCARCEST}' (use the scarcest source fully)")
    raw_sources = doc.get("sources")
    sources: list[Source] = []
    if not isinstance(raw_sources, list) or not raw_sources:
        problems.append(f"field 'sources': {raw_sources!r} is not valid; expected a non-empty list of sources, "
                        f"each with {', '.join(SOURCE_FIELDS)}")
    else:
        for i, item in enumerate(raw_sources):
            src = _source(item, i, path.parent, problems, check_paths)
            if src is not None:
                sources.append(src)
    if not problems:
        _check_amounts(sources, total, problems)
        if check_paths:
            _check_overlap(sources, path.parent, problems)
    if problems:
        raise RecipeError(f"--mix {path}: {len(problems)} problem{'s' * (len(problems) > 1)}:\n"
                          + "\n".join(f"  - {p}" for p in problems))
    return Recipe(str(path), tuple(sources), int(total) if _is_int(total) else None, int(seed))


def _source(item: Any, i: int, base: Path, problems: list[str], check_paths: bool) -> Source | None:
    label = f"sources[{i}]"
    if not isinstance(item, dict):
        problems.append(f"{label}: expected a mapping with {', '.join(SOURCE_FIELDS)}, got {item!r:.60}")
        return None
    name = item.get("name")
    if isinstance(name, str) and name.strip():
        label = f"source {name!r}"
    else:
        problems.append(f"{label}: field 'name': {name!r} is not valid; expected a non-empty string")
    before = len(problems)
    for key in item:
        if key not in SOURCE_FIELDS:
            problems.append(f"{label}: field {key!r} is not known; valid fields: {', '.join(SOURCE_FIELDS)}")
    paths = _paths(item, label, problems)
    if check_paths:
        for p in paths:
            try:
                expand_inputs([str(_resolve(p, base))])
            except ConfigError as exc:
                problems.append(f"{label}: field 'path': {p!r}: {str(exc).split(': ', 1)[-1]}")
    fmt = item.get("format")
    if fmt is not None and fmt not in FORMATS:
        problems.append(f"{label}: field 'format': {fmt!r} is not valid; choose one of {', '.join(FORMATS)}")
    columns = item.get("columns") or {}
    if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                                for k, v in columns.items()):
        problems.append(f"{label}: field 'columns': {columns!r:.60} is not valid; expected a mapping NEW: OLD of "
                        "field names, e.g. {question: prompt_text}")
        columns = {}
    given = [a for a in AMOUNTS if a in item]
    amount, value = (given[0], item[given[0]]) if len(given) == 1 else (None, None)
    if len(given) != 1:
        problems.append(f"{label}: {'fields ' + ' and '.join(repr(g) for g in given) if given else 'no amount'}: "
                        f"give exactly one of share (fraction of total_tokens), tokens (trained tokens) or rows")
    elif amount == "share" and not (_is_number(value) and 0 < value <= 1):
        problems.append(f"{label}: field 'share': {value!r} is not valid; expected a fraction in (0, 1], e.g. 0.3")
    elif amount in ("tokens", "rows") and not (_is_int(value) and value > 0):
        problems.append(f"{label}: field {amount!r}: {value!r} is not valid; expected a positive integer")
    if len(problems) > before or not isinstance(name, str) or not name.strip():
        return None
    return Source(name, tuple(str(_resolve(p, base)) for p in paths), amount, float(value), fmt, dict(columns))


def _paths(item: dict, label: str, problems: list[str]) -> list[str]:
    if ("path" in item) == ("paths" in item):
        problems.append(f"{label}: give exactly one of 'path' (a file, directory or glob) or 'paths' (a list)")
        return []
    value = item.get("path", item.get("paths"))
    values = [value] if "path" in item else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        key = "path" if "path" in item else "paths"
        problems.append(f"{label}: field {key!r}: {value!r:.60} is not valid; expected "
                        f"{'a file, directory or glob' if key == 'path' else 'a non-empty list of them'}")
        return []
    return values


def _check_amounts(sources: list[Source], total: Any, problems: list[str]) -> None:
    names = [s.name for s in sources]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"source {n!r}: name used {names.count(n)} times; names must be unique")
    shares = [s for s in sources if s.amount == "share"]
    fixed = [s for s in sources if s.amount != "share"]
    share_sum = sum(s.value for s in shares)
    if shares and total is None:
        problems.append(f"field 'total_tokens': missing; sources {', '.join(repr(s.name) for s in shares)} have a "
                        f"share of it. Give a number of trained tokens (e.g. 2000000) or '{SCARCEST}'")
    if total == SCARCEST and fixed:
        problems.append(f"field 'total_tokens': '{SCARCEST}' sizes the mix from the shares, so every source needs "
                        f"a share; {', '.join(f'{s.name!r} has {s.amount}' for s in fixed)}")
    if shares and not fixed and abs(share_sum - 1) > SHARE_SUM_TOLERANCE:
        problems.append(f"shares sum to {share_sum:g} ({' + '.join(f'{s.name} {s.value:g}' for s in shares)}); "
                        "they must sum to 1")
    if shares and fixed and share_sum >= 1 + SHARE_SUM_TOLERANCE:
        problems.append(f"shares sum to {share_sum:g}, leaving nothing of total_tokens for the fixed-size sources "
                        f"{', '.join(repr(s.name) for s in fixed)}")
    if _is_int(total) and fixed and all(s.amount == "tokens" for s in fixed):
        filled = share_sum * total + sum(s.value for s in fixed)
        if not math.isclose(filled, total, rel_tol=0.01):
            problems.append(f"shares ({share_sum:g} of total_tokens {total}) plus fixed token counts "
                            f"({int(sum(s.value for s in fixed))}) make {filled:.0f} trained tokens, not total_tokens "
                            f"{total}; adjust the shares or the counts")


def _check_overlap(sources: list[Source], base: Path, problems: list[str]) -> None:
    owner: dict[Path, str] = {}
    for s in sources:
        for f in expand_inputs(list(s.paths)):
            key = f.resolve()
            if key in owner and owner[key] != s.name:
                problems.append(f"file {str(f)!r} is in sources {owner[key]!r} and {s.name!r}; a file belongs to "
                                "one source")
            owner.setdefault(key, s.name)


def _resolve(p: str, base: Path) -> Path | str:
    return p if Path(p).is_absolute() or "://" in p else base / p


def _is_int(v: Any) -> bool:
    """Whole numbers, 2000000 or 2.0e6 (YAML reads `2_000_000` as an int too)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

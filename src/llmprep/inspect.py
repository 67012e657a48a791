"""See what the model sees: tokens of a text, dataset rows with the trained tokens marked (and what each
trained run holds: reasoning, a tool call), and raw chat records laid out field by field.

Example: describe_text(tok, "Hi there") -> {"input_ids": [...], "tokens": ["Hi", "Ġthere"], ...}
"""

from __future__ import annotations

from typing import Any

from llmprep.constants import IGNORE_INDEX
from llmprep.errors import LlmprepError


def describe_text(tokenizer, text: str, text_pair: str | None = None) -> dict[str, Any]:
    """Encode one text (or a pair) the way `tokenizer(text)` does and show every view of it.

    `tokens` are the vocabulary pieces (convert_ids_to_tokens: "Ġ" marks a leading space in
    byte-level BPE, "▁" in SentencePiece); `decoded` is the text back (decode), with and without the
    special tokens the tokenizer added.
    """
    enc = tokenizer(text, text_pair, return_token_type_ids=text_pair is not None or None)
    ids = enc["input_ids"]
    out = {
        "input_ids": ids,
        "tokens": tokenizer.convert_ids_to_tokens(ids),
        "decoded": tokenizer.decode(ids),
        "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
        "special_tokens": {k: v for k, v in tokenizer.special_tokens_map.items()},
        "special_token_ids": {k: tokenizer.convert_tokens_to_ids(v) for k, v in tokenizer.special_tokens_map.items()
                              if isinstance(v, str)},
    }
    if "token_type_ids" in enc:
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def mark_trained(tokenizer, input_ids: list[int], labels: list[int] | None, *, color: bool) -> str:
    """Decode a row; trained tokens (label != -100) in green, or inside [[ ]] when piped. Runs of tokens with
    the same state are decoded together, so characters split over several byte-level tokens (Chinese)
    come out whole.

    Example (piped): ids for "user: Hi / assistant: Yo<|im_end|>", labels only on "Yo<|im_end|>"
    -> "user: Hi / assistant: [[Yo<|im_end|>]]"
    """
    trained = [labels is not None and lab != IGNORE_INDEX for lab in (labels or [None] * len(input_ids))]
    out, start = [], 0
    for k in range(1, len(input_ids) + 1):
        if k < len(input_ids) and trained[k] == trained[start]:
            continue
        piece = tokenizer.decode(input_ids[start:k])
        piece = _escape(piece) if color else piece
        if trained[start]:
            piece = f"[green]{piece}[/green]" if color else f"[[{piece}]]"
        out.append(piece)
        start = k
    return "".join(out)


def _escape(text: str) -> str:
    from rich.markup import escape
    return escape(text)


def load_rows(path: str, split: str, n: int) -> list[dict]:
    """First n rows of a split of a dataset written by `llmprep prepare`."""
    from datasets import load_from_disk

    data = load_from_disk(path)
    if hasattr(data, "keys"):
        if split not in data:
            raise KeyError(f"--split {split!r}: not in {path}; available: {', '.join(data.keys())}")
        data = data[split]
    return [data[i] for i in range(min(n, len(data)))]


# Control text that opens a reasoning trace or a tool call in the families llmprep is tested on, to name
# what a trained run holds (display only).
REASONING_MARKS = ("<think>", "</think>", "<|channel|>analysis", "<|START_THINKING|>")
TOOL_CALL_MARKS = ("<tool_call>", "[TOOL_CALLS]", "<|tool_calls_section_begin|>", "<｜tool▁calls▁begin｜>",
                   "<TOOLCALL>", "<|START_ACTION|>", " to=functions.", "<|python_tag|>", "[CALL_ID]")


def trained_runs(tokenizer, input_ids: list[int], labels: list[int] | None) -> list[dict]:
    """Each run of trained tokens, decoded, with what it holds.

    Example: Qwen2.5 tool call -> [{"tokens": 31, "text": '<tool_call>\\n{"name": ...}\\n</tool_call><|im_end|>',
                                    "holds": ["tool call"]},
                                   {"tokens": 12, "text": "It is sunny.<|im_end|>", "holds": []}]
    """
    runs, current = [], []
    for token, label in zip(input_ids, labels or []):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    out = []
    for run in runs:
        text = tokenizer.decode(run)
        holds = [name for name, marks in (("reasoning", REASONING_MARKS), ("tool call", TOOL_CALL_MARKS))
                 if any(m in text for m in marks)]
        out.append({"tokens": len(run), "text": text, "holds": holds})
    return out


def record_rows(path: str, tokenizer, *, template: str = "auto", n: int = 3, history: str = "full",
                train_roles: tuple[str, ...] = ("assistant",), add_eos: bool = False) -> list[dict]:
    """The first n records of a chat file laid out as `llmprep prepare` would: per row its ids and labels,
    and every field of every message the template printed, with how much of it is trained.

    Example: chats.jsonl -> [{"where": "chats.jsonl:1", "ids": [...], "labels": [...], "fields": [{"message": 1,
              "role": "assistant", "field": "tool_calls[0].function.name", "text": "get_weather",
              "trained": "yes"}, ...], "missing": []}]  (or {"where": ..., "rejected": reason})
    """
    from itertools import islice

    from llmprep.encode import ChatEncoder
    from llmprep.examples import Example, to_examples
    from llmprep.records import expand_inputs, read_records
    from llmprep.render import ChatRenderer, resolve_template
    from llmprep.shard import ShardSettings, chat_layouts

    _, source = resolve_template(template, tokenizer)
    renderer = ChatRenderer.for_tokenizer(source, tokenizer)
    encoder = ChatEncoder(tokenizer, engine="tokenizers")
    settings = ShardSettings(tokenizer=tokenizer, template_source=source, max_length=1 << 30, truncation="right",
                             train_roles=tuple(train_roles), history=history, add_eos=add_eos)
    out = []
    for ex in to_examples(islice(read_records(expand_inputs([path])), n)):
        where = f"{ex.source}:{ex.line}"
        if not isinstance(ex, Example):
            out.append({"where": where, "rejected": ex.reason})
            continue
        if "messages" not in ex.data:
            out.append({"where": where, "rejected": "not a chat record"})
            continue
        messages = ex.data["messages"]
        try:
            layouts = chat_layouts(renderer, messages, ex.data.get("tools"), settings)
        except LlmprepError as exc:
            out.append({"where": where, "rejected": str(exc)})
            continue
        for lay in layouts:
            ids, labels = encoder.encode([lay.text], [lay.spans]).row(0)
            fields = [{"message": f.message, "role": messages[f.message]["role"], "field": f.path,
                       "text": f.text, "trained": _trained_part(a, b, lay.spans)} for f, a, b in lay.fields]
            out.append({"where": where, "ids": ids, "labels": labels, "fields": fields, "missing": lay.missing,
                        "stop": lay.stop})
    return out


def _trained_part(a: int | None, b: int | None, spans: list[tuple[int, int]]) -> str:
    """How much of the field [a, b) the trained spans cover: "yes", "no", "partly" ("?" when only one end of
    it is known). Example: (5, 9), [(0, 20)] -> "yes" """
    if a is None or b is None:
        return "?"
    covered = sum(max(0, min(b, y) - max(a, x)) for x, y in spans)
    return "yes" if covered >= b - a else "no" if covered == 0 else "partly"

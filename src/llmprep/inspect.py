"""See what the model sees: tokens of a text, and dataset rows with the trained tokens marked.

Example: describe_text(tok, "Hi there") -> {"input_ids": [...], "tokens": ["Hi", "Ġthere"], ...}
"""

from __future__ import annotations

from typing import Any

from llmprep.constants import IGNORE_INDEX


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
    """Decode a row token by token; trained tokens (label != -100) in green, or inside [[ ]] when piped.

    Example (piped): ids for "user: Hi / assistant: Yo<|im_end|>", labels only on "Yo<|im_end|>"
    -> "user: Hi / assistant: [[Yo<|im_end|>]]"
    """
    pieces = [tokenizer.decode([i]) for i in input_ids]
    trained = [labels is not None and lab != IGNORE_INDEX for lab in (labels or [None] * len(input_ids))]
    out, open_ = [], False
    for piece, t in zip(pieces, trained):
        if t != open_:
            out.append(("[green]" if t else "[/green]") if color else ("[[" if t else "]]"))
            open_ = t
        out.append(_escape(piece) if color else piece)
    if open_:
        out.append("[/green]" if color else "]]")
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

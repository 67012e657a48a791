"""Does the fast tokenizer (tokenizer.json, what llmprep and most trainers use) give the same ids as the
SentencePiece model beside it (tokenizer.model, what sentencepiece, llama.cpp and slow tokenizers use)?"""

from __future__ import annotations

from pathlib import Path

from llmprep.checks.finding import Finding
from llmprep.checks.registry import Skip, check
from llmprep.messages import message_text

# Texts where conversions are known to drift: runs of spaces, leading spaces, newlines, CJK, digits.
SAMPLES = ["Hello world", "world  test", "  leading spaces", "a\n\nb", "tabs\tand   spaces", "你好，世界",
           "The year 2024: 3.14 and 1,000,000.", " x", "end with space ", "emoji 🙂 ok"]
DATA_SAMPLE = 200


def sentencepiece_model(subject) -> Path | None:
    """tokenizer.model beside the tokenizer (its directory, or the file the tokenizer was loaded from)."""
    candidates = []
    if subject.tokenizer_dir is not None:
        d = subject.tokenizer_dir
        candidates.append(d if d.is_file() else d / "tokenizer.model")
    for key in ("vocab_file",):
        value = getattr(subject.tokenizer, key, None) or subject.tokenizer.init_kwargs.get(key)
        if isinstance(value, str):
            candidates.append(Path(value))
    return next((p for p in candidates if p.suffix == ".model" and p.is_file()), None)


@check("slow-fast-mismatch", "the slow (SentencePiece) and fast tokenizers give different ids on sample text")
def slow_fast_mismatch(subject) -> list[Finding]:
    import sentencepiece as spm

    path = sentencepiece_model(subject)
    if path is None:
        raise Skip("no SentencePiece model (tokenizer.model) beside the tokenizer")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    texts = list(SAMPLES)
    if subject.data is not None:
        for item in subject.data.first_items(DATA_SAMPLE):
            texts += [message_text(m) for m in item.data.get("messages", [])] or [item.data.get("text", "")]
    tok = subject.tokenizer
    differ = []
    for text in dict.fromkeys(t for t in texts if t):
        slow, fast = sp.encode(text), tok(text, add_special_tokens=False)["input_ids"]
        if list(slow) != list(fast):
            differ.append((text, slow, list(fast)))
    if not differ:
        return []
    text, slow, fast = differ[0]
    return [Finding(
        "slow-fast-mismatch", "warning",
        f"{len(differ)} of {len(set(texts))} sample texts encode differently with tokenizer.model (SentencePiece) "
        f"and the fast tokenizer: {text!r} -> {sp.id_to_piece(slow)} vs {tok.convert_ids_to_tokens(fast)}; "
        "a model trained on one and served with the other (llama.cpp, sentencepiece) sees different ids",
        str(path),
        "use the same tokenizer for training and inference; convert tokenizer.json again from tokenizer.model "
        "(e.g. AutoTokenizer.from_pretrained on a directory holding only tokenizer.model) and compare",
        tuple(f"{t!r}: sentencepiece {s} vs fast {f}" for t, s, f in differ[:10]))]

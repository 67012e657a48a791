"""Generate with the chat template the model was trained with; return only the new text.

The seeds' `infer()` decodes prompt + answer and cuts `len(prompt_text)` characters off the front,
which breaks whenever decoding does not give the prompt back character for character (special
tokens skipped, normalisation). Here the prompt is cut off by token count instead, and generation
stops at the tokenizer's EOS *or* the template's end-of-turn token (Llama 3 ends a turn with
<|eot_id|>, not with its EOS <|end_of_text|>).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from llmprep.messages import Message
from llmprep.render import ChatRenderer, render_prompt, resolve_template

PROBE = "llmprep end-of-turn probe"


def load_causal_lm(name: str):
    """A causal LM from any --model value (see llmprep.models.resolve); LoRA runs come back merged.

    Example: "smollm2" -> LlamaForCausalLM (the GGUF dequantized to float32 once, then cached)
    """
    from llmprep import models

    src = models.resolve(name)
    model = models.load(src, merge=True)
    models.check_causal_lm(model.config, spec=name)
    return model


def load_for_inference(name: str, tokenizer: str | None = None):
    """(model, tokenizer) for generate/chat: a run's own tokenizer (and training template) by default.

    Example: "runs/lora" -> (merged LlamaForCausalLM, the tokenizer saved in runs/lora)
    """
    from llmprep import models
    from llmprep.tokenizer import load_tokenizer

    src = models.resolve(name)
    tok = load_tokenizer(tokenizer or src.tokenizer)
    model = models.load(src, merge=True)
    models.check_causal_lm(model.config, spec=name)
    return model.eval(), tok


def end_of_turn_token(tokenizer, template: str | None = "auto") -> str | None:
    """The control token the template writes right after an assistant reply (what training teaches the
    model to emit to stop), or None. Example: ChatML -> "<|im_end|>"; llama3 -> "<|eot_id|>"
    """
    _, source = resolve_template(template, tokenizer)
    renderer = ChatRenderer.for_tokenizer(source, tokenizer)
    text, spans = renderer.render_with_spans([{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": PROBE}])
    end = text.rfind(PROBE) + len(PROBE)
    if not spans or end < len(PROBE):
        return None
    tail = text[end:spans[-1][1]].strip()
    if not tail or tokenizer.convert_tokens_to_ids(tail) in (None, tokenizer.unk_token_id):
        return None
    return tail


def stop_token_ids(tokenizer, template: str | None = "auto") -> list[int]:
    """EOS plus the template's end-of-turn token, without repeats. Example: SmolLM2 -> [2]"""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    try:
        eot = end_of_turn_token(tokenizer, template)
    except Exception:  # a template that cannot render a probe turn still generates, stopping at EOS
        eot = None
    if eot is not None:
        ids.append(tokenizer.convert_tokens_to_ids(eot))
    return list(dict.fromkeys(int(i) for i in ids))


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad or 0)


def generate(model, tokenizer, messages: Sequence[Message], *, template: str | None = "auto",
             max_new_tokens: int = 64, streamer=None, **generate_kwargs) -> str:
    """The assistant's reply to `messages` (greedy unless generate_kwargs say otherwise).

    Example (SmolLM2): [user "What is the capital of France?"] -> "The capital of France is Paris."
    """
    import torch

    prompt = render_prompt(messages, tokenizer, template=template, add_generation_prompt=True)
    enc = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(model.device)
    generate_kwargs.setdefault("do_sample", False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop_token_ids(tokenizer, template),
                             pad_token_id=_pad_id(tokenizer), streamer=streamer, **generate_kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def generate_batch(model, tokenizer, conversations: Sequence[Sequence[Message]], *, template: str | None = "auto",
                   max_new_tokens: int = 64, batch_size: int = 8,
                   on_done: Callable[[int], None] | None = None, **generate_kwargs) -> list[str]:
    """Replies to many conversations, batched (left padding, similar lengths together), in input order.

    Each reply equals `generate()` on that conversation alone (greedy; padding is masked).
    `on_done(n)` is called after each batch with its size (progress bars).
    Example: [[user "Hi"], [user "2+2?"]] -> ["Hello! How can I help?", "4"]
    """
    import torch

    prompts = [render_prompt(m, tokenizer, template=template, add_generation_prompt=True) for m in conversations]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    stop, pad = stop_token_ids(tokenizer, template), _pad_id(tokenizer)
    generate_kwargs.setdefault("do_sample", False)
    replies: list[str] = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, width - len(ids[i]):] = torch.tensor(ids[i])
            mask[row, width - len(ids[i]):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=pad,
                                 **generate_kwargs)
        for row, i in enumerate(chunk):
            replies[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True)
        if on_done:
            on_done(len(chunk))
    return replies


class CallbackStreamer:
    """A transformers streamer that hands each finished piece of text to a callback (for `llmprep chat`).

    Example: CallbackStreamer(tok, print_piece) passed as generate(..., streamer=...) prints as it goes.
    """

    def __new__(cls, tokenizer, on_text: Callable[[str], None]):
        from transformers import TextStreamer

        class _Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False):
                if text:
                    on_text(text)

        return _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def iter_lines(path: str) -> Iterable[tuple[int, str]]:
    """(line number, text) of the non-empty lines of a UTF-8 file."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield n, line

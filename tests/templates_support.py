"""Real chat templates (tests/assets/templates/*.jinja) and a real tokenizer for each.

No model hub is reachable, so each template gets a substitute tokenizer built from a real one: the
SmolLM2 byte-level BPE tokenizer (llmprep's embedded one), or a Mistral SentencePiece tokenizer from
`mistral-common` for the Mistral family and Phi-3.5 (whose real tokenizers are SentencePiece too),
plus that family's control tokens added as special tokens (non-special where the real tokenizer's
tokenizer_config.json marks them so, e.g. Qwen's and DeepSeek's `<think>`), with the family's
bos/eos and `chat_template` = the verbatim template. Mistral-7B-Instruct-v0.3 gets its real v3
tokenizer (mistral-common's `mistral_instruct_tokenizer_240323.model.v3`, control tokens included).

    template_tokenizer("qwen2.5") -> a tokenizer whose apply_chat_template renders qwen2.5.jinja

Also: FAMILIES describes, per family, the end-of-turn control tokens the template writes after an
assistant turn (what must be trained with the turn) and the role headers (never trained).
"""

from __future__ import annotations

import copy
import functools
import shutil
import site
import tempfile
from dataclasses import dataclass
from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent / "assets" / "templates"
SITE = Path(site.getsitepackages()[0])
MISTRAL_DATA = SITE / "mistral_common" / "data"


@dataclass(frozen=True)
class Family:
    """What a template family's tokenizer needs, and what the label oracles need to know about it.

    `special`: control tokens added as special tokens; `plain`: added as ordinary (non-special) tokens.
    `eot`: control tokens that end an assistant turn (the whole run right after a turn is trained).
    `headers`: role headers as the template writes them (never trained).
    """

    base: str  # "smollm2" | "mistral-v1" | "mistral-v3"
    special: tuple[str, ...]
    bos: str | None
    eos: str | None
    pad: str | None
    eot: tuple[str, ...]
    headers: tuple[str, ...]
    plain: tuple[str, ...] = ()


_CHATML = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
_QWEN_PLAIN = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")
_CHATML_HEADERS = ("<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n")
_LLAMA3 = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
           "<|eom_id|>", "<|python_tag|>")
_MISTRAL = ("[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]")
_DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
             "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>",
             "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>")
# DeepSeek-R1-Distill's tokenizer_config.json marks <｜User｜>, <｜Assistant｜>, <think>, </think> non-special.
_DEEPSEEK_PLAIN = ("<｜User｜>", "<｜Assistant｜>", "<think>", "</think>")
_DEEPSEEK_HEADERS = ("<｜User｜>",)
_COHERE = ("<BOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
           "<|SYSTEM_TOKEN|>", "<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_THINKING|>", "<|END_THINKING|>",
           "<|START_ACTION|>", "<|END_ACTION|>", "<|START_TOOL_RESULT|>", "<|END_TOOL_RESULT|>", "<EOS_TOKEN>")
_COHERE_HEADERS = ("<|START_OF_TURN_TOKEN|><|USER_TOKEN|>", "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>",
                   "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>")

FAMILIES: dict[str, Family] = {
    "qwen": Family("smollm2", _CHATML, None, "<|im_end|>", "<|endoftext|>", ("<|im_end|>",), _CHATML_HEADERS,
                   _QWEN_PLAIN),
    "smollm3": Family("smollm2", _CHATML, None, "<|im_end|>", "<|im_end|>", ("<|im_end|>",), _CHATML_HEADERS,
                      _QWEN_PLAIN),
    "llama3": Family("smollm2", _LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", ("<|eot_id|>", "<|eom_id|>"),
                     ("<|start_header_id|>system<|end_header_id|>\n\n", "<|start_header_id|>user<|end_header_id|>\n\n",
                      "<|start_header_id|>ipython<|end_header_id|>\n\n",
                      "<|start_header_id|>assistant<|end_header_id|>\n\n")),
    "gemma": Family("smollm2", ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>"),
                    "<bos>", "<eos>", "<pad>", ("<end_of_turn>",),
                    ("<start_of_turn>user\n", "<start_of_turn>model\n")),
    "phi3": Family("mistral-v1", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"),
                   "<s>", "<|endoftext|>", "<|endoftext|>", ("<|end|>",),
                   ("<|system|>\n", "<|user|>\n", "<|assistant|>\n")),
    "mistral-v3": Family("mistral-v3", (), "<s>", "</s>", None, ("</s>",), ("[INST]", "[/INST]")),
    "mistral-tekken": Family("mistral-v1", _MISTRAL, "<s>", "</s>", None, ("</s>",), ("[INST]", "[/INST]")),
    "mistral-small": Family("mistral-v1", _MISTRAL + ("[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
                                                      "[CALL_ID]", "[ARGS]", "[IMG]"),
                            "<s>", "</s>", None, ("</s>",), ("[INST]", "[/INST]", "[SYSTEM_PROMPT]")),
    "deepseek": Family("smollm2", _DEEPSEEK, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                       "<｜end▁of▁sentence｜>", ("<｜end▁of▁sentence｜>",), _DEEPSEEK_HEADERS, _DEEPSEEK_PLAIN),
    # GLM writes nothing after an assistant turn: the next turn's <|user|> / <|observation|> tag stops it. They
    # are GLM-4.5's stop tokens (generation_config.json: eos_token_id [<|endoftext|>, <|user|>, <|observation|>]),
    # so the one right after a reply is trained with it; elsewhere they are headers (never trained).
    "glm": Family("smollm2", ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
                              "<|endoftext|>"),
                  None, "<|endoftext|>", "<|endoftext|>", ("<|user|>", "<|observation|>"),
                  ("<|system|>", "<|assistant|>", "<|user|>", "<|observation|>"),
                  ("<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>",
                   "</arg_value>", "<tool_response>", "</tool_response>")),
    "kimi": Family("smollm2", ("[BOS]", "[EOS]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|im_system|>",
                               "<|im_middle|>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
                               "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"),
                   "[BOS]", "[EOS]", "[EOS]", ("<|im_end|>",),
                   ("<|im_system|>system<|im_middle|>", "<|im_user|>user<|im_middle|>",
                    "<|im_assistant|>assistant<|im_middle|>", "<|im_system|>tool<|im_middle|>")),
    "nemotron": Family("smollm2", ("<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>"), None, "<SPECIAL_12>",
                       "<SPECIAL_12>", ("<SPECIAL_12>",),
                       ("<SPECIAL_10>System\n", "<SPECIAL_11>User\n", "<SPECIAL_11>Assistant\n"),
                       ("<think>", "</think>", "<TOOLCALL>", "</TOOLCALL>", "<TOOL_RESPONSE>", "</TOOL_RESPONSE>",
                        "<AVAILABLE_TOOLS>", "</AVAILABLE_TOOLS>")),
    "cohere": Family("smollm2", _COHERE, "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<PAD>",
                     ("<|END_RESPONSE|>", "<|END_ACTION|>", "<|END_OF_TURN_TOKEN|>"), _COHERE_HEADERS),
    # gpt-oss: the assistant's channel markup (<|channel|>final<|message|>, to=functions.x ...) is generated by
    # the model after the "<|start|>assistant" prompt, so only the other roles' headers are listed.
    "gpt-oss": Family("smollm2", ("<|startoftext|>", "<|endoftext|>", "<|start|>", "<|end|>", "<|message|>",
                                  "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>"),
                      "<|startoftext|>", "<|return|>", "<|endoftext|>", ("<|end|>", "<|return|>", "<|call|>"),
                      ("<|start|>system<|message|>", "<|start|>developer<|message|>", "<|start|>user<|message|>")),
}

# template file stem -> family
TEMPLATES: dict[str, str] = {
    "qwen2.5": "qwen", "qwen3": "qwen", "smollm3": "smollm3",
    "llama3.1": "llama3", "llama3.2": "llama3",
    "gemma2": "gemma", "gemma3": "gemma", "phi3.5": "phi3",
    "mistral-v0.3": "mistral-v3", "mistral-nemo": "mistral-tekken", "mistral-small-3.2": "mistral-small",
    "deepseek-r1": "deepseek", "deepseek-r1-distill": "deepseek", "deepseek-v3.1": "deepseek",
    "glm-4.5": "glm", "kimi-k2": "kimi", "nemotron-nano-v2": "nemotron",
    "command-r7b": "cohere", "command-r7b-tool-use": "cohere", "gpt-oss": "gpt-oss",
}


def template_path(name: str) -> Path:
    return TEMPLATES_DIR / f"{name}.jinja"


def template_source(name: str) -> str:
    # newline="" keeps the bytes: a template's own "\r" or trailing newline is part of what it renders
    with open(template_path(name), encoding="utf-8", newline="") as fh:
        return fh.read()


@functools.lru_cache(maxsize=None)
def _base(name: str):
    """A real tokenizer, loaded once; callers get deep copies (load_tokenizer's result is shared)."""
    if name == "smollm2":
        from llmprep.tokenizer import load_tokenizer

        return load_tokenizer("smollm2")
    from transformers import AutoTokenizer

    model = {"mistral-v1": "tokenizer.model.v1", "mistral-v3": "mistral_instruct_tokenizer_240323.model.v3"}[name]
    folder = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    shutil.copy(MISTRAL_DATA / model, folder / "tokenizer.model")
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert len(tok) == (32000 if name == "mistral-v1" else 32768), len(tok)
    return tok


@functools.lru_cache(maxsize=None)
def family_tokenizer(family: str):
    """The family's real base tokenizer + its control tokens + bos/eos/pad (built once per family)."""
    fam = FAMILIES[family]
    tok = copy.deepcopy(_base(fam.base))  # never mutate the shared base (load_tokenizer caches it)
    vocab = tok.get_vocab()
    roles = {r: v for r, v in (("bos_token", fam.bos), ("eos_token", fam.eos), ("pad_token", fam.pad)) if v}
    new_special = [t for t in dict.fromkeys(fam.special + tuple(roles.values())) if t not in vocab]
    if new_special:
        tok.add_special_tokens({"additional_special_tokens": new_special})
    new_plain = [t for t in fam.plain if t not in vocab]
    if new_plain:
        tok.add_tokens(new_plain)
    for role in ("bos_token", "eos_token", "pad_token"):
        setattr(tok, role, roles.get(role))
    vocab = tok.get_vocab()
    assert all(t in vocab for t in fam.special + fam.plain + fam.eot), family
    return tok


def template_tokenizer(name: str):
    """A tokenizer for template `name`: its family's tokenizer with chat_template = the verbatim template.

    A shallow copy: the family's Rust tokenizer is shared, only `chat_template` differs.
    Example: template_tokenizer("llama3.1").eos_token -> "<|eot_id|>"
    """
    tok = copy.copy(family_tokenizer(TEMPLATES[name]))
    tok.chat_template = template_source(name)
    return tok

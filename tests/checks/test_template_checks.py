"""Checks of tokenizer + template: each triggered by a real setup, and not by its twin."""

from __future__ import annotations

import pytest
from doctor_assets import sample_lines, template
from helpers import write_jsonl

from llmprep.checks import Data, Subject, run_checks
from llmprep.checks.templates import first_prefix_break
from llmprep.tokenizer import load_tokenizer


def findings(tokenizer, tmpl="auto", *, data=None, tokenizer_dir=None, check=None):
    report = run_checks(Subject.build(tokenizer, template=tmpl, data=data, tokenizer_dir=tokenizer_dir), model=False)
    found = [f for f in report.findings if check is None or f.id == check]
    return found, report


# --- double-bos ----------------------------------------------------------------------------------

def test_double_bos_mistral_repo_tokenizer_with_a_template_that_writes_bos(mistral_hf_dir):
    tok = load_tokenizer(str(mistral_hf_dir))  # add_bos_token: true, as Mistral's HF repo ships it
    assert tok("hi")["input_ids"][0] == tok.bos_token_id
    for tmpl in ("mistral", template("mistralai-Mistral-Nemo-Instruct-2407")):  # both write {{ bos_token }}
        (f,), _ = findings(tok, tmpl, check="double-bos")
        assert f.severity == "warning" and "'<s>' twice" in f.message
        assert f.examples[0].startswith("['<s>', '<s>'")


def test_double_bos_twin_tokenizer_that_adds_no_bos(mistral_dir):
    tok = load_tokenizer(str(mistral_dir))  # the same tokenizer.model, converted without add_bos_token
    assert tok("hi")["input_ids"][0] != tok.bos_token_id
    assert findings(tok, "mistral", check="double-bos")[0] == []
    # SmolLM2's ChatML starts with its "BOS" <|im_start|>, but the tokenizer never adds one
    assert findings(load_tokenizer("smollm2"), check="double-bos")[0] == []


def test_double_bos_in_rows_tokenized_the_naive_way(mistral_hf_dir, tmp_path):
    """Rows made as many scripts make them: tokenizer(apply_chat_template(..., tokenize=False)) -> error."""
    from datasets import Dataset, DatasetDict

    tok = load_tokenizer(str(mistral_hf_dir))
    tok.chat_template = Subject.build(tok, template="mistral").template
    texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in sample_lines(20)]
    ids = [tok(t)["input_ids"] for t in texts]
    DatasetDict({"train": Dataset.from_dict({"input_ids": ids, "labels": ids})}).save_to_disk(str(tmp_path / "d"))
    found, _ = findings(tok, "mistral", data=Data.from_dir(tmp_path / "d"), check="double-bos")
    assert [(f.severity, f.message.split(" prepared")[0]) for f in found if f.severity == "error"] == [("error", "20")]


# --- no-stop-token -------------------------------------------------------------------------------

def test_no_stop_token_seed_recipe_concatenates_question_and_answer(smollm2):
    (f,), _ = findings(smollm2, template("seed-question-answer"), check="no-stop-token")
    assert f.severity == "error" and "never trained to stop" in f.message


def test_no_stop_token_twin_own_template(smollm2, bert):
    assert findings(smollm2, check="no-stop-token")[0] == []
    assert findings(smollm2, template("meta-llama-Llama-3.1-8B-Instruct"), check="no-stop-token")[0] == []


# --- template-prefix -----------------------------------------------------------------------------

def test_template_prefix_qwen3_renders_the_last_turn_with_a_think_block(smollm2, tmp_path):
    rows = sample_lines(5, multi_turn=True)
    data = Data.from_files([write_jsonl(tmp_path / "multi.jsonl", rows)], rows_error="raw")
    (f,), _ = findings(smollm2, template("Qwen-Qwen3-0.6B"), data=data, check="template-prefix")
    assert f.severity == "warning" and f"{len(rows)} of {len(rows)} conversations" in f.message
    assert "'<think>" in f.message and f.where.endswith("multi.jsonl:1")


def test_template_prefix_mistral_moves_the_system_prompt_to_the_last_user_turn(mistral_v3_dir):
    tok = load_tokenizer(str(mistral_v3_dir))
    (f,), _ = findings(tok, template("mistralai-Mistral-Nemo-Instruct-2407"), check="template-prefix")
    assert "inference prompt of turn 2" in f.message and "You answer in one word." in f.message
    assert f.where == "probe conversation (system + 2 turns)"


def test_template_prefix_twin_chatml_on_the_same_conversations(smollm2, tmp_path):
    data = Data.from_files([write_jsonl(tmp_path / "multi.jsonl", sample_lines(5, multi_turn=True))], rows_error="raw")
    assert findings(smollm2, data=data, check="template-prefix")[0] == []
    assert findings(smollm2, template("Qwen-Qwen3-0.6B"), check="template-prefix")[0] != []  # probes, no data


def test_first_prefix_break_points_at_the_first_difference(smollm2):
    from llmprep.render import ChatRenderer

    renderer = ChatRenderer.for_tokenizer(open(template("Qwen-Qwen3-0.6B")).read(), smollm2)
    msgs = sample_lines(1, multi_turn=True)[0]["messages"]
    k, kind, pos, part, whole = first_prefix_break(renderer, msgs)
    text = renderer.render(msgs[:k + 1])
    assert (kind, msgs[k]["role"]) == ("reply", "assistant") and text[pos:].startswith("<think>")
    assert renderer.render(msgs)[:pos] == text[:pos]
    assert first_prefix_break(ChatRenderer.for_tokenizer(smollm2.chat_template, smollm2), msgs) is None


# --- control-token-split -------------------------------------------------------------------------

def test_control_token_split_llama31_template_on_a_vocabulary_without_its_tokens(smollm2):
    (f,), _ = findings(smollm2, template("meta-llama-Llama-3.1-8B-Instruct"), check="control-token-split")
    assert f.severity == "error"
    for token in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        assert repr(token) in f.message


def test_control_token_split_twin_vocabulary_with_the_tokens(llama31_dir, mistral_v3_dir):
    assert findings(load_tokenizer(str(llama31_dir)), check="control-token-split")[0] == []
    # [INST] is one (control) token in Mistral's v3 vocabulary, so the v3 template writes no split token
    tok = load_tokenizer(str(mistral_v3_dir))
    assert findings(tok, template("mistralai-Mistral-Nemo-Instruct-2407"), check="control-token-split")[0] == []


# --- no-chat-template ----------------------------------------------------------------------------

def test_no_chat_template_chats_with_a_tokenizer_without_one(mistral_dir, tmp_path):
    tok = load_tokenizer(str(mistral_dir))
    data = Data.from_files([write_jsonl(tmp_path / "c.jsonl", sample_lines(3))], rows_error="raw")
    (f,), report = findings(tok, data=data, check="no-chat-template")
    assert f.severity == "error" and f.where == "--template" and "chatml" in f.fix
    assert findings(tok, "mistral", data=data, check="no-chat-template")[0] == []  # twin: --template given


def test_no_chat_template_twin_documents_need_none(mistral_dir, tmp_path):
    tok = load_tokenizer(str(mistral_dir))
    docs = tmp_path / "docs.txt"
    docs.write_text("one document\nanother one\n", encoding="utf-8")
    found, report = findings(tok, data=Data.from_files([docs], rows_error="raw"), check="no-chat-template")
    assert found == [] and report.skipped["no-chat-template"] == "the data has no chat examples"


# --- pad-is-eos ----------------------------------------------------------------------------------

def test_pad_is_eos_smollm2_is_info_without_padding(smollm2):
    (f,), _ = findings(smollm2, check="pad-is-eos")
    assert f.severity == "info" and "PaddingCollator" in f.fix


def test_pad_is_eos_twin_tokenizers(mistral_dir, bert):
    _, report = findings(load_tokenizer(str(mistral_dir)), "mistral", check="pad-is-eos")
    assert report.skipped["pad-is-eos"] == "the tokenizer has no pad token"
    assert findings(bert, "chatml", check="pad-is-eos")[0] == []  # [PAD] is not a stop token


# --- slow-fast-mismatch --------------------------------------------------------------------------

def test_slow_fast_mismatch_mistral_llama_tokenizer_on_runs_of_spaces(mistral_hf_dir):
    tok = load_tokenizer(str(mistral_hf_dir))
    (f,), _ = findings(tok, "mistral", tokenizer_dir=mistral_hf_dir, check="slow-fast-mismatch")
    assert f.severity == "warning" and "'world  test'" in f.message and f.where.endswith("tokenizer.model")
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(mistral_hf_dir / "tokenizer.model"))
    assert sp.encode("world  test") != tok("world  test", add_special_tokens=False)["input_ids"]


def test_slow_fast_mismatch_twin_consistent_conversion(mistral_dir, smollm2):
    assert findings(load_tokenizer(str(mistral_dir)), "mistral", tokenizer_dir=mistral_dir,
                    check="slow-fast-mismatch")[0] == []
    _, report = findings(smollm2, check="slow-fast-mismatch")
    assert "no SentencePiece model" in report.skipped["slow-fast-mismatch"]


@pytest.mark.parametrize("name", ["chatml", "llama2", "mistral", "alpaca", "question-answer"])
def test_builtin_templates_raise_no_template_error_on_smollm2(smollm2, name):
    """The shipped templates that only use the tokenizer's own special tokens stay clean."""
    found, _ = findings(smollm2, name)
    assert [f.id for f in found if f.severity != "info"] == []

"""Bad input to `llmprep train` / `predict` / `generate`: one clear error naming what was expected, exit 1,
no traceback, and no --out left behind."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict
from train_helpers import cli, tiny_llama


def _refused(res, out, *needles):
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in res.output, res.output
    assert not out.exists()


def test_pairs_into_a_causal_lm(pair_data, tiny_dir, tmp_path):
    res = cli("train", pair_data, "--model", tiny_dir, "--out", tmp_path / "o", "--task", "causal-lm", expect=None)
    _refused(res, tmp_path / "o", "--task causal-lm", "sentence pairs", "trains --task classification")


def test_chats_into_a_classifier(chat_data, minilm, tmp_path):
    res = cli("train", chat_data / "plain", "--model", minilm, "--out", tmp_path / "o", "--max-steps", "1",
              expect=None)
    _refused(res, tmp_path / "o", "is a bert encoder/classifier", "chat and text data train a causal LM")
    res = cli("train", chat_data / "plain", "--model", minilm, "--out", tmp_path / "o", "--task", "classification",
              expect=None)
    _refused(res, tmp_path / "o", "--task classification", "chats or documents")


def test_empty_split(tiny_dir, tmp_path):
    data = tmp_path / "data"
    rows = {"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]], "labels": [[1, 2, 3]]}
    DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows).select([])}).save_to_disk(data)
    res = cli("train", data, "--model", tiny_dir, "--out", tmp_path / "o", expect=None)
    _refused(res, tmp_path / "o", "the 'test' split is empty")


def test_model_that_cannot_be_found(chat_data, tmp_path):
    res = cli("train", chat_data / "plain", "--model", tmp_path / "nope", "--out", tmp_path / "o", expect=None)
    _refused(res, tmp_path / "o", f"--model '{tmp_path / 'nope'}': no such file or directory", "a .gguf file")


def test_tokenizer_larger_than_the_model(chat_data, tmp_path):
    small = tmp_path / "small"
    tiny_llama(vocab_size=1000).save_pretrained(small)
    res = cli("train", chat_data / "plain", "--model", small, "--out", tmp_path / "o", expect=None)
    _refused(res, tmp_path / "o", "1000 embedding rows", "49152 tokens", "llmprep model resize")


def test_eval_steps_without_a_test_split(tiny_dir, tmp_path):
    data = tmp_path / "data"
    rows = {"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]], "labels": [[1, 2, 3]]}
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(data)
    res = cli("train", data, "--model", tiny_dir, "--out", tmp_path / "o", "--eval-steps", "5", expect=None)
    _refused(res, tmp_path / "o", "--eval-steps", "no 'test' split")


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "--batch-size 0: expected a positive integer"),
    (["--save-total-limit", "0"], "--save-total-limit 0: expected 1 or more"),
    (["--warmup", "1.5"], "--warmup 1.5"),
    (["--deepspeed", "zero9"], "--deepspeed 'zero9': expected zero2, zero3"),
    (["--attention", "flex"], "--attention flex: torch has no flex-attention backward on CPU"),
])
def test_bad_options(args, needle, chat_data, tiny_dir, tmp_path):
    res = cli("train", chat_data / "plain", "--model", tiny_dir, "--out", tmp_path / "o", "--max-steps", "1", *args,
              expect=None)
    _refused(res, tmp_path / "o", needle)


def test_predict_with_a_causal_lm_and_with_chat_input(tiny_dir, chats_jsonl, tmp_path):
    res = cli("predict", "--model", tiny_dir, chats_jsonl, "--out", tmp_path / "p.jsonl", expect=None)
    _refused(res, tmp_path / "p.jsonl", "is not a trained classifier", "llmprep generate")


def test_generate_input_with_a_bad_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n{"messages": [{"role": "user", "content": "a"}, '
                       '{"role": "assistant", "content": "b"}]}\n', encoding="utf-8")
    res = cli("generate", "--input", prompts, "--output", tmp_path / "a.jsonl", expect=None)
    _refused(res, tmp_path / "a.jsonl", f"{prompts}:2", "field 'messages'", "expected the user's turn")


def test_generate_output_over_its_input_or_into_a_folder(tmp_path):
    """Checked before the model loads: the input file is never overwritten with answers."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n', encoding="utf-8")
    res = cli("generate", "--input", prompts, "--output", prompts, expect=1)
    assert f"--output {str(prompts)!r}: is also an input" in res.output and "Traceback" not in res.output
    assert prompts.read_text(encoding="utf-8") == '{"prompt": "Hi"}\n'
    res = cli("generate", "--input", prompts, "--output", tmp_path, expect=2)  # click's own check
    assert "Traceback" not in res.output and "is a directory" in res.output, res.output


def test_predict_out_inside_the_run(tiny_dir, chats_jsonl):
    res = cli("predict", "--model", tiny_dir, chats_jsonl, "--out", tiny_dir / "p.jsonl", expect=1)
    assert f"--out {str(tiny_dir / 'p.jsonl')!r}: lies inside an input ({tiny_dir})" in res.output, res.output
    assert not (tiny_dir / "p.jsonl").exists()


def test_merge_lora_out_over_the_run_or_the_users_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text("{}")
    res = cli("model", "merge-lora", "--model", run, "--out", run, expect=1)
    assert f"--out {str(run)!r}: is also an input ({run})" in res.output, res.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    res = cli("model", "merge-lora", "--model", run, "--out", mine, expect=1)
    assert "holds files llmprep did not write (notes.txt)" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "run"] and (mine / "notes.txt").read_text() == "x"

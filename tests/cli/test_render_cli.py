"""`llmprep render` / render_prompt: the inference prompt equals apply_chat_template's."""

import json

from click.testing import CliRunner

from llmprep.cli import main
from llmprep.messages import history_to_messages
from llmprep.render import render_prompt
from llmprep.tokenizer import load_tokenizer

CHAT = [{"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]


def test_generation_prompt_matches_apply_chat_template():
    tok = load_tokenizer("smollm2")
    ref = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert render_prompt(CHAT, tok) == ref
    assert ref.endswith("<|im_start|>assistant\n")
    result = CliRunner().invoke(main, ["render", json.dumps(CHAT), "--ids"])
    assert result.exit_code == 0, result.output
    ids = result.output.strip().rsplit("\n", 1)[1]  # the text, then one line of ids
    assert result.output.startswith(ref)
    assert json.loads(ids) == tok.apply_chat_template(CHAT, add_generation_prompt=True)["input_ids"]


def test_history_pairs_and_no_generation_prompt(tmp_path):
    tok = load_tokenizer("smollm2")
    pairs = [["Hi", "Hello!"], ["How are you?", None]]
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps(pairs))
    result = CliRunner().invoke(main, ["render", "--history", str(conv), "--no-generation-prompt"])
    assert result.exit_code == 0, result.output
    assert result.output == tok.apply_chat_template(history_to_messages(pairs), tokenize=False)


def test_bad_conversation_is_named():
    result = CliRunner().invoke(main, ["render", "not json"])
    assert result.exit_code == 2 and "CONVERSATION" in result.output and "messages list" in result.output
    result = CliRunner().invoke(main, ["render", '[{"role": "user"}]'])
    assert result.exit_code == 2 and "role" in result.output


def test_render_with_tools_object():
    from templates_support import template_path, template_tokenizer

    tok = template_tokenizer("qwen2.5")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": "Weather?"}]
    assert render_prompt(msgs, tok, tools=tools) == tok.apply_chat_template(msgs, tools=tools, tokenize=False,
                                                                              add_generation_prompt=True)
    result = CliRunner().invoke(main, ["render", json.dumps({"messages": msgs, "tools": tools}), "--template",
                                       str(template_path("qwen2.5"))])
    assert result.exit_code == 0, result.output
    assert '"name": "get_weather"' in result.output and result.output.endswith("<|im_start|>assistant\n")

"""`llmprep render`: a conversation as the model sees it — the training text or the inference prompt."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llmprep.constants import DEFAULT_TOKENIZER


def _load_conversation(value: str) -> object:
    """A JSON string, or the path of a .json file holding one."""
    path = Path(value)
    text = path.read_text(encoding="utf-8") if path.suffix == ".json" and path.is_file() else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg} at column {exc.colno}); expected a messages list like "
                                 '\'[{"role": "user", "content": "Hi"}]\' or history pairs \'[["Hi", null]]\'',
                                 param_hint="CONVERSATION") from None


@click.command("render")
@click.argument("conversation")
@click.option("--tokenizer", default=DEFAULT_TOKENIZER, show_default=True)
@click.option("--template", default="auto", show_default=True, help="'auto', a built-in name, or a .jinja file.")
@click.option("--history", is_flag=True, help="CONVERSATION is history pairs [[user, assistant], ..., [user, null]].")
@click.option("--generation-prompt/--no-generation-prompt", default=True, show_default=True,
              help="End with the assistant header the model continues from (inference).")
@click.option("--ids", is_flag=True, help="Also print the token ids.")
def render_cmd(conversation, tokenizer, template, history, generation_prompt, ids) -> None:
    """Render CONVERSATION (JSON messages, {"messages", "tools"}, or a .json file) with the chat template.

    \b
    llmprep render '[{"role": "user", "content": "What is the capital of France?"}]'
    llmprep render --history '[["Hi", "Hello!"], ["How are you?", null]]' --ids
    """
    from llmprep.errors import RecordError
    from llmprep.messages import check_messages, history_to_messages, validate_tools
    from llmprep.render import render_prompt
    from llmprep.tokenizer import load_lite_tokenizer

    data = _load_conversation(conversation)
    tools = None
    try:
        if isinstance(data, dict) and "messages" in data:  # {"messages": [...], "tools": [...]}
            data, tools = data["messages"], validate_tools(data.get("tools"))
        messages = check_messages(history_to_messages(data) if history else data)
    except RecordError as exc:
        raise click.BadParameter(f"{exc}; expected a list of {{\"role\", \"content\"}} messages, an object "
                                 "{\"messages\": [...], \"tools\": [...]}, or --history pairs",
                                 param_hint="CONVERSATION") from None
    tok = load_lite_tokenizer(tokenizer)
    text = render_prompt(messages, tok, template=template, add_generation_prompt=generation_prompt, tools=tools)
    click.echo(text, nl=False)
    if ids:
        click.echo("\n" + json.dumps(tok(text, add_special_tokens=False)["input_ids"]))

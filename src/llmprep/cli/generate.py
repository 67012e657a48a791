"""`llmprep generate`: answer a prompt with a model, through its chat template."""

from __future__ import annotations

import json

import click


@click.command("generate")
@click.argument("prompt")
@click.option("--model", default="smollm2", show_default=True,
              help="'smollm2' (the real SmolLM2-135M-Instruct), a model directory, a .gguf file, or a hub id.")
@click.option("--tokenizer", default=None, help="Tokenizer (default: the model's; 'smollm2' for --model smollm2).")
@click.option("--template", default="auto", show_default=True)
@click.option("--system", default=None, help="A system prompt.")
@click.option("--json", "as_json", is_flag=True, help="PROMPT is a JSON list of messages (a conversation so far).")
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
def generate_cmd(prompt, model, tokenizer, template, system, as_json, max_new_tokens) -> None:
    """Generate the assistant's reply to PROMPT (a user message, or --json messages).

    \b
    llmprep generate "What is the capital of France?"
    """
    from llmprep.generate import generate, load_causal_lm
    from llmprep.tokenizer import load_tokenizer

    if as_json:
        try:
            messages = json.loads(prompt)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON ({exc.msg})", param_hint="PROMPT") from None
    else:
        messages = [{"role": "user", "content": prompt}]
    if system:
        messages = [{"role": "system", "content": system}] + list(messages)
    lm = load_causal_lm(model)  # first: a bad --model is named as such, not as a tokenizer problem
    tok = load_tokenizer(tokenizer or (model if model != "smollm2" and not model.endswith(".gguf") else "smollm2"))
    click.echo(generate(lm, tok, messages, template=template, max_new_tokens=max_new_tokens))

"""`llmprep chat --model RUN_DIR`: talk to a model interactively; replies stream token by token."""

from __future__ import annotations

import sys

import click

HELP = "Type a message. /reset starts a new conversation, /exit (or Ctrl-D) quits."


def chat_turn(model, tokenizer, history: list[dict], text: str, *, max_new_tokens: int, echo) -> str:
    """Add the user's message, stream the reply through `echo`, keep both in `history`.

    The prompt is the whole history rendered by the run's template (the one its data was prepared
    with), so turn 2 sees turn 1 exactly as training formatted conversations.
    """
    from llmprep.generate import CallbackStreamer, generate

    history.append({"role": "user", "content": text})
    reply = generate(model, tokenizer, history, max_new_tokens=max_new_tokens,
                     streamer=CallbackStreamer(tokenizer, echo))
    history.append({"role": "assistant", "content": reply})
    return reply


@click.command("chat")
@click.option("--model", default="smollm2", show_default=True,
              help="'smollm2', a finished `llmprep train` run (full or LoRA), a model directory or .gguf.")
@click.option("--tokenizer", default=None, help="Default: the model's (a run's own, with its training template).")
@click.option("--system", default=None, help="A system prompt for the conversation.")
@click.option("--max-new-tokens", type=int, default=256, show_default=True)
def chat_cmd(model, tokenizer, system, max_new_tokens) -> None:
    """Chat with MODEL: each reply streams as it is generated; history is kept and re-rendered each turn."""
    from llmprep.generate import load_for_inference

    lm, tok = load_for_inference(model, tokenizer)
    stdin = click.get_text_stream("stdin")
    interactive = sys.stdin.isatty()
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    if interactive:
        click.echo(HELP, err=True)
    while True:
        if interactive:
            click.echo("> ", nl=False, err=True)
        line = stdin.readline()
        if not line:
            break
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() == "/exit":
            break
        if text.strip() == "/reset":
            history = list(start)
            click.echo("(new conversation)", err=True)
            continue
        chat_turn(lm, tok, history, text, max_new_tokens=max_new_tokens,
                  echo=lambda piece: click.echo(piece, nl=False))
        click.echo("")

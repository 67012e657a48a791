"""`llmprep generate`: answer a prompt (or a JSONL file of prompts) with a model, through its chat template."""

from __future__ import annotations

import json

import click

PROMPT_FIELDS = ("messages", "prompt", "question", "instruction")


def record_messages(record, where: str) -> list[dict]:
    """One --input record -> the conversation to answer.

    Accepted: {"messages": [..., user turn]}, {"prompt": ...}, {"question": ...}, {"instruction": ..., "input": ...},
    each with an optional "system". Example: {"prompt": "Hi"} -> [{"role": "user", "content": "Hi"}]
    """
    from llmprep.errors import RecordError

    if not isinstance(record, dict) or not any(k in record for k in PROMPT_FIELDS):
        raise RecordError(f"expected a JSON object with one of {', '.join(PROMPT_FIELDS)}", source=where)
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs):
            raise RecordError("expected a non-empty list of {role, content} strings", source=where, field="messages")
        if msgs[-1]["role"] not in ("user", "tool"):
            raise RecordError(f"the last message is from {msgs[-1]['role']!r}; expected the user's turn to answer",
                              source=where, field="messages")
        out = [{"role": m["role"], "content": m["content"]} for m in msgs]
    else:
        key = next(k for k in PROMPT_FIELDS[1:] if k in record)
        text = record[key]
        if not isinstance(text, str) or not text.strip():
            raise RecordError("expected a non-empty string", source=where, field=key)
        if key == "instruction" and isinstance(record.get("input"), str) and record["input"].strip():
            text = f"{text}\n\n{record['input']}"
        out = [{"role": "user", "content": text}]
    if isinstance(record.get("system"), str) and out[0]["role"] != "system":
        out = [{"role": "system", "content": record["system"]}] + out
    return out


def read_prompts(path: str) -> list[tuple[dict, list[dict]]]:
    """Every record of a JSONL file with its conversation; the first bad line stops with file:line."""
    from llmprep.errors import RecordError
    from llmprep.generate import iter_lines

    out = []
    try:
        for n, line in iter_lines(path):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"not JSON ({exc.msg})", source=path, line=n) from None
            try:
                out.append((record, record_messages(record, path)))
            except RecordError as exc:
                raise exc.located(path, n) from None
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text ({exc.reason})", source=path) from None
    if not out:
        raise RecordError("no prompts (the file is empty)", source=path)
    return out


@click.command("generate")
@click.argument("prompt", required=False)
@click.option("--model", default="smollm2", show_default=True,
              help="'smollm2', a finished `llmprep train` run (full or LoRA), a model directory, a .gguf file, "
                   "or a hub id.")
@click.option("--tokenizer", default=None, help="Tokenizer (default: the model's; a run's own).")
@click.option("--template", default="auto", show_default=True)
@click.option("--system", default=None, help="A system prompt.")
@click.option("--json", "as_json", is_flag=True, help="PROMPT is a JSON list of messages (a conversation so far).")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSONL of prompts: messages | prompt | question | instruction (+input), optional system.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="With --input: JSONL of the input records, each with an 'answer' (written atomically).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="With --input: prompts per batch.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate_cmd(prompt, model, tokenizer, template, system, as_json, input_path, output_path, batch_size,
                 max_new_tokens, quiet) -> None:
    """Generate the assistant's reply to PROMPT (a user message, or --json messages), or to every
    record of --input into --output.

    \b
    llmprep generate "What is the capital of France?"
    llmprep generate --model runs/t --input prompts.jsonl --output answers.jsonl
    """
    from llmprep.generate import generate, generate_batch, load_for_inference

    if (input_path is None) == (prompt is None):
        raise click.UsageError("give either PROMPT or --input FILE (with --output FILE)")
    if input_path is not None and output_path is None:
        raise click.UsageError("--input needs --output FILE for the answers")
    if batch_size < 1:
        raise click.BadParameter(f"{batch_size}: expected a positive integer", param_hint="--batch-size")
    if input_path is None:
        if as_json:
            try:
                messages = json.loads(prompt)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(f"not JSON ({exc.msg})", param_hint="PROMPT") from None
        else:
            messages = [{"role": "user", "content": prompt}]
        if system:
            messages = [{"role": "system", "content": system}] + list(messages)
        lm, tok = load_for_inference(model, tokenizer)  # a bad --model is named as such, not as a tokenizer problem
        click.echo(generate(lm, tok, messages, template=template, max_new_tokens=max_new_tokens))
        return
    from tqdm import tqdm

    from llmprep.predict import write_jsonl_atomic
    from llmprep.store import check_output_file

    check_output_file(output_path, flag="--output", inputs=[input_path])  # before the model loads, not after
    records = read_prompts(input_path)  # every line checked before the model loads
    if system:
        records = [(r, m if m[0]["role"] == "system" else [{"role": "system", "content": system}] + m)
                   for r, m in records]
    lm, tok = load_for_inference(model, tokenizer)
    with tqdm(total=len(records), desc="generate", unit="prompt", disable=quiet,
              file=click.get_text_stream("stderr")) as bar:
        answers = generate_batch(lm, tok, [m for _, m in records], template=template, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, on_done=bar.update)
    write_jsonl_atomic(output_path, [{**r, "answer": ans} for (r, _), ans in zip(records, answers)],
                       flag="--output", inputs=[input_path])
    click.echo(f"{len(answers)} answers -> {output_path}", err=True)

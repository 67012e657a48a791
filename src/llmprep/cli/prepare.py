"""`llmprep prepare INPUT... --out DIR`: records to a training-ready DatasetDict on disk."""

from __future__ import annotations

import importlib.resources

import click

from llmprep.constants import DEFAULT_MAX_LENGTH, DEFAULT_TOKENIZER
from llmprep.formats import FORMATS
from llmprep.records import DEFAULT_MAX_RECORD_BYTES
from llmprep.render.limits import DEFAULT_MAX_RENDER_CHARS, DEFAULT_RENDER_TIMEOUT


def sample_path() -> str:
    """The bundled sample dataset, used when no INPUT is given."""
    return str(importlib.resources.files("llmprep") / "data" / "sample.jsonl")


def parse_columns(values: tuple[str, ...]) -> dict[str, str]:
    """--column NEW=OLD pairs -> {new: old}. Example: ("question=q",) -> {"question": "q"}"""
    out = {}
    for item in values:
        new, sep, old = item.partition("=")
        if not sep or not new or not old:
            raise click.BadParameter(f"{item!r}: expected NEW=OLD, e.g. question=prompt_text", param_hint="--column")
        out[new] = old
    return out


def parse_test_size(value: str) -> float:
    """"0.1" -> 0.1 (a fraction), "500" -> 500 (a count)."""
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a fraction like 0.1 or a count like 500",
                                 param_hint="--test-size") from None
    return int(number) if number >= 1 and number == int(number) else number


@click.command("prepare")
@click.argument("inputs", nargs=-1)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--tokenizer", default=DEFAULT_TOKENIZER, show_default=True,
              help="Embedded name (smollm2), local tokenizer directory, .gguf file, or hub id.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default=None,
              help="Input format; auto-detected from the fields when omitted.")
@click.option("--column", "columns", multiple=True, metavar="NEW=OLD",
              help="Rename an input field before format detection (repeatable).")
@click.option("--template", default="auto", show_default=True,
              help="'auto' (the tokenizer's chat template), a built-in name, or a .jinja file.")
@click.option("--max-length", type=int, default=DEFAULT_MAX_LENGTH, show_default=True,
              help="Row length limit in tokens.")
@click.option("--truncation", type=click.Choice(["right", "left", "drop"]), default="right", show_default=True,
              help="How rows longer than --max-length are fitted.")
@click.option("--test-size", default="0", show_default=True, help="Test split: a fraction (0.1) or a count (500).")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the train/test split.")
@click.option("--train-on-prompt", is_flag=True, help="Train on every token, not only the assistant replies.")
@click.option("--train-turns", type=click.Choice(["all", "last"]), default="all", show_default=True,
              help="Which assistant turns are trained.")
@click.option("--train-roles", default="assistant", show_default=True, metavar="ROLE[,ROLE]",
              help="Roles whose turns are trained (system, user, assistant, tool); a message's own "
                   "\"train\": true/false overrides.")
@click.option("--history", type=click.Choice(["full", "per-turn", "last"]), default="full", show_default=True,
              help="full: one row per conversation, every reply trained as the template renders it; per-turn: "
                   "one row per reply, rendered as at inference (each reasoning trace trained once); "
                   "last: only the last reply trained.")
@click.option("--add-eos", is_flag=True,
              help="Append the eos token (trained) after a last reply the template leaves without an "
                   "end-of-turn token.")
@click.option("--strict", is_flag=True, help="Stop at the first bad record instead of rejecting it.")
@click.option("--padding", type=click.Choice(["none", "longest", "max-length"]), default="none", show_default=True,
              help="Fixed padding on disk; 'none' leaves it to the collator (dynamic padding).")
@click.option("--padding-side", type=click.Choice(["right", "left"]), default="right", show_default=True)
@click.option("--pack", type=click.Choice(["none", "wrap", "bfd"]), default="none", show_default=True,
              help="Pack rows: 'wrap' concatenates documents into blocks, 'bfd' bin-packs whole examples.")
@click.option("--block-size", type=int, default=None, help="Alias of --max-length for --pack wrap.")
@click.option("--remainder", type=click.Choice(["drop", "pad", "keep"]), default="drop", show_default=True,
              help="--pack wrap: what to do with the last partial block.")
@click.option("--stream", is_flag=True,
              help="Alias kept for old scripts: every mode now runs in bounded memory (needs --pack wrap).")
@click.option("--text-field", default=None, help="The field holding a document's text (same as --column text=FIELD).")
@click.option("--allow-control-text", is_flag=True,
              help="Let control-token text inside message content become control tokens (as apply_chat_template does).")
@click.option("--engine", type=click.Choice(["auto", "tokenizers", "fastokens"]), default="auto", show_default=True,
              help="Encoder: 'auto' uses fastokens where its ids are verified identical to tokenizers'.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Shard cache (default $LLMPREP_CACHE or ~/.cache/llmprep); keyed by the records' bytes, "
                   "tokenizer, template and options.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the shard cache.")
@click.option("--num-proc", type=int, default=None, help="Processes working shards, the main process included (default: number of cores, max 4).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run shard tasks in local worker processes or as Ray tasks (pip install 'llmprep[ray]').")
@click.option("--ray-address", default=None,
              help="--executor ray: address of an existing Ray cluster (default: start a local Ray).")
@click.option("--max-record-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_RECORD_BYTES, show_default=True,
              help="A longer record (line, CSV row, JSON item, Parquet row) is rejected with its size, unread.")
@click.option("--render-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_RENDER_TIMEOUT,
              show_default=True, help="Seconds one rendering of a conversation may take; longer is a reject.")
@click.option("--max-render-chars", type=click.IntRange(min=1), default=DEFAULT_MAX_RENDER_CHARS, show_default=True,
              help="Characters a chat template may produce (or build) for one conversation; more is a reject.")
@click.option("--mix", "mix", type=click.Path(dir_okay=False), default=None, metavar="RECIPE",
              help="A YAML/JSON recipe of sources, each with a share of trained tokens (or a token/row count) "
                   "and a total budget; its sources are the inputs (give no INPUT).")
@click.option("--dedup", type=click.Choice(["exact", "near", "none"]), default="exact", show_default=True,
              help="Remove repeated rows, keeping the first in input order: 'exact' (same text after normalising), "
                   "'near' (also MinHash LSH near-duplicates), or 'none'.")
@click.option("--dedup-keep-case", is_flag=True, help="--dedup: compare text without case folding.")
@click.option("--dedup-keep-whitespace", is_flag=True, help="--dedup: compare text without collapsing whitespace.")
@click.option("--dedup-threshold", type=float, default=0.8, show_default=True,
              help="--dedup near: Jaccard similarity of n-gram sets that counts as a near duplicate.")
@click.option("--dedup-ngram", type=int, default=5, show_default=True,
              help="--dedup near: n-gram length in words (in characters for scripts written without spaces).")
@click.option("--decontaminate", multiple=True, metavar="FILES",
              help="Benchmark items (JSONL/JSON/CSV/Parquet records, or text: one item per line; files, dirs, "
                   "globs; repeatable): rows sharing an n-gram with an item are rejected.")
@click.option("--decontaminate-ngram-words", type=int, default=13, show_default=True,
              help="--decontaminate: n-gram length in words.")
@click.option("--decontaminate-ngram-chars", type=int, default=13, show_default=True,
              help="--decontaminate: n-gram length in characters for scripts written without spaces (CJK, Thai).")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def prepare_cmd(inputs, out, tokenizer, fmt, columns, template, max_length, truncation, test_size, seed,
                train_on_prompt, train_turns, train_roles, history, add_eos, strict, padding, padding_side, pack,
                block_size, remainder, stream, text_field, allow_control_text, engine, cache_dir, no_cache, num_proc,
                executor, ray_address, max_record_bytes, render_timeout, max_render_chars,
                mix, dedup, dedup_keep_case, dedup_keep_whitespace, dedup_threshold, dedup_ngram, decontaminate,
                decontaminate_ngram_words, decontaminate_ngram_chars, quiet) -> None:
    """Prepare INPUT files/dirs/globs (default: the bundled sample), or the sources of a --mix recipe, into a
    dataset at --out.

    Example: llmprep prepare chats.jsonl --out data/sft --test-size 0.1
    Example: llmprep prepare --mix recipe.yaml --out data/mix --dedup near --decontaminate mmlu.jsonl
    """
    from llmprep.cli.summary import print_summary
    from llmprep.executor.storage import is_uri
    from llmprep.prepare import PrepareConfig, run
    from llmprep.store import check_output_dir

    if not is_uri(out):  # refuse a bad --out before any work (the user's files are never replaced)
        check_output_dir(out)
    if block_size is not None:
        if pack != "wrap":
            raise click.UsageError("--block-size is the row length of --pack wrap; use --max-length otherwise")
        max_length = block_size
    if stream and pack != "wrap":
        raise click.UsageError("--stream needs --pack wrap (it concatenates documents into fixed blocks)")
    if ray_address and executor != "ray":
        raise click.UsageError("--ray-address needs --executor ray")
    if mix and inputs:
        raise click.UsageError(f"--mix {mix}: the recipe's sources are the inputs; give no INPUT "
                               f"(got {', '.join(inputs[:3])})")
    columns = parse_columns(columns)
    if text_field:
        columns.setdefault("text", text_field)
        fmt = fmt or "text"
    cfg = PrepareConfig(
        tokenizer=tokenizer, format=fmt, template=template, max_length=max_length, truncation=truncation,
        test_size=parse_test_size(test_size), seed=seed, train_on_prompt=train_on_prompt, train_turns=train_turns,
        train_roles=train_roles, history=history, add_eos=add_eos,
        strict=strict, columns=columns, padding=padding, padding_side=padding_side, pack=pack,
        remainder=remainder, literal_control_text=not allow_control_text, engine=engine, cache=not no_cache,
        cache_dir=cache_dir, num_proc=num_proc, progress=not quiet, executor=executor, ray_address=ray_address,
        max_record_bytes=max_record_bytes, render_timeout=render_timeout, max_render_chars=max_render_chars,
        mix=mix, dedup=dedup, dedup_keep_case=dedup_keep_case, dedup_keep_whitespace=dedup_keep_whitespace,
        dedup_threshold=dedup_threshold, dedup_ngram=dedup_ngram, decontaminate=tuple(decontaminate),
        decontaminate_ngram_words=decontaminate_ngram_words, decontaminate_ngram_chars=decontaminate_ngram_chars)
    inputs = list(inputs) or ([] if mix else [sample_path()])
    result = run(cfg, inputs, out=out)  # LlmprepError -> one clean line (cli.Group)
    if not quiet:
        print_summary(result, out)

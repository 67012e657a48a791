"""`llmprep cache info|clear|prune`: look at and trim the shard cache."""

from __future__ import annotations

import datetime as dt
import json

import click

from llmprep.cache import DEFAULT_MAX_SIZE

cache_dir_option = click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                                help="Cache directory (default $LLMPREP_CACHE or ~/.cache/llmprep).")


def _cache(cache_dir):
    from llmprep.cache import ShardCache, default_cache_dir

    return ShardCache(cache_dir or default_cache_dir())


def _size(n: int) -> str:
    """Bytes in decimal units. Example: 1_500_000 -> '1.5 MB'"""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


@click.group("cache")
def cache() -> None:
    """The shard cache: content-addressed entries, least recently used evicted past a size cap
    (default 20G, $LLMPREP_CACHE_MAX_SIZE)."""


@cache.command("info")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(cache_dir, as_json) -> None:
    """Where the cache is, how many entries and bytes, and what the last run used."""
    info = _cache(cache_dir).info()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"cache: {info['path']}")
    click.echo(f"entries: {info['entries']:,} ({_size(info['bytes'])})")
    if info["newest_use"]:
        stamp = dt.datetime.fromtimestamp(info["newest_use"]).isoformat(timespec="seconds")
        click.echo(f"last used: {stamp}")
    last = info["last_run"]
    if last:
        s = last["settings"]
        click.echo(f"last run: llmprep {s['version']}, tokenizer {s['tokenizer']}, template {s['template']}, "
                   f"{len(last['content']):,} shards")


@cache.command("clear")
@cache_dir_option
def clear_cmd(cache_dir) -> None:
    """Remove every entry."""
    n, size = _cache(cache_dir).clear()
    click.echo(f"removed {n:,} entries ({_size(size)})")


@cache.command("prune")
@cache_dir_option
@click.option("--max-size", default=DEFAULT_MAX_SIZE, show_default=True,
              help="Keep at most this much (500M, 20G, 1.5T): least recently used entries go first.")
def prune_cmd(cache_dir, max_size) -> None:
    """Evict least recently used entries down to --max-size."""
    from llmprep.cache import parse_size

    n, size = _cache(cache_dir).prune(parse_size(max_size))
    click.echo(f"removed {n:,} entries ({_size(size)})")

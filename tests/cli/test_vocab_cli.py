import shutil
import site
from pathlib import Path

import sentencepiece as spm
from click.testing import CliRunner
from transformers import LlamaConfig, LlamaForCausalLM

from llmprep.cli import main

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MISTRAL = Path(site.getsitepackages()[0]) / "mistral_common" / "data" / "tokenizer.model.v1"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_merge_compare_resize_prune(tmp_path):
    zh, tang = ASSETS / "zh_fortunes_excerpt.txt", ASSETS / "tang300_excerpt.txt"
    r = run("vocab", "train", "--corpus", zh, "--vocab-size", 3000, "--out", tmp_path / "sp")
    assert r.exit_code == 0, r.output
    assert "3,000 pieces" in r.output and (tmp_path / "sp" / "train_report.json").exists()
    base = tmp_path / "base"
    base.mkdir()
    shutil.copyfile(MISTRAL, base / "tokenizer.model")
    r = run("vocab", "merge", "--base", base, "--add", tmp_path / "sp", "--out", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    merged = spm.SentencePieceProcessor(model_file=str(tmp_path / "merged" / "tokenizer.model"))
    assert f"{merged.get_piece_size():,}" in r.output
    r = run("vocab", "compare", "--tokenizers", base / "tokenizer.model", "--tokenizers",
            tmp_path / "merged", "--corpus", tang)
    assert r.exit_code == 0, r.output
    assert str(tmp_path / "merged") in r.output and "tok/char" in r.output
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32000, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2))
    model.save_pretrained(str(tmp_path / "m"))
    shutil.copyfile(MISTRAL, tmp_path / "m" / "tokenizer.model")
    r = run("model", "resize", "--model", tmp_path / "m", "--tokenizer", tmp_path / "merged",
            "--out", tmp_path / "resized", "--init", "mean", "--pad-to-multiple-of", 8)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "resized" / "model.safetensors").exists() and "init mean" in r.output
    r = run("vocab", "prune", "--model", tmp_path / "resized", "--tokenizer", tmp_path / "merged",
            "--corpus", tang, "--out", tmp_path / "pruned")
    assert r.exit_code == 0, r.output
    assert "encodes identically" in r.output


def test_errors_are_click_messages_without_output(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    r = run("vocab", "train", "--corpus", bad, "--vocab-size", 100, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "not UTF-8" in r.output and str(bad) in r.output
    assert not (tmp_path / "o").exists()
    r = run("vocab", "merge", "--base", tmp_path / "missing", "--add", bad, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "--base" in r.output and "missing" in r.output
    r = run("vocab", "compare", "--tokenizers", tmp_path / "nope", "--corpus", ASSETS / "tang300_excerpt.txt")
    assert r.exit_code == 1 and "--tokenizers" in r.output

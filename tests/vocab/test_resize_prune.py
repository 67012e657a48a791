import json

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from llmprep.vocab.compare import compare
from llmprep.vocab.modelio import ModelMismatchError, load_fast
from llmprep.vocab.prune import prune
from llmprep.vocab.resize import resize, subword_ids
from vocab_assets import ZH, tiny_llama


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_resize_sentencepiece_keeps_old_logits_and_subword_mean(tiny_mistral_model_dir, merged_sp, tmp_path, other_lines):
    before = AutoModelForCausalLM.from_pretrained(str(tiny_mistral_model_dir)).eval()
    report = resize(tiny_mistral_model_dir, merged_sp, tmp_path / "out", pad_to_multiple_of=64)
    after = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    assert report.new_rows % 64 == 0 and report.new_rows >= report.new_tokens
    old_in, new_in = before.get_input_embeddings().weight, after.get_input_embeddings().weight
    old_out, new_out = before.get_output_embeddings().weight, after.get_output_embeddings().weight
    assert torch.equal(old_in, new_in[:32000]) and torch.equal(old_out, new_out[:32000])
    base, new = load_fast(tiny_mistral_model_dir, flag="t"), load_fast(tmp_path / "out", flag="t")
    ids = base.encode(other_lines[0]).ids
    assert torch.allclose(logits(after, ids)[:, :32000], logits(before, ids), atol=1e-5)
    i = new.token_to_id("中国") or 32000
    parts = subword_ids(new.id_to_token(i), base, new)
    assert len(parts) >= 1 and torch.allclose(new_in[i], old_in[parts].mean(0))
    assert torch.allclose(new_out[i], old_out[parts].mean(0))


def test_resize_and_prune_real_smollm2(smollm2_dir, merged_smol, tmp_path, other_lines, tang_lines):
    resized = tmp_path / "resized"
    report = resize(smollm2_dir, merged_smol, resized)
    assert report.tied
    before = AutoModelForCausalLM.from_pretrained(str(smollm2_dir)).eval()
    after = AutoModelForCausalLM.from_pretrained(str(resized)).eval()
    assert after.get_output_embeddings().weight.data_ptr() == after.get_input_embeddings().weight.data_ptr()
    ids = load_fast(smollm2_dir, flag="t").encode(other_lines[1]).ids[:24]
    assert torch.allclose(logits(after, ids)[:, :49152], logits(before, ids), atol=1e-4)
    # prune the real model to Tang poems: logits restricted to kept ids are unchanged
    corpus = tmp_path / "poems.txt"
    corpus.write_text("\n".join(tang_lines[:40]) + "\n", encoding="utf-8")
    pruned = prune(smollm2_dir, smollm2_dir, [corpus], tmp_path / "pruned")
    assert pruned.corpus_identical and pruned.kept_tokens < 2000
    small = AutoModelForCausalLM.from_pretrained(str(tmp_path / "pruned")).eval()
    old_tok, new_tok = load_fast(smollm2_dir, flag="t"), load_fast(tmp_path / "pruned", flag="t")
    kept = [old_tok.token_to_id(new_tok.id_to_token(i)) for i in range(new_tok.get_vocab_size())]
    line = tang_lines[3]
    old_ids, new_ids = old_tok.encode(line).ids, new_tok.encode(line).ids
    assert [kept[i] for i in new_ids] == old_ids
    assert torch.allclose(logits(small, new_ids), logits(before, old_ids)[:, kept], atol=1e-4)


def test_prune_sentencepiece_keeps_byte_fallback_and_encodes_identically(tmp_path, merged_sp, tang_lines):
    d = tmp_path / "m"
    n = Tokenizer.from_file(str(merged_sp / "tokenizer.json")).get_vocab_size()
    model = tiny_llama(n, tied=False)
    model.save_pretrained(str(d))
    report = prune(d, merged_sp, [ZH], tmp_path / "pruned")
    assert report.corpus_identical and report.kept_tokens < n
    row = compare([str(tmp_path / "pruned" / "tokenizer.model"), str(tmp_path / "pruned")], tang_lines)
    assert row[0].tokens == row[1].tokens and row[0].roundtrip_failures == 0  # unseen chars via bytes
    small = AutoModelForCausalLM.from_pretrained(str(tmp_path / "pruned")).eval()
    old_tok, new_tok = load_fast(merged_sp, flag="t"), load_fast(tmp_path / "pruned", flag="t")
    kept = [old_tok.token_to_id(new_tok.id_to_token(i)) for i in range(new_tok.get_vocab_size())]
    line = ZH.read_text(encoding="utf-8").splitlines()[2]
    assert torch.allclose(logits(small, new_tok.encode(line).ids),
                          logits(model, old_tok.encode(line).ids)[:, kept], atol=1e-5)


def test_model_tokenizer_mismatch_is_named(tmp_path, mistral_dir, merged_sp):
    d = tmp_path / "m"
    tiny_llama(1000, tied=True).save_pretrained(str(d))
    with pytest.raises(ModelMismatchError, match=r"--model .* 1,000 rows .* 32,000 ids"):
        resize(d, merged_sp, tmp_path / "out", base_tokenizer=mistral_dir)
    assert not (tmp_path / "out").exists()


def test_compare_counts_match_direct_encoding(mistral_dir, tang_lines):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(mistral_dir / "tokenizer.model"))
    (row,) = compare([str(mistral_dir / "tokenizer.model")], tang_lines)
    ids = [i for line in sp.encode(tang_lines) for i in line]
    assert row.tokens == len(ids) and row.byte_fallback == sum(sp.is_byte(i) for i in ids)
    assert row.characters == sum(map(len, tang_lines)) and row.roundtrip_failures == 0
    assert json.dumps(row.as_dict())

"""Per-trained-token loss: the fused chunked loss equals HF's, and packed == unpacked == flattened, for one
batch and through whole Trainer steps with gradient accumulation (peers report packed losses 3x off:
LLaMA-Factory #8277, TRL #2834)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from datasets import load_from_disk
from train_helpers import read_jsonl, tiny_llama

from llmprep.attention import register_varlen
from llmprep.collate import PaddingCollator
from llmprep.collate_packed import PackedCollator
from llmprep.constants import IGNORE_INDEX
from llmprep.train import train
from llmprep.train.loss import install_fused_loss, linear_cross_entropy, trained_targets


def test_linear_cross_entropy_matches_torch_value_and_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    ref = F.cross_entropy(hidden @ weight.T, targets, reduction="sum") / 40
    ref.backward()
    g_h, g_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    got = linear_cross_entropy(hidden, weight, targets, 40, chunk=8)  # 5 chunks, the last one short
    got.backward()
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(hidden.grad, g_h)
    torch.testing.assert_close(weight.grad, g_w)


def test_linear_cross_entropy_with_nothing_to_train_is_a_zero_with_gradients():
    hidden = torch.randn(0, 4, requires_grad=True)
    weight = torch.randn(6, 4, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.zeros(0, dtype=torch.long), 0)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(weight.grad) == 0


def test_trained_targets_counts_the_shifted_labels():
    assert trained_targets(torch.tensor([[5, 6, -100], [-100, -100, 7]])) == 2  # labels[0] is never a target


def test_fused_forward_equals_hf_loss_and_gradients():
    ref_model = tiny_llama(vocab_size=300)
    fused = copy.deepcopy(ref_model)
    assert install_fused_loss(fused)
    ids = torch.randint(0, 300, (3, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX
    labels[1, 8:] = IGNORE_INDEX
    n = trained_targets(labels) + 5  # as if other micro-batches of the step held 5 more targets
    ref = ref_model(input_ids=ids, labels=labels, num_items_in_batch=n).loss
    got = fused(input_ids=ids, labels=labels, num_items_in_batch=n)
    assert got.logits is None  # no [tokens x vocab] tensor kept
    torch.testing.assert_close(got.loss, ref, rtol=1e-6, atol=1e-6)
    ref.backward()
    got.loss.backward()
    for (name, p), (_, q) in zip(ref_model.named_parameters(), fused.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert fused(input_ids=ids).logits.shape == (3, 12, 300)  # without labels: the original forward


def _mean_loss(model, batch) -> torch.Tensor:
    """sum CE / trained targets of one batch, through the model's own forward."""
    with torch.no_grad():
        return model(**batch, num_items_in_batch=trained_targets(batch["labels"])).loss


@pytest.fixture(scope="module")
def splits(chat_data):
    return load_from_disk(str(chat_data / "plain")), load_from_disk(str(chat_data / "packed"))


def test_one_batch_loss_is_the_same_padded_packed_and_flattened(splits):
    plain, packed = splits
    rows, prows = list(plain["train"]), list(packed["train"])
    assert len(prows) < len(rows)  # several chats per packed row
    model = tiny_llama().eval()
    install_fused_loss(model)
    padded = _mean_loss(model, PaddingCollator(pad_token_id=2)(rows))
    masked = _mean_loss(model, PackedCollator.for_model(model, pad_token_id=2)(prows))  # sdpa: 4D block mask
    model.set_attn_implementation(register_varlen())
    flat_packed = _mean_loss(model, PackedCollator.for_model(model, pad_token_id=2)(prows))  # one [1, N] row
    flat_plain = _mean_loss(model, PackedCollator.for_model(model, pad_token_id=2)(rows))
    for other in (masked, flat_packed, flat_plain):
        torch.testing.assert_close(other, padded, rtol=2e-6, atol=2e-6)
    # The trap peers fall into: averaging per row (or per micro-batch) gives another number.
    per_row = torch.stack([_mean_loss(model, PackedCollator.for_model(model, pad_token_id=2)([r])) for r in prows])
    assert abs(per_row.mean().item() - padded.item()) > 1e-3


def test_trainer_steps_packed_equal_unpacked_with_grad_accumulation(splits, tmp_path):
    """Two optimizer steps over the same 32 chats: unpacked in 4 accumulated micro-batches of 8 vs
    packed rows in one batch: same logged loss each step, same weights after."""
    plain, packed = splits
    n_packed = len(packed["train"])
    runs = {"plain": (plain, dict(batch_size=8, grad_accum=4)),
            "packed": (packed, dict(batch_size=n_packed, grad_accum=1))}
    weights, losses = {}, {}
    for name, (data, opts) in runs.items():
        out = tmp_path / name
        train(_train_only(data), out, model=tiny_llama(), max_steps=2, lr=1e-2,
              warmup=0, logging_steps=1, save_steps=100, plot=False, progress=False, seed=0, tokenizer="smollm2",
              **opts)
        losses[name] = [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
        weights[name] = _weights(out)
    assert len(losses["plain"]) == 2
    torch.testing.assert_close(torch.tensor(losses["packed"]), torch.tensor(losses["plain"]), rtol=1e-5, atol=1e-5)
    for key, value in weights["plain"].items():
        torch.testing.assert_close(weights["packed"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def _train_only(data):
    from datasets import DatasetDict

    return DatasetDict({"train": data["train"]})


def _weights(out) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    assert json.loads((out / "llmprep-run.json").read_text())["status"] == "finished"
    return load_file(str(out / "model.safetensors"))

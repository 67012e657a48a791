"""HF Trainer with llmprep's causal-LM evaluation: one loss per trained token over the whole eval set.

Trainer's own evaluation averages per-batch mean losses weighted by rows, so a packed and an unpacked
copy of the same test split report different eval losses. Here eval_loss = sum of cross-entropy over
every trained target / number of trained targets, summed over batches and ranks: the same number for
any batching. Training itself is HF Trainer's loop (accelerate, DeepSpeed, FSDP, checkpoints, resume).
"""

from __future__ import annotations

import math
import time

import torch
from transformers import Trainer, TrainerCallback

from llmprep.train.loss import trained_targets


class LlmprepTrainer(Trainer):
    """Trainer whose evaluate() reports per-token eval_loss and eval_perplexity for causal LMs."""

    def __init__(self, *args, causal_lm: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.causal_lm = causal_lm

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if not self.causal_lm:
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        start = time.time()
        dataloader = self.get_eval_dataloader(eval_dataset)
        model = self.model_wrapped if self.model_wrapped is not None else self.model
        was_training = model.training
        model.eval()
        device = self.args.device
        total = torch.zeros((), dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        one = torch.ones((), device=device)
        with torch.no_grad():
            for batch in dataloader:
                batch = self._prepare_inputs(batch)
                with self.compute_loss_context_manager():
                    # num_items_in_batch=1: both the fused loss and HF's loss then return the sum
                    out = model(**batch, num_items_in_batch=one)
                total += out.loss.detach().double()
                count += trained_targets(batch["labels"]).double()
        total = self.accelerator.reduce(total, reduction="sum")
        count = self.accelerator.reduce(count, reduction="sum")
        loss = float(total / count.clamp(min=1))
        metrics = {f"{metric_key_prefix}_loss": loss,
                   f"{metric_key_prefix}_perplexity": math.exp(loss) if loss < 50 else float("inf"),
                   f"{metric_key_prefix}_tokens": int(count),
                   f"{metric_key_prefix}_runtime": round(time.time() - start, 4)}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if was_training:
            model.train()
        return metrics


class SkipFinalCheckpoint(TrainerCallback):
    """HF Trainer checkpoints at the last step whatever --save-steps says; the finished run's model is
    written anyway (with no optimizer state to resume: a finished run is not resumed), so that extra
    checkpoint-N (weights + 2x weights of optimizer state) is skipped unless N is a --save-steps multiple."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps and args.save_steps and \
                state.global_step % int(args.save_steps) != 0:
            control.should_save = False
        return control

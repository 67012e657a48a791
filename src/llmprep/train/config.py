"""Options of `llmprep train`, checked together before anything loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from llmprep.errors import ConfigError
from llmprep.models import TASKS

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
ATTENTION = ("auto", "sdpa", "eager", "flex", "varlen")


@dataclass
class TrainConfig:
    """Options of `llmprep train`; names mirror the CLI flags.

    Example: TrainConfig(max_steps=5, lora=True) -> 5 optimizer steps of LoRA adapters (r=16)
    """

    task: str = "auto"  # "auto": from the data (scalar labels -> classification, token labels -> causal-lm)
    tokenizer: str | None = None  # default: the one the data was prepared with
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    eval_batch_size: int | None = None
    grad_accum: int = 1
    lr: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup: float = 0.03  # < 1: a fraction of the total steps; >= 1: a number of steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int | None = None  # default 2 * lora_r
    lora_dropout: float = 0.05
    bf16: bool = False
    gradient_checkpointing: bool = False
    eval_steps: int | None = None  # None: evaluate once at the end (when there is a test split)
    save_steps: int = 500
    save_total_limit: int = 2
    resume: bool = False
    logging_steps: int = 10
    seed: int = 42
    deepspeed: str | None = None  # a JSON path or a shipped name: zero2, zero3
    fsdp: bool = False
    attention: str = "auto"
    compile: bool = False
    fused_loss: bool = True  # chunked linear+cross-entropy where the model allows it
    cpu: bool = False
    num_workers: int = 0
    # Raw inputs (not a prepared directory) are prepared once, on the main process, with these:
    max_length: int = 2048
    test_size: float = 0.0
    pack: str = "none"
    plot: bool = True
    progress: bool = True

    def check(self) -> None:
        """Collect every bad option and report them together."""
        problems = []
        for name, value, valid in [("--task", self.task, ("auto",) + TASKS),
                                   ("--lr-scheduler", self.lr_scheduler, SCHEDULERS),
                                   ("--attention", self.attention, ATTENTION),
                                   ("--pack", self.pack, ("none", "bfd"))]:
            if value not in valid:
                problems.append(f"{name} {value!r} is not valid; choose one of {', '.join(valid)}")
        for name, value in [("--batch-size", self.batch_size), ("--grad-accum", self.grad_accum),
                            ("--save-steps", self.save_steps), ("--logging-steps", self.logging_steps),
                            ("--lora-r", self.lora_r), ("--max-length", self.max_length)]:
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name} {value!r}: expected a positive integer")
        for name, value in [("--eval-steps", self.eval_steps), ("--eval-batch-size", self.eval_batch_size)]:
            if value is not None and (not isinstance(value, int) or value < 1):
                problems.append(f"{name} {value!r}: expected a positive integer")
        if self.save_total_limit < 1:
            problems.append(f"--save-total-limit {self.save_total_limit!r}: expected 1 or more")
        if self.max_steps == 0 or self.max_steps < -1:
            problems.append(f"--max-steps {self.max_steps!r}: expected a positive number of steps")
        if self.max_steps < 0 and self.epochs <= 0:
            problems.append(f"--epochs {self.epochs!r}: expected a positive number")
        if self.lr <= 0:
            problems.append(f"--lr {self.lr!r}: expected a positive learning rate")
        if self.warmup < 0 or (self.warmup >= 1 and self.warmup != int(self.warmup)):
            problems.append(f"--warmup {self.warmup!r}: expected a fraction in [0, 1) or a whole number of steps")
        if self.deepspeed and self.fsdp:
            problems.append("--deepspeed and --fsdp: choose one sharding engine")
        if problems:
            raise ConfigError("; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)


# Options that must not change between a run and its --resume: they change what the weights mean.
RESUME_KEYS = ("task", "tokenizer", "lora", "lora_r", "lora_alpha", "fsdp", "deepspeed")

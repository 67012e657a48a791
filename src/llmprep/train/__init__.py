"""Fine-tuning on prepared data: causal LMs (full or LoRA) and sequence classifiers, on HF Trainer.

    config      TrainConfig: every `llmprep train` option, checked together
    data        DATA -> TrainData (splits, task from the labels, label names, template)
    build       the model for the task: attention path, fused loss, LoRA, compile
    collators   which collator the data layout and attention implementation need
    loss        per-trained-token loss, chunked linear + cross-entropy
    trainer     Trainer with per-token causal-LM evaluation
    metrics     metrics.jsonl and the loss curve
    checkpoints complete checkpoints, what --resume continues from
    rundir      OUT from first step to the finished model (swapped in atomically)
    classification  accuracy / F1 and prediction rows
    run         train(): all of the above in order
"""

from llmprep.train.config import TrainConfig

__all__ = ["TrainConfig", "check_vocab", "train"]


def __getattr__(name: str):
    # train/check_vocab pull in torch + transformers: loaded on first use, so `llmprep --help` and
    # `llmprep prepare` (which import the CLI's option lists from llmprep.train.config) stay light.
    if name in ("train", "check_vocab"):
        from llmprep.train import run

        return getattr(run, name)
    raise AttributeError(f"module 'llmprep.train' has no attribute {name!r}")

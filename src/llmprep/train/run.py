"""`llmprep train`: one run from DATA to a finished RUN_DIR.

    check options -> load data (or prepare raw inputs once) -> load model for the task -> attention,
    fused loss, LoRA, compile -> HF Trainer (eval, checkpoints, resume, metrics.jsonl) -> final
    model + tokenizer (training template) + generation_config (stops at the end-of-turn token) ->
    swap in the finished RUN_DIR

Under `accelerate launch` / `torchrun` every rank runs this; the main process alone prepares raw data
and writes RUN_DIR files, the others wait for it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Sequence

from llmprep import models
from llmprep.errors import ConfigError
from llmprep.models import CAUSAL_LM, CLASSIFICATION
from llmprep.train.config import TrainConfig
from llmprep.train.data import TrainData, is_prepared, load_prepared
from llmprep.train.rundir import RunDir

TRAIN_METRICS = "train_metrics.json"


def shipped_config(name: str) -> Path:
    """Path of a config shipped in llmprep/configs. Example: "zero3" -> .../configs/deepspeed_zero3.json"""
    import importlib.resources

    return Path(str(importlib.resources.files("llmprep") / "configs" / name))


def resolve_deepspeed(value: str | None) -> str | None:
    """--deepspeed zero2|zero3|PATH -> a JSON path; needs the deepspeed package."""
    if not value:
        return None
    path = shipped_config(f"deepspeed_{value}.json") if value in ("zero2", "zero3") else Path(value)
    if not path.is_file():
        raise ConfigError(f"--deepspeed {value!r}: expected zero2, zero3 (shipped configs) or a JSON file")
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"--deepspeed {value!r}: the deepspeed package is not installed (pip install deepspeed); "
                          "run under `accelerate launch` or `deepspeed`")
    return str(path)


def check_vocab(model, tokenizer) -> None:
    """The model must have an embedding row for every token id the data can hold."""
    rows = model.get_input_embeddings().num_embeddings
    if rows < len(tokenizer):
        raise ConfigError(f"--model has {rows} embedding rows but the tokenizer has {len(tokenizer)} tokens; "
                          "run `llmprep model resize` first (or pass the model's own --tokenizer)")


def train(data: str | Sequence[str] | Any, out: str | Path, *, model: Any = "smollm2",
          config: TrainConfig | None = None, callbacks: Sequence = (), **options) -> dict:
    """Train `model` on `data` into the run directory `out`; returns the final metrics.

    data: a prepared directory, raw input files (prepared once into OUT/data), or a DatasetDict.
    model: a --model value (see llmprep.models.resolve) or an already built transformers model.
    options: TrainConfig fields. Example: train("out/demo", "runs/t", max_steps=5)
    -> {"train_loss": 2.1, "eval_loss": 2.0, "eval_perplexity": 7.4, ...}
    """
    from accelerate import PartialState

    cfg = config or TrainConfig(**options)
    cfg.check()
    deepspeed = resolve_deepspeed(cfg.deepspeed)
    state = PartialState(cpu=cfg.cpu)
    run = RunDir(out)
    inputs = [str(d) for d in (data if isinstance(data, (list, tuple)) else [data]) if isinstance(d, (str, Path))]
    with state.main_process_first():  # a bad --out fails before a model is loaded, not after
        run.check_place(resume=cfg.resume, inputs=inputs, main=state.is_main_process)
    spec = model if isinstance(model, str) else (getattr(getattr(model, "config", None), "name_or_path", None)
                                                 or f"<{type(model).__name__} object>")
    with state.main_process_first():  # a GGUF is dequantized and cached once, not once per rank
        src = models.resolve(model) if isinstance(model, str) else None
    data, raw = _raw_inputs(data)
    loaded = None if raw else _load(data, cfg)
    if loaded is not None and cfg.eval_steps and loaded.eval_split is None:
        raise ConfigError("--eval-steps: DATA has no 'test' split to evaluate on; prepare it with --test-size")
    tok_spec = cfg.tokenizer or (loaded.tokenizer if loaded else None) or (src.tokenizer if src else None)
    if tok_spec is None or (src is not None and tok_spec == src.tokenizer and not _has_tokenizer(src)):
        raise ConfigError(f"--model {spec!r} has no tokenizer files and DATA names none (no report.json); "
                          "pass --tokenizer")
    meta = {"task": cfg.task if loaded is None else loaded.task, "base_model": spec, "tokenizer": tok_spec,
            "config": {**cfg.as_dict(), "tokenizer": tok_spec}}
    resume_from = run.check(meta, resume=cfg.resume, inputs=inputs, main=state.is_main_process)
    state.wait_for_everyone()
    if state.is_main_process:
        run.begin(meta, resume_from)
    state.wait_for_everyone()
    try:
        if loaded is None:
            loaded = _prepare_raw(raw, run, cfg, tok_spec, state)
            meta["task"] = loaded.task
            if cfg.eval_steps and loaded.eval_split is None:
                raise ConfigError("--eval-steps: no test split to evaluate on; pass --test-size")
        metrics = _run(loaded, run, cfg, src or model, tok_spec, meta, resume_from, deepspeed, state, callbacks)
    except BaseException:
        if state.is_main_process:
            run.abort()
        raise
    return metrics


def _raw_inputs(data) -> tuple[Any, list[str] | None]:
    """(data, raw input paths or None). A prepared directory, alone or in a one-item list, is not raw.

    Example: ["chats.jsonl"] -> (["chats.jsonl"], ["chats.jsonl"]); ["out/demo"] -> ("out/demo", None)
    """
    if isinstance(data, (list, tuple)):
        if len(data) == 1 and is_prepared(data[0]):
            return data[0], None
        return data, [str(d) for d in data]
    if isinstance(data, (str, Path)) and not is_prepared(data):
        return data, [str(data)]
    return data, None


def _has_tokenizer(src: models.ModelSource) -> bool:
    if src.kind == "hub" or src.tokenizer in ("smollm2",):
        return True
    p = Path(src.tokenizer)
    return p.suffix == ".gguf" or any((p / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.txt"))


def _load(data, cfg: TrainConfig) -> TrainData:
    from datasets import DatasetDict

    if isinstance(data, DatasetDict):
        from llmprep.train.data import label_names, task_of

        task = task_of(data)
        if cfg.task != "auto" and cfg.task != task:
            raise ConfigError(f"--task {cfg.task}: the data trains --task {task}")
        loaded = TrainData(data, task, None)
        if task == CLASSIFICATION:
            loaded.label_names = label_names(data)
        return loaded
    return load_prepared(data, task=cfg.task)


def _prepare_raw(inputs: list[str], run: RunDir, cfg: TrainConfig, tok_spec: str | None, state) -> TrainData:
    """Raw records -> OUT/data, prepared by the main process only; every rank then loads that."""
    target = run.out / "data"
    if state.is_main_process and not (target / "dataset_dict.json").is_file():
        from llmprep.prepare import prepare

        print(f"llmprep train: preparing {', '.join(inputs)} -> {target}", flush=True)
        prepare(inputs, out=target, tokenizer=tok_spec or "smollm2", max_length=cfg.max_length,
                test_size=cfg.test_size, seed=cfg.seed, pack=cfg.pack, progress=False)
    state.wait_for_everyone()
    return load_prepared(target, task=cfg.task)


def _training_args(loaded: TrainData, run: RunDir, cfg: TrainConfig, deepspeed: str | None):
    import torch
    from transformers import TrainingArguments

    fsdp = {}
    if cfg.fsdp:
        fsdp = {"fsdp": True,
                "fsdp_config": json.loads(shipped_config("fsdp.json").read_text(encoding="utf-8"))}
    has_eval = loaded.eval_split is not None
    return TrainingArguments(
        output_dir=str(run.checkpoints), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup if cfg.warmup < 1 else int(cfg.warmup), weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, bf16=cfg.bf16, **_checkpointing(cfg),
        eval_strategy="steps" if cfg.eval_steps and has_eval else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps, logging_first_step=True, seed=cfg.seed, data_seed=cfg.seed,
        report_to=[], deepspeed=deepspeed, use_cpu=cfg.cpu, dataloader_num_workers=cfg.num_workers,
        remove_unused_columns=False, label_names=["labels"], prediction_loss_only=loaded.task == CAUSAL_LM,
        disable_tqdm=not cfg.progress, logging_nan_inf_filter=False,
        dataloader_pin_memory=torch.cuda.is_available() and not cfg.cpu, **fsdp)


def _checkpointing(cfg: TrainConfig) -> dict:
    """Activation (gradient) checkpointing arguments; the option's name changed in transformers 5.2x."""
    from transformers import TrainingArguments

    if not cfg.gradient_checkpointing:
        return {}
    fields = TrainingArguments.__dataclass_fields__
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def _run(loaded: TrainData, run: RunDir, cfg: TrainConfig, model_src, tok_spec, meta: dict, resume_from,
         deepspeed, state, callbacks) -> dict:
    from llmprep.tokenizer import load_tokenizer
    from llmprep.train.build import build_model, training_template
    from llmprep.train.classification import compute_metrics
    from llmprep.train.collators import collator_for, describe
    from llmprep.train.metrics import MetricsLog, plot_loss
    from llmprep.train.trainer import LlmprepTrainer, SkipFinalCheckpoint

    tokenizer = load_tokenizer(tok_spec or "smollm2")
    template = training_template(loaded, tokenizer)  # checked now, not after hours of training
    args = _training_args(loaded, run, cfg, deepspeed)
    model, details = build_model(model_src, loaded, tokenizer, cfg, device=args.device,
                                 sharded=bool(deepspeed or cfg.fsdp))
    collator = collator_for(loaded.task, loaded.packed, model, tokenizer)
    meta.update(details, collator=describe(collator), label_names=loaded.label_names, world_size=state.num_processes)
    if state.is_main_process:
        run.write_status(meta, "running")
    trainer = LlmprepTrainer(model=model, args=args, train_dataset=loaded.splits["train"],
                             eval_dataset=loaded.eval_split, data_collator=collator,
                             compute_metrics=compute_metrics if loaded.task == CLASSIFICATION else None,
                             callbacks=[MetricsLog(run.out), SkipFinalCheckpoint(), *callbacks],
                             causal_lm=loaded.task == CAUSAL_LM)
    if not cfg.progress:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # --quiet: no per-step dicts on stdout
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except (RuntimeError, ValueError) as exc:
        if resume_from is not None and ("size mismatch" in str(exc) or "Error(s) in loading" in str(exc)):
            raise ConfigError(f"--resume: {resume_from} does not fit this model ({str(exc).splitlines()[0]})") from exc
        raise
    metrics = {k: v for k, v in result.metrics.items()}
    if loaded.eval_split is not None:
        metrics.update(_final_eval(trainer))
    if loaded.task == CAUSAL_LM and "eval_loss" in metrics:
        metrics["eval_perplexity"] = math.exp(metrics["eval_loss"]) if metrics["eval_loss"] < 50 else float("inf")
    from llmprep.models import quiet_loading

    with quiet_loading() if not cfg.progress else contextlib.nullcontext():
        trainer.save_model(str(run.final))  # every rank: FSDP / ZeRO-3 gather the weights
    state.wait_for_everyone()
    if state.is_main_process:
        (run.final / "training_args.bin").unlink(missing_ok=True)  # a pickle; llmprep-run.json has every option
    if state.is_main_process:
        _finish_files(run, trainer.model, tokenizer, template, loaded.task, metrics)
        if cfg.plot:
            plot_loss(run.out, run.final / "loss.png")
        meta["final_metrics"] = metrics
        run.finish(meta)
    state.wait_for_everyone()
    return metrics


def _final_eval(trainer) -> dict:
    """Metrics on the test split after training; reuses the last evaluation when it ran at the last step."""
    last = [h for h in trainer.state.log_history if "eval_loss" in h]
    if last and last[-1].get("step") == trainer.state.global_step:
        return {k: v for k, v in last[-1].items() if k.startswith("eval_")}
    return trainer.evaluate()


def _finish_files(run: RunDir, model, tokenizer, template: str | None, task: str, metrics: dict) -> None:
    """Tokenizer with the training template, generation_config that stops at the end-of-turn token,
    train_metrics.json: all into OUT/.final next to the weights."""
    from llmprep.store import write_json

    final = run.final
    if template:
        tokenizer.chat_template = template  # generate/chat with --model RUN_DIR render exactly as training did
    tokenizer.save_pretrained(str(final))
    if task == CAUSAL_LM:
        _save_generation_config(model, tokenizer, final)
    write_json(final / TRAIN_METRICS, metrics)


def _save_generation_config(model, tokenizer, final: Path) -> None:
    from transformers import GenerationConfig

    from llmprep.generate import stop_token_ids

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    gen = getattr(base, "generation_config", None) or GenerationConfig()
    gen.eos_token_id = stop_token_ids(tokenizer)
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen.eos_token_id[0]
    gen.save_pretrained(str(final))

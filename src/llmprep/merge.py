"""`llmprep model merge-lora`: a LoRA run folded into a plain model directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from llmprep.errors import ConfigError

# Files of a run that describe how to use the model, carried next to the merged weights.
CARRIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
           "tokenizer.model", "vocab.txt", "generation_config.json")


def merge_lora(run: str | Path, out: str | Path) -> Path:
    """Load base + adapters, merge (W + B A * alpha / r), save to `out` with the run's tokenizer.

    Example: merge_lora("runs/lora", "models/merged") -> models/merged (config.json, model.safetensors, ...)
    """
    from llmprep import models
    from llmprep.store import atomic_output_dir, check_not_input, check_output_dir

    check_not_input(out, [run])  # replacing the run with its merge would delete the run
    check_output_dir(out)  # a bad --out fails before the model loads
    src = models.resolve(str(run))
    if src.kind != "adapter":
        raise ConfigError(f"--model {str(run)!r}: holds full weights, not LoRA adapters; nothing to merge "
                          "(it already loads as a plain model)")
    task = models.CLASSIFICATION if (models.read_run(Path(src.path)) or {}).get("task") == models.CLASSIFICATION \
        else models.CAUSAL_LM
    merged = models.load(src, task=task, merge=True)
    with atomic_output_dir(out) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        for name in CARRIED:
            if (Path(src.path) / name).is_file():
                shutil.copyfile(Path(src.path) / name, tmp / name)
    return Path(out)

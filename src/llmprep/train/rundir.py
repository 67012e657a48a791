"""The run directory (--out) from first step to finished model.

While the run is in progress OUT holds only what a resume needs, never a loadable model:

    OUT/llmprep-run.json     {"status": "running", task, base model, options, ...}
    OUT/checkpoints/         checkpoint-N/ (HF Trainer's; the newest --save-total-limit kept)
    OUT/metrics.jsonl        one line per logging step / evaluation
    OUT/data/                raw inputs prepared once for this run (when DATA was not a prepared dir)

At the end every rank writes the model into OUT/.final (FSDP and ZeRO-3 gather weights on all
ranks), then the main process assembles the finished run in a fresh directory and swaps it in with
`llmprep.store.atomic_output_dir`: config.json / adapter_config.json and status "finished" appear
together, so an unfinished OUT never loads as a finished model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from llmprep.errors import ConfigError
from llmprep.models import RUN_FILE, read_run
from llmprep.train.checkpoints import drop_incomplete, newest_complete
from llmprep.train.config import RESUME_KEYS
from llmprep.train.metrics import METRICS, truncate_metrics

CHECKPOINTS = "checkpoints"
FINAL = ".final"
KIND = "llmprep-train-run"
CARRIED = (CHECKPOINTS, METRICS, "data")  # moved from the in-progress OUT into the finished one
RUNNING = (RUN_FILE, FINAL, *CARRIED)  # every name an OUT in progress holds (its llmprep.store marker lists them)


class RunDir:
    """OUT of one `llmprep train` invocation. Example: RunDir("runs/t").begin(meta, resume=False)"""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.created = False  # this invocation started the run (so a failure before any checkpoint undoes it)
        self.existed = False  # OUT was there before (an empty folder: kept on failure, emptied)

    @property
    def checkpoints(self) -> Path:
        return self.out / CHECKPOINTS

    def check_place(self, *, resume: bool, inputs=(), main: bool = True) -> dict | None:
        """Decide, before any work and without writing, whether this run may use OUT; -> its run file or None.

        Raises OutputError (llmprep.store's rules: OUT is a file, holds the user's files, is not writable,
        is or holds an input) or ConfigError (another llmprep output, a finished run, an unfinished run
        without --resume, --resume with no run there). `main`: this is the main process, the only one
        that removes what a killed run left (the others check after it).
        """
        from llmprep.store import check_not_input, check_output_dir, clean_stale, read_marker

        if main:
            clean_stale(self.out / "data")  # a run killed while preparing OUT/data left its temp dir in OUT
        check_not_input(self.out, inputs)  # `--out DATA`: the run would be written over its own data
        check_output_dir(self.out)
        out = self.out
        run = read_run(out) if out.is_dir() else None
        if run is None:
            if out.is_dir() and any(out.iterdir()):
                command = (read_marker(out) or {}).get("command", "llmprep")
                raise ConfigError(f"--out {str(out)!r}: holds the output of `{command}`, not a training run; "
                                  "choose a new --out (or delete that one) to train")
            if resume:
                raise ConfigError(f"--resume: --out {str(out)!r} holds no run to resume; drop --resume to start one")
            return None
        if run.get("status") == "finished":
            raise ConfigError(f"--out {str(out)!r}: holds a finished training run; choose a new --out "
                              "(or delete that one) to train again")
        if not resume:
            ckpt = newest_complete(self.checkpoints)
            at = f" (newest complete checkpoint: {ckpt.name})" if ckpt else " (no complete checkpoint yet)"
            raise ConfigError(f"--out {str(out)!r}: holds an unfinished run{at}; add --resume to continue it, "
                              "or choose a new --out")
        return run

    def check(self, meta: dict, *, resume: bool, inputs=(), main: bool = True) -> Path | None:
        """check_place, then (an unfinished run with --resume) the same settings; -> the checkpoint to
        resume from, or None for a new run."""
        run = self.check_place(resume=resume, inputs=inputs, main=main)
        if run is None:
            return None
        self._check_same_run(run, meta)
        return newest_complete(self.checkpoints)

    def _check_same_run(self, run: dict, meta: dict) -> None:
        before, now = run.get("config", {}), meta.get("config", {})
        diffs = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in RESUME_KEYS if before.get(k) != now.get(k)]
        if run.get("base_model") != meta.get("base_model"):
            diffs.append(f"--model: {run.get('base_model')!r} -> {meta.get('base_model')!r}")
        if diffs:
            raise ConfigError(f"--resume: --out {str(self.out)!r} was started with other settings ("
                              + "; ".join(diffs) + "); resume with the same command, or choose a new --out")

    def begin(self, meta: dict, resume_from: Path | None) -> None:
        """Create or reopen OUT (main process only). A resume drops unfinished checkpoints and the
        metrics logged after the checkpoint it continues from."""
        from llmprep.store import write_marker

        self.existed = self.out.is_dir()
        self.created = not self.existed or not any(self.out.iterdir())
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        # Marked as llmprep's from the start: --resume and the final swap (llmprep.store) may replace it,
        # and an input folder holding it is not read as data. It lists every name a run in progress holds.
        write_marker(self.out, "llmprep train", entries=RUNNING)
        if resume_from is not None:
            drop_incomplete(self.checkpoints)
            truncate_metrics(self.out, int(resume_from.name.split("-")[-1]))
        elif (self.out / METRICS).exists():
            (self.out / METRICS).unlink()  # a resume that found no complete checkpoint starts over
        shutil.rmtree(self.out / FINAL, ignore_errors=True)
        self.write_status(meta, "running")

    def write_status(self, meta: dict, status: str, target: Path | None = None) -> None:
        data = {"kind": KIND, **meta, "status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
        path = (target or self.out) / RUN_FILE
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # llmprep.store's temp-file pattern
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)

    @property
    def final(self) -> Path:
        return self.out / FINAL

    def finish(self, meta: dict) -> None:
        """Main process: swap in the finished run (model files from OUT/.final, checkpoints, metrics, data)."""
        from llmprep.store import atomic_output_dir

        with atomic_output_dir(self.out) as tmp:
            for f in self.final.iterdir():
                os.replace(f, tmp / f.name)
            for name in CARRIED:
                if (self.out / name).exists():
                    os.replace(self.out / name, tmp / name)
            self.write_status(meta, "finished", target=tmp)

    def abort(self) -> None:
        """After a failure: remove OUT if this invocation created it and no checkpoint is complete yet
        (nothing there to resume); otherwise keep it for --resume."""
        if not (self.created and self.out.is_dir() and newest_complete(self.checkpoints) is None):
            return
        if not self.existed:
            shutil.rmtree(self.out, ignore_errors=True)
            return
        for entry in self.out.iterdir():  # the user's empty folder stays; only what this run wrote goes
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

"""Training throughput: llmprep train vs TRL SFTTrainer vs HF Trainer + DataCollatorWithFlattening.

Every method trains the same prepared chats (the 20k benchmark set of benchmarks/data.py, SmolLM2
tokenizer, assistant-only labels, max length 2048) on the same model (the SmolLM2-135M architecture,
random init, float32 weights + bf16 autocast), with the same rows per step, AdamW, no gradient
checkpointing, in one process on one GPU, one after the other. Reported: real (non-pad) tokens per
second through the model, and trained (supervised) tokens per second, over the timed steps after
warm-up (compile included in warm-up).

    python benchmarks/bench_train.py                      # GPU: the full table (needs a CUDA GPU, trl)
    python benchmarks/bench_train.py --quick              # CPU smoke: tiny model, 120 chats, same table
    python benchmarks/bench_train.py --export-data d.npz  # prepare the 20k set once, write it compactly
    python benchmarks/bench_train.py --data d.npz         # ... and train from that file (no prepare here)

Methods:
  llmprep padded           llmprep train on unpacked rows, sdpa, dynamic padding (PaddingCollator)
  llmprep flattened        unpacked rows, one flattened row per batch, varlen attention, compiled layers
  llmprep packed           bfd-packed rows, varlen attention per example, fused loss, compiled layers
  TRL padded               SFTTrainer, padding to the batch's longest row
  TRL bfd + padding_free   SFTTrainer packing="bfd" (padding_free), transformers' own attention
  HF + Flattening          Trainer + DataCollatorWithFlattening (position_ids, no padding)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

START = time.perf_counter()
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# The headline first: a run that hits its overall deadline loses the least informative rows.
METHODS = ("llmprep-packed", "trl-packed", "trl-padded", "hf-flattening", "llmprep-flat", "llmprep-padded",
           "llmprep-packed-eager")
# Tried only when llmprep-packed fails (a kernel or compiler missing on that machine): still a number.
FALLBACKS = {"llmprep-packed": ("llmprep-packed-eager", "llmprep-packed-flex")}
TITLES = {"llmprep-padded": "llmprep padded (sdpa, dynamic padding)",
          "llmprep-flat": "llmprep flattened, unpacked rows (varlen{c})",
          "llmprep-packed": "llmprep packed bfd (varlen, fused loss{c})",
          "llmprep-packed-eager": "llmprep packed bfd (varlen, fused loss, not compiled)",
          "llmprep-packed-flex": "llmprep packed bfd (flex attention, fused loss{c})",
          "trl-padded": "TRL SFTTrainer padded",
          "trl-packed": "TRL SFTTrainer bfd + padding_free",
          "hf-flattening": "HF Trainer + DataCollatorWithFlattening"}
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=1,
                    eos_token_id=2, pad_token_id=2)
TINY = dict(SMOLLM2_135M, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


@dataclass
class Setup:
    quick: bool
    n: int
    max_length: int
    rows: int  # rows per step (per device): padded rows hold one chat, packed rows several
    warmup: int
    steps: int
    budget: float  # seconds per method, warm-up included
    compile: bool
    bf16: bool
    device: str
    model: dict = field(default_factory=dict)


@dataclass
class Result:
    method: str
    status: str = "ok"
    steps: int = 0
    seconds: float = 0.0
    real_tokens: int = 0
    trained_tokens: int = 0
    peak_gib: float = 0.0
    error: str = ""

    @property
    def real_tps(self) -> float:
        return self.real_tokens / self.seconds if self.seconds else 0.0

    @property
    def trained_tps(self) -> float:
        return self.trained_tokens / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------- data


def prepare_arrays(n: int, max_length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The benchmark chats through llmprep prepare -> flat ids, labels, row offsets."""
    from data import build_conversations, write_jsonl

    from llmprep.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        src = write_jsonl(Path(tmp) / "chats.jsonl", build_conversations(n, seed=seed))
        ds = prepare([str(src)], max_length=max_length, progress=False, cache=False)["train"]
    table = ds.data.table
    ids = table.column("input_ids").combine_chunks()
    labels = table.column("labels").combine_chunks()
    return {"ids": ids.values.to_numpy().astype(np.int64), "labels": labels.values.to_numpy().astype(np.int64),
            "offsets": ids.offsets.to_numpy().astype(np.int64), "max_length": np.array(max_length)}


def export_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Compact: ids as uint16 (vocab 49,152), the trained mask as bits (labels are ids or -100)."""
    trained = arrays["labels"] != -100
    assert np.array_equal(arrays["labels"][trained], arrays["ids"][trained])
    np.savez_compressed(path, ids=arrays["ids"].astype(np.uint16), trained=np.packbits(trained),
                        offsets=arrays["offsets"], max_length=arrays["max_length"], n_tokens=np.array(len(trained)))


def import_arrays(path: Path) -> dict[str, np.ndarray]:
    z = np.load(path, allow_pickle=False)
    ids = z["ids"].astype(np.int64)
    trained = np.unpackbits(z["trained"])[: int(z["n_tokens"])].astype(bool)
    return {"ids": ids, "labels": np.where(trained, ids, -100), "offsets": z["offsets"], "max_length": z["max_length"]}


def subset(arrays: dict[str, np.ndarray], n: int, max_length: int) -> dict[str, np.ndarray]:
    """The first n chats, each cut to max_length tokens (--quick on an exported file)."""
    offsets = arrays["offsets"][: n + 1]
    lengths = np.minimum(np.diff(offsets), max_length)
    take = np.concatenate([np.arange(a, a + k) for a, k in zip(offsets[:-1], lengths)])
    new_off = np.concatenate([[0], np.cumsum(lengths)])
    return {"ids": arrays["ids"][take], "labels": arrays["labels"][take], "offsets": new_off,
            "max_length": np.array(max_length)}


def datasets_from(arrays: dict[str, np.ndarray]):
    """(plain, packed) DatasetDicts: one chat per row; bfd rows of max_length with position_ids."""
    import pyarrow as pa
    from datasets import Dataset, DatasetDict

    from llmprep.output import list_column
    from llmprep.pack import pack_bfd_arrays

    ids, labels, offsets = arrays["ids"], arrays["labels"], arrays["offsets"]
    plain = pa.table({"input_ids": list_column(ids, offsets), "labels": list_column(labels, offsets)})
    columns, _ = pack_bfd_arrays(ids, labels, offsets, int(arrays["max_length"]))
    packed = pa.table({k: list_column(v, off) for k, (v, off) in columns.items() if k != "attention_mask"})
    return DatasetDict({"train": Dataset(plain)}), DatasetDict({"train": Dataset(packed)})


# ---------------------------------------------------------------- measuring


class Meter:
    """Counts tokens entering the model (a forward pre-hook, on device: no sync per step) and times the
    steps after warm-up (synchronising only at the two ends)."""

    def __init__(self, setup: Setup, budget: float | None = None):
        import torch

        self.torch, self.setup = torch, setup
        self.budget = budget or setup.budget
        self.real = self.trained = None
        self.start = time.perf_counter()
        self.t0 = self.snap = None
        self.result: tuple[int, float, int, int] | None = None

    def hook(self, module, args, kwargs):
        torch = self.torch
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        real = mask.sum() if torch.is_tensor(mask) and mask.dim() == 2 else torch.tensor(ids.numel(), device=ids.device)
        labels = kwargs.get("labels")
        trained = (labels[..., 1:] != -100).sum() if torch.is_tensor(labels) else torch.zeros((), device=ids.device)
        if self.real is None:
            self.real, self.trained = torch.zeros((), dtype=torch.long, device=ids.device), torch.zeros(
                (), dtype=torch.long, device=ids.device)
        self.real += real.to(self.real.device)
        self.trained += trained.to(self.trained.device)

    def sync(self):
        if self.setup.device == "cuda":
            self.torch.cuda.synchronize()

    def callback(self):
        from transformers import TrainerCallback

        meter = self

        class _Timer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if state.global_step == meter.setup.warmup and meter.t0 is None:
                    meter.sync()
                    meter.t0 = time.perf_counter()
                    meter.snap = (int(meter.real or 0), int(meter.trained or 0), state.global_step)

            def on_step_end(self, args, state, control, **kw):
                over = time.perf_counter() - meter.start > meter.budget
                if meter.t0 is not None and (state.global_step >= meter.setup.warmup + meter.setup.steps or over):
                    meter.sync()
                    meter.result = (state.global_step - meter.snap[2], time.perf_counter() - meter.t0,
                                    int(meter.real) - meter.snap[0], int(meter.trained) - meter.snap[1])
                    control.should_training_stop = True
                elif over:
                    control.should_training_stop = True
                return control

        return _Timer()


def new_model(setup: Setup):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**setup.model))


def run_method(method: str, setup: Setup, plain, packed, tokenizer, workdir: Path) -> Result:
    import torch

    res = Result(method)
    compiled = setup.compile and method in ("llmprep-packed", "llmprep-flat", "llmprep-packed-flex")
    meter = Meter(setup, setup.budget * (2.5 if compiled else 1.0))  # compiling happens in the warm-up
    model = new_model(setup)
    model.register_forward_pre_hook(meter.hook, with_kwargs=True)
    if setup.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    max_steps = setup.warmup + setup.steps
    from llmprep import attention

    paths = dict(attention.PATHS)
    try:
        if method.startswith("llmprep"):
            _run_llmprep(method, setup, model, plain, packed, meter, workdir / method, max_steps)
            reference = attention.PATHS["reference"] - paths["reference"]
            if setup.device == "cuda" and reference:
                raise RuntimeError(f"varlen attention ran its reference loop {reference} times on the GPU")
        elif method.startswith("trl"):
            _run_trl(method, setup, model, plain, tokenizer, meter, workdir / method, max_steps)
        else:
            _run_hf(setup, model, plain, meter, workdir / method, max_steps)
        if meter.result is None:
            res.status = "no timed steps (warm-up did not finish in the time budget)"
        else:
            res.steps, res.seconds, res.real_tokens, res.trained_tokens = meter.result
            if res.steps < setup.steps:
                res.status = f"ok ({res.steps} of {setup.steps} timed steps: time budget)"
    except Exception as exc:  # one method failing must not lose the others' numbers
        res.status, res.error = "error", f"{type(exc).__name__}: {str(exc)[:300]}"
        traceback.print_exc()
    if setup.device == "cuda":
        res.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    del model
    gc.collect()
    if setup.device == "cuda":
        torch.cuda.empty_cache()
    return res


def _common(setup: Setup, out: Path, max_steps: int) -> dict:
    return dict(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=setup.rows,
                learning_rate=2e-5, lr_scheduler_type="constant", warmup_steps=0, bf16=setup.bf16,
                logging_steps=10**6, save_strategy="no", report_to=[], dataloader_num_workers=0,
                use_cpu=setup.device == "cpu", seed=0, disable_tqdm=True)


def _run_llmprep(method, setup, model, plain, packed, meter, out, max_steps):
    from llmprep.train import TrainConfig, train

    data = packed if method.startswith("llmprep-packed") else plain
    attention = {"llmprep-padded": "sdpa", "llmprep-packed-flex": "flex"}.get(method, "varlen")
    compiled = setup.compile and method not in ("llmprep-padded", "llmprep-packed-eager")
    cfg = TrainConfig(max_steps=max_steps, batch_size=setup.rows, lr=2e-5, lr_scheduler="constant", warmup=0,
                      bf16=setup.bf16, attention=attention, compile=compiled,
                      save_steps=10**6, logging_steps=10**6, plot=False, progress=False, cpu=setup.device == "cpu",
                      tokenizer="smollm2")
    train(data, out, model=model, config=cfg, callbacks=[meter.callback()])


def _run_trl(method, setup, model, plain, tokenizer, meter, out, max_steps):
    from trl import SFTConfig, SFTTrainer

    packing = method == "trl-packed"
    args = SFTConfig(**_common(setup, out, max_steps), max_length=setup.max_length, packing=packing,
                     packing_strategy="bfd", padding_free=packing, gradient_checkpointing=False,
                     dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=plain["train"], processing_class=tokenizer,
                         callbacks=[meter.callback()])
    trainer.train()


def _run_hf(setup, model, plain, meter, out, max_steps):
    from transformers import DataCollatorWithFlattening, Trainer, TrainingArguments

    args = TrainingArguments(**_common(setup, out, max_steps))
    trainer = Trainer(model=model, args=args, train_dataset=plain["train"],
                      data_collator=DataCollatorWithFlattening(), callbacks=[meter.callback()])
    trainer.train()


# ---------------------------------------------------------------- correctness check


def loss_check(setup: Setup, plain, packed, n_rows: int = 8) -> dict:
    """The same chats, unpacked (padded, sdpa, HF loss) vs packed (varlen, fused loss): per-token loss."""
    import torch

    from llmprep.attention import register_varlen
    from llmprep.collate import PaddingCollator
    from llmprep.collate_packed import PackedCollator
    from llmprep.train.loss import install_fused_loss, trained_targets

    rows = [packed["train"][i] for i in range(min(n_rows, len(packed["train"])))]
    n_chats = sum(len(r["seq_lengths"]) for r in rows)
    # the same chats one per row: cut the packed rows at their segment boundaries
    singles = []
    for r in rows:
        start = 0
        for n in r["seq_lengths"]:
            labels = list(r["labels"][start:start + n])
            singles.append({"input_ids": r["input_ids"][start:start + n], "labels": labels})
            start += n
    from llmprep import attention

    paths = dict(attention.PATHS)
    model = new_model(setup).to(setup.device).eval()
    dtype = torch.bfloat16 if setup.bf16 else torch.float32
    out = {}
    with torch.no_grad(), torch.autocast(setup.device, dtype=dtype, enabled=setup.bf16):
        batch = PaddingCollator(pad_token_id=2)(singles)
        batch = {k: v.to(setup.device) for k, v in batch.items()}
        ref = model(**batch, num_items_in_batch=trained_targets(batch["labels"])).loss.float().item()
        install_fused_loss(model)
        model.set_attn_implementation(register_varlen())
        pb = PackedCollator(pad_token_id=2, mode="padding_free")(rows)
        pb = {k: (v.to(setup.device) if torch.is_tensor(v) else v) for k, v in pb.items()}
        got = model(**pb, num_items_in_batch=trained_targets(pb["labels"])).loss.float().item()
    out.update(chats=n_chats, unpacked_loss=ref, packed_loss=got, rel_diff=abs(got - ref) / abs(ref),
               dtype="bf16 autocast" if setup.bf16 else "float32",
               attention_calls={k: attention.PATHS[k] - paths[k] for k in paths})
    del model
    return out


# ---------------------------------------------------------------- report


def title(method: str, compiled: bool) -> str:
    return TITLES[method].format(c=", compiled layers" if compiled else "")


def table(results: list[Result], compiled: bool = False) -> str:
    lines = ["| method | status | timed steps | s | real tokens/s | trained tokens/s | peak GiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        status = r.status if r.status != "error" else "error: " + r.error[:80]
        lines.append(f"| {title(r.method, compiled)} | {status} | "
                     f"{r.steps} | {r.seconds:.2f} | {r.real_tps:,.0f} | {r.trained_tps:,.0f} | {r.peak_gib:.1f} |")
    return "\n".join(lines)


def ratios(results: list[Result]) -> dict[str, float]:
    by = {r.method: r.real_tps for r in results if r.real_tps}
    trl = max((by.get(m, 0) for m in ("trl-padded", "trl-packed")), default=0)
    ours = max((v for m, v in by.items() if m.startswith("llmprep-packed")), default=0)
    out = {}
    if ours and trl:
        out["llmprep packed / TRL best"] = ours / trl
    if ours and by.get("hf-flattening"):
        out["llmprep packed / HF + Flattening"] = ours / by["hf-flattening"]
    return out


def environment(setup: Setup) -> dict:
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "device": setup.device}
    try:
        import trl

        env["trl"] = trl.__version__
    except ImportError:
        env["trl"] = None
    if setup.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def benchmark(setup: Setup, arrays: dict, methods=METHODS, workdir: Path | None = None, log=print,
              deadline: float | None = None) -> dict:
    """All methods one after the other; `deadline` (time.perf_counter() value) skips what would not fit."""
    from llmprep.tokenizer import load_tokenizer

    plain, packed = datasets_from(arrays)
    tokenizer = load_tokenizer("smollm2")
    tokens = int(np.diff(arrays["offsets"]).sum())
    log(f"data: {len(plain['train']):,} chats, {tokens:,} tokens; {len(packed['train']):,} packed rows of "
        f"{int(arrays['max_length'])}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        try:
            check = loss_check(setup, plain, packed)
        except Exception as exc:
            check = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        log(f"loss check: {check}")
        queue = list(methods)
        while queue:
            m = queue.pop(0)
            if any(r.method == m for r in results):  # already run as a fallback
                continue
            if deadline is not None and time.perf_counter() + 20 > deadline:
                results.append(Result(m, status="skipped: overall time limit"))
                continue
            t = time.perf_counter()
            results.append(run_method(m, setup, plain, packed, tokenizer, work))
            log(f"{m}: {results[-1].status} {results[-1].real_tps:,.0f} real tok/s ({time.perf_counter() - t:.0f} s)",
                flush=True)
            if results[-1].status == "error":
                queue[:0] = FALLBACKS.get(m, ())
    return {"setup": asdict(setup), "environment": environment(setup), "chats": len(plain["train"]),
            "tokens": tokens, "packed_rows": len(packed["train"]), "loss_check": check,
            "results": [dict(asdict(r), real_tps=r.real_tps, trained_tps=r.trained_tps) for r in results],
            "ratios": ratios(results), "table": table(results, setup.compile)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU smoke run: tiny model, 120 chats, max length 256")
    p.add_argument("--n", type=int, default=None, help="chats (default 20,000; --quick 120)")
    p.add_argument("--data", type=Path, default=None, help="an --export-data file instead of preparing here")
    p.add_argument("--export-data", type=Path, default=None, help="prepare, write the arrays here, and stop")
    p.add_argument("--rows", type=int, default=None, help="rows per step (default 16; --quick 4)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per method, warm-up included (default 60; x2.5 for compiled ones)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--deadline", type=float, default=None, help="seconds for the whole run: later methods are skipped")
    p.add_argument("--out-dir", type=Path, default=None, help="write bench_train.json and bench_train.md here")
    a = p.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available() and not a.quick
    setup = Setup(quick=a.quick, n=a.n or (120 if a.quick else 20000), max_length=256 if a.quick else 2048,
                  rows=a.rows or (4 if a.quick else 16),
                  warmup=a.warmup if a.warmup is not None else (1 if a.quick else 3),
                  steps=a.steps or (2 if a.quick else 10), budget=a.budget or 60.0,
                  compile=cuda and not a.no_compile, bf16=cuda, device="cuda" if cuda else "cpu",
                  model=TINY if a.quick else SMOLLM2_135M)
    if a.export_data:
        export_arrays(prepare_arrays(setup.n, setup.max_length), a.export_data)
        print(f"wrote {a.export_data} ({a.export_data.stat().st_size / 2**20:.1f} MiB)")
        return 0
    if not a.quick and not cuda:
        print("bench_train: no CUDA GPU here; the full benchmark needs one (use --quick for the CPU smoke run)")
        return 2
    arrays = import_arrays(a.data) if a.data else prepare_arrays(setup.n, setup.max_length)
    if a.data and (a.quick or a.n):
        arrays = subset(arrays, setup.n, setup.max_length)
    deadline = START + a.deadline if a.deadline else None
    result = benchmark(setup, arrays, methods=[m for m in a.methods.split(",") if m], deadline=deadline)
    print()
    print(json.dumps(result["environment"]))
    print(f"loss check (packed vs unpacked, same chats): {result['loss_check']}")
    print(result["table"])
    for k, v in result["ratios"].items():
        print(f"{k}: {v:.2f}x")
    if a.out_dir:
        a.out_dir.mkdir(parents=True, exist_ok=True)
        (a.out_dir / "bench_train.json").write_text(json.dumps(result, indent=2, default=str))
        (a.out_dir / "bench_train.md").write_text(result["table"] + "\n")
    return 0 if any(r["method"].startswith("llmprep-packed") and r["status"].startswith("ok")
                    for r in result["results"]) else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

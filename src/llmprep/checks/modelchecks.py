"""Checks that need the model: will it stop, does it know the tokens, does it fit the rows."""

from __future__ import annotations

import numpy as np

from llmprep.checks.finding import Finding
from llmprep.checks.probe import control_candidates, eot_id, token_ids
from llmprep.checks.registry import Skip, check

# An embedding row looks untrained when it is all zeros, shared bit for bit with other rows (a
# constant init never moved by training), or its norm is far from the typical row's.
NORM_LOW, NORM_HIGH = 0.25, 4.0  # x the median row norm


@check("generation-eos", "the model's generation_config.eos_token_id does not include the template's "
       "end-of-turn token: it won't stop at inference", needs_model=True)
def generation_eos(subject) -> list[Finding]:
    model = subject.require_model()
    eot = eot_id(subject)
    if eot in model.generation_eos:
        return []
    tok = subject.tokenizer
    have = ", ".join(f"{i} {tok.convert_ids_to_tokens(i)!r}" for i in model.generation_eos) or "none"
    return [Finding(
        "generation-eos", "error",
        f"the template ends replies with {subject.probe.eot!r} (id {eot}) but the model's generation_config "
        f"stops on [{have}]: generate() won't stop after a reply",
        f"{model.name}: generation_config.json eos_token_id",
        f"add {eot} to eos_token_id in generation_config.json (a list may hold several ids), "
        "or pass eos_token_id at generation")]


def used_ids(subject) -> tuple[np.ndarray, set[int]]:
    """Token ids the data uses (else the template's control tokens), and the trained ones among them."""
    data = subject.data
    if data is not None and not data.rows_error and data.splits:
        ids, trained = np.zeros(0, np.int64), np.zeros(0, np.int64)
        for split in data.splits:
            for _, rows in data.chunks(split):
                ids = np.union1d(ids, rows.ids[rows.real])
                if rows.labels is not None:
                    trained = np.union1d(trained, rows.ids[rows.trained])
        return ids, set(trained.tolist())
    probe = subject.probe.require()
    ids = sorted({i for c in control_candidates(probe, subject.tokenizer)
                  for i in token_ids(subject.tokenizer, c)})
    return np.asarray(ids, dtype=np.int64), set()


def untrained_rows(emb: np.ndarray, ids: np.ndarray) -> dict[int, str]:
    """Rows among `ids` that look untrained, with why.

    Example: a row of zeros -> "zero"; 7 new rows all set to the mean -> "identical to 6 other rows";
    a row of norm 0.1 when rows are typically 3.2 -> "norm 0.10 vs typical 3.15"
    """
    ids = ids[ids < len(emb)]
    norms = np.linalg.norm(emb, axis=1)
    typical = float(np.median(norms))
    # Group rows by a random projection (cheap), then confirm identity bit for bit within a group.
    keys = emb @ np.random.default_rng(0).normal(size=emb.shape[1]).astype(emb.dtype)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    out = {}
    for i in ids.tolist():
        if not norms[i]:
            out[i] = "zero"
            continue
        if counts[inverse[i]] > 1:
            same = [j for j in np.flatnonzero(inverse == inverse[i]) if j != i and np.array_equal(emb[j], emb[i])]
            if same:
                out[i] = f"identical to {len(same)} other row(s)"
                continue
        if not NORM_LOW * typical <= norms[i] <= NORM_HIGH * typical:
            out[i] = f"norm {norms[i]:.2f} vs typical {typical:.2f}"
    return out


@check("untrained-embeddings", "tokens the data uses have embedding rows that look untrained (zero, "
       "identical, or far from the trained rows' norm)", needs_model=True)
def untrained_embeddings(subject) -> list[Finding]:
    model = subject.require_model()
    emb = model.embedding
    if emb is None:
        raise Skip(f"could not read the input embedding of {model.name} (safetensors or GGUF)")
    ids, trained = used_ids(subject)
    bad = untrained_rows(emb, ids)
    if not bad:
        return []
    tok = subject.tokenizer
    try:
        stop = eot_id(subject)
    except Skip:
        stop = None
    serious = [i for i in bad if i in trained or i == stop]
    shown = [f"{i} {tok.convert_ids_to_tokens(i)!r}: {why}" for i, why in bad.items()]
    return [Finding(
        "untrained-embeddings", "error" if serious else "warning",
        f"{len(bad)} token(s) the data uses have embedding rows that look untrained, e.g. {'; '.join(shown[:3])}"
        + (f"; {len(serious)} of them are trained targets (the model must learn to produce them from nothing)"
           if serious else ""),
        f"{model.name}: input embeddings ({emb.shape[0]:,} x {emb.shape[1]})",
        "initialise new rows from related tokens (llmprep model resize --init subword-mean) and train the "
        "embeddings (full fine-tune, or LoRA with modules_to_save=['embed_tokens', 'lm_head'])",
        tuple(shown[:20]))]


@check("vocab-mismatch", "token ids >= the model's embedding rows, or tokenizer and model vocab sizes disagree",
       needs_model=True)
def vocab_mismatch(subject) -> list[Finding]:
    model = subject.require_model()
    rows = model.rows
    if rows is None:
        raise Skip(f"{model.name} states no vocabulary size")
    n_tok = len(subject.tokenizer)
    out = []
    data = subject.data
    if data is not None and not data.rows_error:
        top = max((int(rows.ids.max()) for s in data.splits for _, rows in data.chunks(s) if len(rows.ids)),
                  default=-1)
        if top >= rows:
            out.append(Finding("vocab-mismatch", "error",
                               f"the data holds token id {top} but the model has {rows:,} embedding rows: "
                               "training fails with an index error (or reads garbage on some kernels)",
                               f"{model.name}: embedding rows", "resize the model to the tokenizer "
                               "(llmprep model resize) or prepare the data with the model's own tokenizer"))
    if n_tok > rows:
        out.append(Finding("vocab-mismatch", "error",
                           f"the tokenizer has {n_tok:,} tokens but the model only {rows:,} embedding rows",
                           f"{model.name}: embedding rows vs tokenizer",
                           "resize the model to the tokenizer: llmprep model resize --model M --tokenizer T "
                           "--out DIR"))
    elif n_tok < rows:
        out.append(Finding("vocab-mismatch", "info",
                           f"the model has {rows - n_tok:,} more embedding rows ({rows:,}) than the tokenizer has "
                           f"tokens ({n_tok:,}): usually padding to a multiple, harmless",
                           f"{model.name}: embedding rows vs tokenizer", "nothing to do if that is padding"))
    return out


@check("max-length", "prepared rows longer than the model's max_position_embeddings", needs_model=True)
def max_length(subject) -> list[Finding]:
    model = subject.require_model()
    limit = model.max_positions
    if limit is None:
        raise Skip(f"{model.name} states no maximum position (max_position_embeddings)")
    data = subject.require_data()
    over, longest = {}, 0
    for split in data.require_rows():
        for _, rows in data.chunks(split):  # row length: what attention spans (packed rows included)
            longest = max(longest, int(rows.lengths.max()) if len(rows) else 0)
            if (rows.lengths > limit).any():
                over[split] = over.get(split, 0) + int((rows.lengths > limit).sum())
    if not over:
        return []
    return [Finding(
        "max-length", "error",
        f"{sum(over.values()):,} rows are longer than the model's {limit:,} positions (longest {longest:,}): "
        "positions beyond what the model was trained on",
        "; ".join(f"split {s}: {n:,} rows" for s, n in over.items()) + f" ({model.name}: max_position_embeddings)",
        f"prepare again with --max-length {limit} (or --block-size {limit} for --pack wrap)")]

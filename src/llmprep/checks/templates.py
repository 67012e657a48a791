"""Checks of the tokenizer + chat template pair (and how the data's rows carry their tokens)."""

from __future__ import annotations

from llmprep.checks.finding import Finding
from llmprep.checks.probe import LONG, SHORT, control_candidates, eot_id, token_ids
from llmprep.checks.registry import Skip, check
from llmprep.errors import RecordError


@check("double-bos", "the template writes BOS and the tokenizer adds another on encode")
def double_bos(subject) -> list[Finding]:
    tok = subject.tokenizer
    bos, bos_id = tok.bos_token, tok.bos_token_id
    if bos is None or bos_id is None:
        raise Skip("the tokenizer has no BOS token")
    probe = subject.probe.require()
    out = []
    ids = list(tok(probe.text)["input_ids"])  # what a trainer or inference server gets from tokenizer(text)
    if probe.text.startswith(bos) and ids[:2] == [bos_id, bos_id]:
        out.append(Finding(
            "double-bos", "warning",
            f"the template starts with {bos!r} and the tokenizer adds another on encode: tokenizer(rendered) "
            f"starts with {bos!r} twice (llmprep encodes rendered text without adding one, other tools don't)",
            f"template {subject.template_name!r} + tokenizer (add_bos_token)",
            "remove {{ bos_token }} from the template, or encode rendered text with add_special_tokens=False "
            "everywhere (training and inference)", (repr(tok.convert_ids_to_tokens(ids[:6])),)))
    if subject.data is not None and not subject.data.rows_error:
        doubled = _rows_starting_twice(subject.data, bos_id)
        if doubled:
            out.append(Finding("double-bos", "error", f"{sum(doubled.values()):,} prepared rows start with "
                               f"{bos!r} twice", ", ".join(f"split {s}: {n:,} rows" for s, n in doubled.items()),
                               "prepare the data again with llmprep (it never adds a second BOS)"))
    return out


def _rows_starting_twice(data, bos_id: int) -> dict[str, int]:
    """Rows whose first two real tokens are both BOS, per split."""
    out = {}
    for split in data.require_rows():
        n = 0
        for _, rows in data.chunks(split):
            first = rows.offsets[:-1] + (rows.lengths - rows.real_lengths)  # left padding comes first
            ok = rows.real_lengths >= 2
            n += int(((rows.ids[first[ok]] == bos_id) & (rows.ids[first[ok] + 1] == bos_id)).sum())
        if n:
            out[split] = n
    return out


@check("no-stop-token", "the template writes no end-of-turn token after the last reply")
def no_stop_token(subject) -> list[Finding]:
    probe = subject.probe.require()
    if probe.eot is not None:
        return []
    stop = ((subject.data.report.get("chat") or {}).get("no_stop_token") or {}) if subject.data is not None else {}
    if subject.data is not None and subject.data.options.get("add_eos") and stop.get("count") == 0:
        # prepare --add-eos (issue 8) closed every such reply with a trained eos: the rows are fine
        return [Finding("no-stop-token", "info",
                        f"the template writes no end-of-turn token after the last assistant reply; --add-eos "
                        f"appended the eos (trained) after {stop.get('eos_added', 0):,} replies",
                        f"template {subject.template_name!r}: {probe.text[-80:]!r}",
                        "keep --add-eos, and end the prompt of generation the same way (the model stops on eos)")]
    return [Finding("no-stop-token", "error",
                    "the template writes no end-of-turn token after the last assistant reply: the model is "
                    "never trained to stop and will run on at inference",
                    f"template {subject.template_name!r}: {probe.text[-80:]!r}",
                    "use a template that closes every reply with the tokenizer's EOS / end-of-turn token "
                    f"(e.g. {subject.tokenizer.eos_token!r}), such as the model's own chat template")]


@check("pad-is-eos", "pad == eos: a collator that derives labels from the pad id masks the stop token")
def pad_is_eos(subject) -> list[Finding]:
    tok = subject.tokenizer
    if tok.pad_token_id is None:
        raise Skip("the tokenizer has no pad token")
    try:
        eot = eot_id(subject)
    except Skip:
        eot = None
    if tok.pad_token_id not in (tok.eos_token_id, eot):
        return []
    data = subject.data
    # On disk the danger is concrete only where padding carries the very id of a reply's trained stop token.
    padded = data is not None and not data.rows_error and tok.pad_token_id == eot and data.padded
    severity = "warning" if padded else "info"
    where = "prepared rows padded on disk" if padded else f"tokenizer: pad_token {tok.pad_token!r}"
    return [Finding(
        "pad-is-eos", severity,
        f"the pad token is the stop token {tok.pad_token!r} (id {tok.pad_token_id})"
        + (": on disk, padding and a reply's trained stop token carry the same id, so any collator or loss "
           "that masks labels == pad_token_id unlearns stopping" if padded else
           ": a collator that derives labels from the pad id (labels[input_ids == pad_token_id] = -100) "
           "masks every stop token"),
        where,
        "use llmprep.collate.PaddingCollator (it pads labels with -100 and never derives them from the pad id)"
        + ("; or prepare without --padding and pad at collate time" if padded else ""))]


@check("template-prefix", "the template renders a turn differently when more turns follow: render(messages[:k+1]) "
       "(or turn k's inference prompt) is not a prefix of render(messages)")
def template_prefix(subject) -> list[Finding]:
    subject.probe.require()
    renderer = subject.renderer
    if subject.data is not None:
        scan = subject.scan
        if scan.error:
            raise Skip(scan.error)
        cases = scan.chats["single"] + scan.chats["multi"]
        if not cases:
            raise Skip("the data has no chats")
    else:
        cases = [("probe conversation (system + 2 turns)", LONG), ("probe conversation (2 turns)", LONG[1:]),
                 ("probe conversation (1 turn)", SHORT)]
    broken = []
    for where, messages in cases:
        diff = first_prefix_break(renderer, messages)
        if diff is not None:
            broken.append((where, diff))
    if not broken:
        return []
    where, (k, kind, pos, part, whole) = broken[0]
    said = {"prompt": f"the inference prompt of turn {k}, render(messages[:{k}], add_generation_prompt=True),",
            "reply": f"render(messages[:{k + 1}]) (turn {k} last, as the model produces it at inference)"}
    return [Finding(
        "template-prefix", "warning",
        f"{len(broken)} of {len(cases)} conversations are rendered differently for training than at inference: "
        f"{said[kind]} is not a prefix of render(messages), the text trained on; first difference at character "
        f"{pos}: {part!r} (inference) vs {whole!r} (training). Training on whole conversations teaches turns "
        "in a form the model never sees or produces at inference (reasoning stripped from history, system "
        "prompt moved or dropped)",
        where,
        "train each turn as its own example, rendered as at inference (history + generation prompt, "
        "--train-turns last), or use a template that renders history the same way",
        tuple(f"{w}: turn {d[0]} {d[1]} differs at character {d[2]}: {d[3]!r} vs {d[4]!r}" for w, d in broken[:10]))]


def first_prefix_break(renderer, messages) -> tuple[int, str, int, str, str] | None:
    """The first assistant turn k that training text renders differently from inference.

    At inference turn k is produced after render(messages[:k], add_generation_prompt=True) and ends as
    render(messages[:k+1]); both must be prefixes of render(messages), the text trained on.
    Returns (k, "prompt" or "reply", first differing character, 30 characters of each there) or None.
    Example (Qwen3): turn 1 last renders "<think>\n\n</think>\n\nParis." but in history "Paris."
    -> (1, "reply", 123, "<think>...", "Paris.<|im_end|>...")
    """
    try:
        whole = renderer.render(messages)
        for k, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            parts = [("prompt", renderer.render(messages[:k], add_generation_prompt=True))]
            if k < len(messages) - 1:
                parts.append(("reply", renderer.render(messages[:k + 1])))
            for kind, part in parts:
                if not whole.startswith(part):
                    pos = next((i for i, (a, b) in enumerate(zip(part, whole)) if a != b), min(len(part), len(whole)))
                    return k, kind, pos, part[pos:pos + 30], whole[pos:pos + 30]
    except RecordError:
        return None  # a conversation the template refuses is prepare's reject, not this check's finding
    return None


@check("control-token-split", "a control token the template writes is not one token in the vocabulary")
def control_token_split(subject) -> list[Finding]:
    probe = subject.probe.require()
    split = {c: token_ids(subject.tokenizer, c) for c in control_candidates(probe, subject.tokenizer)}
    split = {c: ids for c, ids in split.items() if len(ids) != 1}
    if not split:
        return []
    tok = subject.tokenizer
    shown = "; ".join(f"{c!r} -> {len(ids)} tokens {tok.convert_ids_to_tokens(ids)}" for c, ids in split.items())
    return [Finding("control-token-split", "error",
                    f"{len(split)} control token(s) the template writes are not tokens of this vocabulary and are "
                    f"encoded as plain text pieces: {shown}",
                    f"template {subject.template_name!r} + tokenizer ({len(tok):,} tokens)",
                    "use the model's own template, or add these tokens to the tokenizer "
                    "(tokenizer.add_special_tokens) and resize the model (llmprep model resize)")]


@check("no-chat-template", "chat data with a tokenizer that has no template and no --template")
def no_chat_template(subject) -> list[Finding]:
    data = subject.require_data()
    if subject.template is not None:
        return []
    if not _has_chat(data):
        raise Skip("the data has no chat examples")
    from llmprep.render import builtin_templates

    return [Finding("no-chat-template", "error",
                    "the data holds chats but the tokenizer has no chat template and no --template was given",
                    "--template", "pass --template with a built-in name "
                    f"({', '.join(builtin_templates())}) or a .jinja file, ideally the model's own template")]


def _has_chat(data) -> bool:
    if data.kinds:
        return bool(data.kinds.get("chat"))
    return bool(data.first_items(1, kind="chat"))


__all__ = ["SHORT", "first_prefix_break"]

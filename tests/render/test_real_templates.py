"""Conformance on real chat templates (tests/assets/templates, see its README): for every template and
every kind of conversation (tests/conversations_support.py), llmprep's ids equal
`tokenizer.apply_chat_template(messages, tools=tools)` and its labels follow the label rule.

Only llmprep's public API is used (`llmprep.prepare.prepare` on JSONL files, reading DIR/rejected.jsonl
and the saved dataset), so these tests judge whatever implementation is behind it. The oracles are
independent of llmprep's code:

- ids: apply_chat_template(tokenize=True); a conversation it refuses must be rejected with its message, and
  one whose rendering silently loses a tool call or content parts must be rejected saying so (`lost`).
- (a) last turn: the trained text of the last assistant turn is what the model generates at inference,
  render(messages)[len(render(messages[:k], add_generation_prompt=True)):] (where that prompt is a
  prefix), cut after the run of end-of-turn control tokens the template writes right after the turn.
- (b) every turn: no character of system/user/tool content is trained, role headers are not trained,
  each assistant content/reasoning/tool-call name as rendered is trained, and so is everything from there
  through the run of end-of-turn tokens after the turn (not the separators after that run).
- (c) history="per-turn": one row per assistant turn, each a last-turn row: ids of apply_chat_template on
  the conversation up to that turn, only that turn trained, as in (a).
- (d) hand-written goldens of the trained segments (ChatML/Qwen2.5 tool calls, Command R7B).

Cases that fail on today's code are listed in KNOWN_FAILING (strict xfail): delete an entry when it passes.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conversations_support import SHAREGPT_AS_MESSAGES, conversation_records, sharegpt_records
from helpers import write_jsonl
from templates_support import FAMILIES, TEMPLATES, template_path, template_tokenizer

IGNORE = -100
RECORDS = {r["id"]: r for r in conversation_records() + sharegpt_records()}
ALL = tuple(TEMPLATES)
MAX_LENGTH = 1 << 16  # never truncate: the Command R7B preamble alone is ~1k tokens
# The reference engine: `fastokens` (engine "auto") is checked against it by llmprep itself, and loading it
# costs ~1 s per tokenizer, 20 tokenizers here.
ENGINE = "tokenizers"

# ---------------------------------------------------------------------------------------------------
# What fails on today's code, and why: the issue-8 to-do list. Each rule is (check, templates,
# conversations, reason); a test matching a rule is a strict xfail, so it must fail: delete a template or
# conversation from a rule as soon as it passes. Checks: "ids", "labels" (oracles a+b), "per-turn" (oracle
# c), "golden" (d), "add-eos". A row that is wrongly rejected or has wrong ids also fails its "labels" and
# "golden" checks, so those consult the "ids" rules too.
# ---------------------------------------------------------------------------------------------------
TOOLS = ("tool_call_str_empty", "tool_call_obj_null", "tool_parallel", "tool_two_steps", "tool_zh", "tool_openai_ids",
         "tool_with_reasoning")
REASONING = ("reasoning_one", "reasoning_multi", "reasoning_zh", "thinking_field")
THINK_IN_CONTENT = ("think_in_content", "think_in_content_multi")
PLAIN = ("plain_en", "plain_zh", "multi_en", "multi_zh", "system_en", "system_zh")
EDGES = ("reply_leading_newline", "reply_trailing_space")

KNOWN_FAILING: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = []


def _known(check: str, template: str, conversation: str) -> str | None:
    """The reason a case fails today (its KNOWN_FAILING rule), or None if it must pass."""
    checks = {"labels": ("labels", "ids"), "golden": ("golden", "labels", "ids")}.get(check, (check,))
    for rule_check, templates, conversations, reason in KNOWN_FAILING:
        if rule_check in checks and template in templates and conversation in conversations:
            return f"{rule_check}: {reason}"
    return None


def _params(check: str, conversations=tuple(RECORDS)) -> list:
    out = []
    for t in TEMPLATES:
        for c in conversations:
            reason = _known(check, t, c)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(t, c, id=f"{t}-{c}", marks=marks))
    return out


# ---------------------------------------------------------------------------------------------------
# The reference: transformers' apply_chat_template on the same tokenizer.
# ---------------------------------------------------------------------------------------------------
def messages_of(conversation: str) -> list[dict]:
    rec = RECORDS[conversation]
    return SHAREGPT_AS_MESSAGES[conversation] if "conversations" in rec else rec["messages"]


@functools.lru_cache(maxsize=None)
def tokenizer(template: str):
    return template_tokenizer(template)


def render(template: str, messages, tools, **kw) -> str:
    return tokenizer(template).apply_chat_template(messages, tools=tools, tokenize=False, **kw)


def reference_ids(template: str, messages, tools) -> list[int]:
    out = tokenizer(template).apply_chat_template(messages, tools=tools, tokenize=True, return_dict=False)
    return [int(i) for i in out]  # transformers 5 returns a BatchEncoding by default: compare plain ints


@dataclass
class Oracle:
    """apply_chat_template's verdict on one conversation: the text and ids, or the exception it raised."""

    text: str | None = None
    ids: list[int] = field(default_factory=list)
    error: Exception | None = None


@functools.lru_cache(maxsize=None)
def oracle(template: str, conversation: str) -> Oracle:
    msgs, tools = messages_of(conversation), RECORDS[conversation].get("tools")
    try:
        return Oracle(render(template, msgs, tools), reference_ids(template, msgs, tools))
    except Exception as exc:  # the template refused it (raise_exception, or a jinja/type error on the data)
        return Oracle(error=exc)


def lost(template: str, conversation: str) -> str | None:
    """What apply_chat_template's rendering silently leaves out of a conversation it does not refuse: the
    record's `tools` (the text is the same without them), a tool call, or content parts (printed as a
    Python list, or not at all). Training on that would lose data
    without a word, so llmprep must reject such a conversation instead (None: nothing is lost).

    Example: SmolLM3's template never reads `tool_calls` -> "tool call get_weather"
    """
    ref = oracle(template, conversation)
    if ref.error is not None:
        return None
    text, messages = ref.text, messages_of(conversation)
    tools = RECORDS[conversation].get("tools")
    if tools and render(template, messages, None) == text:
        return "tools"
    if "{'type': 'text'" in text:
        return "content parts printed as a Python list"
    parts = [p.strip() for m in messages if isinstance(m.get("content"), list) for p in _visible(m["content"])]
    if any(p and p not in text for p in parts):
        return "content parts"
    first_user = next((p for m in messages if m["role"] == "user" for p in _pieces(m)), "")
    after = text[max(text.find(first_user), 0):]  # tools are listed before the first user text: skip that
    calls = [(c.get("function") or c)["name"] for m in messages for c in m.get("tool_calls") or []]
    for name in dict.fromkeys(calls):
        if after.count(name) < calls.count(name):
            return f"tool call {name}"
    return None


# ---------------------------------------------------------------------------------------------------
# Running llmprep: one prepare() per template (and option set) over all conversations.
# ---------------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """llmprep's output mapped back to conversations: id -> list of (ids, labels) rows, or a reject reason."""

    rows: dict[str, list[tuple[list[int], list[int]]]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # "field: reason" from DIR/rejected.jsonl
    error: str | None = None  # the run itself failed, or its rows could not be mapped back


def run_llmprep(template: str, folder: Path, records: list[dict], rows_per_record, **options) -> Prepared:
    """prepare() `records` (messages and ShareGPT records in two files) with the template's tokenizer and
    --template path, in one run; map output rows back by input order (rows_per_record(id) rows each)."""
    from datasets import load_from_disk

    from llmprep.prepare import prepare

    folder.mkdir(parents=True, exist_ok=True)
    chats = [r for r in records if "messages" in r]
    sharegpt = [r for r in records if "conversations" in r]
    files = [(write_jsonl(folder / "chats.jsonl", chats), chats)]
    if sharegpt:
        files.append((write_jsonl(folder / "sharegpt.jsonl", sharegpt), sharegpt))
    out = folder / "out"
    try:
        prepare([str(f) for f, _ in files], out=out, tokenizer=tokenizer(template),
                template=str(template_path(template)), max_length=MAX_LENGTH, engine=ENGINE, num_proc=1,
                cache=False, progress=False, **options)
    except Exception as exc:  # e.g. an option today's code doesn't know: every case of this run fails
        return Prepared(error=f"prepare() raised {type(exc).__name__}: {exc}")
    rejected = {}
    with open(out / "rejected.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            rejected[(Path(r["source"]).name, r["line"])] = f"{r['field']}: {r['reason']}"
    train = load_from_disk(str(out))["train"]
    ids, labels = train["input_ids"], train["labels"]
    result, k = Prepared(), 0
    for path, recs in files:
        for line, rec in enumerate(recs, start=1):
            if (path.name, line) in rejected:
                result.rejected[rec["id"]] = rejected[(path.name, line)]
                continue
            n = rows_per_record(rec["id"])
            result.rows[rec["id"]] = [(list(ids[k + j]), list(labels[k + j])) for j in range(n)]
            k += n
    if k != len(ids):
        return Prepared(error=f"{len(ids)} rows for {k} expected: cannot map rows back to conversations")
    return result


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """prepared(template, history) -> Prepared, computed once per module."""
    cache: dict = {}

    def get(template: str, history: str = "full") -> Prepared:
        if (template, history) not in cache:
            folder = tmp_path_factory.mktemp(f"{template}-{history}")
            if history == "full":  # the default (dedup off: some conversations differ only in what dedup ignores)
                cache[template, history] = run_llmprep(template, folder, list(RECORDS.values()), lambda _: 1,
                                                       dedup="none")
            else:
                convs = [c for c in RECORDS if per_turn_expected(template, c) is not None]
                cache[template, history] = run_llmprep(
                    template, folder, [RECORDS[c] for c in convs],
                    lambda c: len(per_turn_expected(template, c)), history=history, dedup="none")
        return cache[template, history]

    return get


def kept_row(prep: Prepared, conversation: str) -> tuple[list[int], list[int]]:
    assert prep.error is None, prep.error
    assert conversation not in prep.rejected, f"rejected: {prep.rejected[conversation]}"
    assert conversation in prep.rows, "neither kept nor rejected"
    (row,) = prep.rows[conversation]
    return row


# ---------------------------------------------------------------------------------------------------
# Locating each message's text in the rendering, and the label oracles.
# ---------------------------------------------------------------------------------------------------
def _visible(content) -> list[str]:
    """Text pieces a template may print for a content: a string, or the text of OpenAI content parts."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p.get("text", "") for p in content if isinstance(p, dict)]
    return []


def _pieces(msg: dict) -> list[str]:
    """The texts of a message in the order templates print them: reasoning, content, tool-call names.
    DeepSeek-R1-style "<think>r</think>a" content gives r and a separately (templates split it)."""
    out = [msg.get(k) for k in ("reasoning_content", "thinking", "reasoning") if isinstance(msg.get(k), str)][:1]
    for text in _visible(msg.get("content")):
        if "</think>" in text:
            head, tail = text.split("</think>", 1)
            out += [head.replace("<think>", ""), tail]
        else:
            out.append(text)
    for call in msg.get("tool_calls") or []:
        out.append((call.get("function") or call).get("name", ""))
    return [p.strip() for p in out if p and p.strip()]


@dataclass
class Located:
    index: int  # message index
    start: int
    end: int


def locate(messages: list[dict], text: str) -> list[Located]:
    """Find each message's pieces in the rendering, in order (a template may drop or move some: those
    not found after the previous one are skipped)."""
    found, cursor = [], 0
    for i, msg in enumerate(messages):
        for piece in _pieces(msg):
            for form in (piece, json.dumps(piece, ensure_ascii=False)[1:-1]):  # gpt-oss prints tool results |tojson
                at = text.find(form, cursor)
                if at != -1:
                    found.append(Located(i, at, at + len(form)))
                    cursor = at + len(form)
                    break
    return found


def _eot_run_end(text: str, start: int, limit: int, eot: tuple[str, ...]) -> int | None:
    """End of the run of end-of-turn tokens that starts at the first one in text[start:limit].
    Example: ("hi<|END_RESPONSE|><|END_OF_TURN_TOKEN|>\\n", 0, ...) -> index after <|END_OF_TURN_TOKEN|>"""
    hits = [(text.find(t, start, limit), t) for t in eot]
    hits = [(at, t) for at, t in hits if at != -1]
    if not hits:
        return None
    at, tok = min(hits)
    end = at + len(tok)
    while True:
        nxt = next((t for t in eot if text.startswith(t, end)), None)
        if nxt is None:
            return end
        end += len(nxt)


@dataclass
class Tokens:
    ids: list[int]
    offsets: list[tuple[int, int]]

    def overlapping(self, a: int, b: int) -> list[int]:
        return [i for i, (s, e) in enumerate(self.offsets) if e > a and s < b]

    def inside(self, a: int, b: int) -> list[int]:
        return [i for i, (s, e) in enumerate(self.offsets) if s >= a and e <= b and e > s]


def tokens_of(template: str, text: str) -> Tokens:
    enc = tokenizer(template)(text, add_special_tokens=False, return_offsets_mapping=True)
    return Tokens(list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]])


def _show(template: str, toks: Tokens, idx) -> str:
    return repr(tokenizer(template).decode([toks.ids[i] for i in sorted(idx)]))


def last_turn_span(template: str, messages: list[dict], tools, text: str) -> tuple[int, int] | None:
    """Oracle (a): the characters of the last assistant turn the model generates at inference, or None
    when the inference prompt is not a prefix of the rendering (the oracle does not apply)."""
    k = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = render(template, messages[:k], tools, add_generation_prompt=True)
    if not text.startswith(prompt):
        return None
    own = [loc for loc in locate(messages, text) if loc.index == k and loc.end > len(prompt)]
    anchor = max([loc.end for loc in own], default=len(prompt))
    following = [loc.start for loc in locate(messages, text) if loc.index > k]
    end = _eot_run_end(text, anchor, min(following, default=len(text)), FAMILIES[TEMPLATES[template]].eot)
    return len(prompt), end if end is not None else len(text)


def check_last_turn(template: str, messages, tools, text: str, toks: Tokens, trained: set[int],
                    only_last: bool = False) -> None:
    """Oracle (a): trained tokens of the last turn == tokens of what the model generates (+ its stop run)."""
    span = last_turn_span(template, messages, tools, text)
    if span is None:
        return
    a, b = span
    expected = set(toks.overlapping(a, b))
    actual = set(toks.overlapping(a, len(text)) if not only_last else range(len(toks.ids))) & trained
    assert actual == expected, (f"last turn: trained {_show(template, toks, actual)}, "
                                f"the model generates {_show(template, toks, expected)}")


def check_every_turn(template: str, messages, text: str, toks: Tokens, trained: set[int]) -> None:
    """Oracle (b), per message and header; see the module docstring."""
    fam = FAMILIES[TEMPLATES[template]]
    located = locate(messages, text)
    for loc in located:
        msg = messages[loc.index]
        piece = repr(text[loc.start:loc.end])
        train = msg.get("train", msg["role"] == "assistant")
        if train:
            missing = [i for i in toks.inside(loc.start, loc.end) if i not in trained]
            assert not missing, f"{msg['role']} {piece}: not trained: {_show(template, toks, missing)}"
        else:
            extra = [i for i in toks.overlapping(loc.start, loc.end) if i in trained]
            assert not extra, f"{msg['role']} {piece}: trained: {_show(template, toks, extra)}"
    ends_a_turn = _turn_ends(messages, text, located, fam.eot)
    for header in fam.headers:
        at = text.find(header)
        while at != -1:
            extra = [i for i in toks.inside(at, at + len(header)) if i in trained]
            if at not in ends_a_turn:  # (GLM's <|user|> is a header, and the stop token right after a reply)
                assert not extra, f"role header {header!r} at {at}: trained {_show(template, toks, extra)}"
            at = text.find(header, at + 1)
    for i, msg in enumerate(messages):  # from the turn's last piece through its end-of-turn run
        own = [loc for loc in located if loc.index == i]
        if msg["role"] != "assistant" or not own:
            continue
        anchor = own[-1].end
        following = [loc.start for loc in located if loc.index > i]
        end = _eot_run_end(text, anchor, min(following, default=len(text)), fam.eot)
        if end is None:
            continue
        run = toks.overlapping(anchor, end)
        after = [j for j, (s, _) in enumerate(toks.offsets) if s >= end][:1]
        if msg.get("train", True):
            assert all(j in trained for j in run), (
                f"turn {i}: {text[anchor:end]!r} (end of turn) not all trained: {_show(template, toks, run)}")
            assert not any(j in trained for j in after), (
                f"turn {i}: separator after the end-of-turn run trained: {_show(template, toks, after)}")
        else:
            assert not any(j in trained for j in run), f"turn {i} (train: false): end of turn trained"


def _turn_ends(messages: list[dict], text: str, located: list[Located], eot: tuple[str, ...]) -> set[int]:
    """Positions of the end-of-turn tokens in the run right after each assistant turn's last piece."""
    out = set()
    for i, msg in enumerate(messages):
        own = [loc for loc in located if loc.index == i]
        if msg["role"] != "assistant" or not own:
            continue
        following = [loc.start for loc in located if loc.index > i]
        end = _eot_run_end(text, own[-1].end, min(following, default=len(text)), eot)
        pos = own[-1].end
        while end is not None and pos < end:
            hit = next(((text.find(t, pos, end), t) for t in eot if text.find(t, pos, end) != -1), None)
            if hit is None:
                break
            out.add(hit[0])
            pos = hit[0] + len(hit[1])
    return out


# ---------------------------------------------------------------------------------------------------
# The tests.
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template,conversation", _params("ids"))
def test_ids_equal_apply_chat_template(prepared, template, conversation):
    ref = oracle(template, conversation)
    prep = prepared(template)
    assert prep.error is None, prep.error
    if ref.error is not None:
        assert conversation in prep.rejected, f"kept, but apply_chat_template raised {ref.error!r}"
        assert str(ref.error) in prep.rejected[conversation], (
            f"reject reason {prep.rejected[conversation]!r} lacks the template's message {str(ref.error)!r}")
        return
    if (what := lost(template, conversation)) is not None:
        assert conversation in prep.rejected, f"kept, but the template's rendering loses the {what}"
        topic = r"tool.?call" if what.startswith("tool call") else "`tools`" if what == "tools" else "content"
        assert re.search(topic, prep.rejected[conversation], re.I), (
            f"reject reason {prep.rejected[conversation]!r} does not say the {what} would be lost")
        return
    ids, labels = kept_row(prep, conversation)
    assert ids == ref.ids
    assert len(labels) == len(ids)


@pytest.mark.parametrize("template,conversation", _params("labels"))
def test_labels_follow_the_rule(prepared, template, conversation):
    ref = oracle(template, conversation)
    if ref.error is not None or lost(template, conversation):
        pytest.skip("apply_chat_template refuses this conversation, or its rendering loses part of it")
    ids, labels = kept_row(prepared(template), conversation)
    assert ids == ref.ids, "ids differ from apply_chat_template (see test_ids_equal_apply_chat_template)"
    assert all(lab in (IGNORE, i) for lab, i in zip(labels, ids))
    messages, tools = messages_of(conversation), RECORDS[conversation].get("tools")
    toks = tokens_of(template, ref.text)
    assert toks.ids == ids
    trained = {i for i, lab in enumerate(labels) if lab != IGNORE}
    check_every_turn(template, messages, ref.text, toks, trained)
    check_last_turn(template, messages, tools, ref.text, toks, trained)


def _trained_turns(messages: list[dict]) -> list[int]:
    return [i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("train", True) is not False]


@functools.lru_cache(maxsize=None)
def per_turn_expected(template: str, conversation: str) -> list[int] | None:
    """The assistant turns that per-turn rows end at, or None where oracle (a) does not apply to each of
    them (the template refuses a prefix, or renders history differently from the inference prompt)."""
    messages, tools = messages_of(conversation), RECORDS[conversation].get("tools")
    if oracle(template, conversation).error is not None or lost(template, conversation) or any(
            m.get("train") is True for m in messages):
        return None  # (a user turn forced into training has no per-turn row of its own to check)
    turns = _trained_turns(messages)
    try:
        if all(last_turn_span(template, messages[:k + 1], tools, render(template, messages[:k + 1], tools))
               for k in turns):
            return turns
    except Exception:  # a prefix the template refuses
        return None
    return None


@pytest.mark.parametrize("template,conversation", _params("per-turn"))
def test_per_turn_rows_are_last_turn_rows(prepared, template, conversation):
    turns = per_turn_expected(template, conversation)
    if turns is None:
        pytest.skip("oracle (a) does not apply to every turn of this conversation on this template")
    prep = prepared(template, "per-turn")
    assert prep.error is None, prep.error
    assert conversation not in prep.rejected, prep.rejected.get(conversation)
    messages, tools = messages_of(conversation), RECORDS[conversation].get("tools")
    rows = prep.rows[conversation]
    assert len(rows) == len(turns)
    for k, (ids, labels) in zip(turns, rows):
        head = messages[:k + 1]
        text = render(template, head, tools)
        assert ids == reference_ids(template, head, tools), f"row for turn {k}"
        toks = tokens_of(template, text)
        trained = {i for i, lab in enumerate(labels) if lab != IGNORE}
        check_last_turn(template, head, tools, text, toks, trained, only_last=True)


# ---------------------------------------------------------------------------------------------------
# (d) Goldens: the trained segments, worked out by hand from the template text (comments show how).
# ---------------------------------------------------------------------------------------------------
# fmt: off
GOLDENS = {
    # ChatML plain: each reply + <|im_end|>; the "\n" after it is a separator.
    ("qwen2.5", "multi_zh"): ["我还不错，你呢?<|im_end|>", "那太好了.<|im_end|>"],
    # Qwen2.5 tool call, content null: '<|im_start|>assistant' + '\n<tool_call>\n{"name": "' + name +
    # '", "arguments": ' + arguments|tojson + '}\n</tool_call>' + '<|im_end|>\n'. The "\n" after "assistant" is
    # the inference prompt's ("<|im_start|>assistant\n"), so training starts at <tool_call>.
    ("qwen2.5", "tool_call_obj_null"): [
        '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Berlin, Germany", "unit": "celsius"}}\n'
        '</tool_call><|im_end|>',
        "Yes: it is 14 °C with light rain in Berlin, so take an umbrella.<|im_end|>"],
    # Parallel calls: one <tool_call> block per call, one <|im_end|> after the last.
    ("qwen2.5", "tool_parallel"): [
        '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Tokyo, Japan"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_local_time", "arguments": {"timezone": "Asia/Tokyo"}}\n</tool_call><|im_end|>',
        "In Tokyo it is 21:40, 27 °C and humid.<|im_end|>"],
    # Command R7B: '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_RESPONSE|>' + content.strip() +
    # '<|END_RESPONSE|><|END_OF_TURN_TOKEN|>': the inference prompt ends with <|START_RESPONSE|>, and the
    # model's eos is <|END_OF_TURN_TOKEN|>, so the whole two-token run is trained.
    ("command-r7b", "multi_en"): ["I am doing well, how about you?<|END_RESPONSE|><|END_OF_TURN_TOKEN|>",
                                  "That's good.<|END_RESPONSE|><|END_OF_TURN_TOKEN|>"],
    # Command R7B tool_use template: the prompt is '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'; a call turn is
    # '<|START_THINKING|>' + tool_plan (absent: "") + '<|END_THINKING|><|START_ACTION|>[\n' + 4 spaces + the
    # call + '\n' (the blank line; trim_blocks eats the newline after each block tag) + ']<|END_ACTION|>
    # <|END_OF_TURN_TOKEN|>'; a reply turn is '<|START_RESPONSE|>' + content + '<|END_RESPONSE|><|END_OF_TURN_TOKEN|>'.
    ("command-r7b-tool-use", "tool_call_obj_null"): [
        '<|START_THINKING|><|END_THINKING|><|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "get_weather", '
        '"parameters": {"location": "Berlin, Germany", "unit": "celsius"}}\n]<|END_ACTION|><|END_OF_TURN_TOKEN|>',
        "<|START_RESPONSE|>Yes: it is 14 °C with light rain in Berlin, so take an umbrella.<|END_RESPONSE|>"
        "<|END_OF_TURN_TOKEN|>"],
}
# fmt: on


def trained_segments(template: str, ids: list[int], labels: list[int]) -> list[str]:
    """Decode each run of trained tokens. Example: labels [-100, 5, 6, -100, 7] -> [decode([5, 6]), decode([7])]"""
    runs, current = [], []
    for i, lab in zip(ids, labels):
        if lab != IGNORE:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    tok = tokenizer(template)
    return [tok.decode(r, skip_special_tokens=False, clean_up_tokenization_spaces=False) for r in runs]


@pytest.mark.parametrize("template,conversation", [
    pytest.param(t, c, id=f"{t}-{c}", marks=[pytest.mark.xfail(strict=True, reason=r)] if (r := _known("golden", t, c))
                 else []) for t, c in GOLDENS])
def test_golden_trained_segments(prepared, template, conversation):
    ids, labels = kept_row(prepared(template), conversation)
    assert trained_segments(template, ids, labels) == GOLDENS[template, conversation]


# ---------------------------------------------------------------------------------------------------
# add_eos: a template that writes no end-of-turn token after the last reply (GLM) gets the eos appended,
# so the model learns to stop; one that does (ChatML) is left as apply_chat_template renders it.
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template,appended", [
    pytest.param(t, a, id=t, marks=[pytest.mark.xfail(strict=True, reason=r)] if (r := _known("add-eos", t, "plain_en"))
                 else []) for t, a in [("glm-4.5", True), ("qwen2.5", False)]])
def test_add_eos_appends_a_trained_eos_only_where_missing(tmp_path, template, appended):
    prep = run_llmprep(template, tmp_path, [RECORDS["plain_en"]], lambda _: 1, add_eos=True)
    ids, labels = kept_row(prep, "plain_en")
    eos = tokenizer(template).eos_token_id
    expected = oracle(template, "plain_en").ids + ([eos] if appended else [])
    assert ids == expected
    if appended:
        assert labels[-1] == eos
    else:  # ChatML already ends the reply with <|im_end|>: trained, the "\n" after it is not
        assert (labels[-2], labels[-1]) == (eos, IGNORE)


def test_templates_are_the_recorded_bytes():
    """The .jinja files stay verbatim: their SHA-256 are those recorded in tests/assets/templates/README.md."""
    import hashlib

    readme = (template_path("qwen2.5").parent / "README.md").read_text(encoding="utf-8")
    recorded = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+\.jinja)$", readme, re.M))
    assert sorted(recorded) == sorted(f"{t}.jinja" for t in TEMPLATES)
    for name in TEMPLATES:
        assert hashlib.sha256(template_path(name).read_bytes()).hexdigest() == recorded[f"{name}.jinja"], name

"""encode.py: ids equal apply_chat_template(tokenize=True); labels train exactly each assistant reply plus
its end-of-turn token; control-token text typed by a user stays plain text."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import chat

from llmprep.constants import IGNORE_INDEX
from llmprep.encode import ChatEncoder, Encoded, concat, encode_documents, gather_index, span_labels, take
from llmprep.records import Record
from llmprep.render import ChatRenderer, resolve_template
from llmprep.shard import ShardSettings, process_shard

HAND_CHATS = [
    chat("Hi", "Hello!"),
    chat("What is 2+2?", "4", system="You are a calculator."),
    chat("Hi", "Hello! How can I help?", "Tell me a joke.", "Why did the chicken cross the road?",
         "Why?", "To get to the other side."),
    chat("  Hi there \n", " Hello!  ", "\tnext\n", "ok  "),
    chat("  spaced  ", "\n reply with newline \n", system="  sys  "),
    chat("你好", "你好！有什么可以帮你？", "今天天气怎么样？", "今天是晴天。"),
    chat("Count: 1  2   3", "1 2 3\n\nDone."),
]
SETUPS = [("smollm2", None), ("mistral", "mistral"), ("mistral", "llama2"), ("llama3", "llama3")]


def tools(request, tok_name, template):
    tok = request.getfixturevalue(tok_name)
    source = resolve_template(template)[1] if template else tok.chat_template
    return tok, source, ChatRenderer.for_tokenizer(source, tok)


def encode_chats(tok, source, convs, *, train_turns="all", train_on_prompt=False, literal=True, max_length=4096,
                 engine="fastokens"):
    """Run conversations through the shard stage (render -> encode -> fit) as prepare does (fastokens, as
    --engine auto does for big batches: these small ones would go through `tokenizers`)."""
    settings = ShardSettings(tokenizer=tok, template_source=source, max_length=max_length, truncation="right",
                             train_on_prompt=train_on_prompt, train_turns=train_turns,
                             literal_control_text=literal, engine=engine)
    records = [Record("mem", i + 1, data={"messages": m}) for i, m in enumerate(convs)]
    result = process_shard(records, {"mem": "messages"}, settings)
    assert not result.rejected and not result.dropped
    return [result.encoded.row(r) for r in range(len(result.encoded))], result


def trained_runs(ids, labels):
    """Contiguous runs of trained tokens, as lists of ids; checks label == id wherever trained."""
    runs, cur = [], []
    for i, lab in zip(ids, labels):
        if lab == IGNORE_INDEX:
            if cur:
                runs.append(cur)
            cur = []
        else:
            assert lab == i
            cur.append(i)
    return runs + ([cur] if cur else [])


def expected_trained(template, reply):
    """The hand-known text of a trained run, as decode() writes it."""
    if template is None:  # byte-level BPE merges the template's "\n" with a reply's leading "\n" into one
        return ("\n" if reply.startswith("\n") else "") + reply + "<|im_end|>"  # token, which is trained
    if template == "mistral":  # '[/INST]' + content + '</s>' (decode drops the leading "▁" space)
        return reply.lstrip(" ") + "</s>"
    if template == "llama2":  # ' ' + content.strip() + ' </s>'
        return reply.strip() + " </s>"
    if template == "llama3":
        return reply.strip() + "<|eot_id|>"
    raise AssertionError(template)


@pytest.mark.parametrize("tok_name,template", SETUPS)
def test_ids_equal_apply_chat_template(request, tok_name, template, english_chats, chinese_chats):
    tok, source, _ = tools(request, tok_name, template)
    convs = HAND_CHATS + english_chats[::20] + [m for m in english_chats if len(m) > 4][:8] + chinese_chats[::8]
    rows, _ = encode_chats(tok, source, convs)
    for messages, (ids, labels) in zip(convs, rows, strict=True):
        ref = tok.apply_chat_template(messages, chat_template=source, tokenize=True)["input_ids"]
        assert ids == ref
        assert len(labels) == len(ids)


@pytest.mark.parametrize("tok_name,template", SETUPS)
def test_labels_train_each_reply_and_end_of_turn(request, tok_name, template, english_chats, chinese_chats):
    tok, source, _ = tools(request, tok_name, template)
    convs = HAND_CHATS + english_chats[::30] + chinese_chats[::12]
    rows, _ = encode_chats(tok, source, convs)
    for messages, (ids, labels) in zip(convs, rows):
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        runs = trained_runs(ids, labels)
        assert [tok.decode(r) for r in runs] == [expected_trained(template, x) for x in replies]
        # the prompt (everything before the first reply) is never trained
        first = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
        assert all(lab == IGNORE_INDEX for lab in labels[:first]) and first > 0


def test_chatml_labels_golden(smollm2):
    """By hand: after the default system prompt, user 'Hi', assistant 'Hello!' -> trained 'Hello', '!',
    <|im_end|> (id 2); the newline after <|im_end|> and everything before are -100."""
    rows, _ = encode_chats(smollm2, smollm2.chat_template, [chat("Hi", "Hello!")])
    ids, labels = rows[0]
    eos = smollm2.convert_tokens_to_ids("<|im_end|>")
    assert eos == 2 == smollm2.eos_token_id == smollm2.pad_token_id
    reply = smollm2("Hello!", add_special_tokens=False)["input_ids"]
    nl = smollm2("\n", add_special_tokens=False)["input_ids"]
    assert ids[-len(reply) - 2:] == reply + [eos] + nl
    assert labels[-len(reply) - 2:] == reply + [eos, IGNORE_INDEX]
    assert set(labels[:-len(reply) - 2]) == {IGNORE_INDEX}


def test_train_turns_last(smollm2, mistral):
    convs = [chat("a", "first reply", "b", "second reply", "c", "third reply")]
    for tok, source, eot in [(smollm2, smollm2.chat_template, "<|im_end|>"),
                             (mistral, resolve_template("llama2")[1], " </s>")]:
        rows, _ = encode_chats(tok, source, convs, train_turns="last")
        ids, labels = rows[0]
        assert [tok.decode(r) for r in trained_runs(ids, labels)] == ["third reply" + eot]
        all_rows, _ = encode_chats(tok, source, convs)
        assert all_rows[0][0] == ids  # same ids, fewer labels
        assert len(trained_runs(*all_rows[0])) == 3


def test_train_on_prompt_labels_everything(smollm2, llama3):
    for tok in (smollm2, llama3):
        rows, _ = encode_chats(tok, tok.chat_template, HAND_CHATS, train_on_prompt=True)
        for ids, labels in rows:
            assert labels == ids


@pytest.mark.parametrize("literal", [True, False])
def test_control_token_text_in_user_content(smollm2, literal):
    msgs = chat("please print <|im_end|> then <|im_start|>system", "I wrote <|im_end|> for you.")
    source = smollm2.chat_template
    rows, result = encode_chats(smollm2, source, [msgs], literal=literal)
    ids, labels = rows[0]
    ref = smollm2.apply_chat_template(msgs, tokenize=True)["input_ids"]
    text = smollm2.apply_chat_template(msgs, tokenize=False)
    im_end, im_start = smollm2.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    if literal:
        # only the template's own three turns (system, user, assistant) produce control tokens
        assert ids.count(im_end) == 3 and ids.count(im_start) == 3
        assert ids != ref and ref.count(im_end) == 5
        assert smollm2.decode(ids) == text  # nothing lost: the text is spelled out in plain tokens
        assert result.control_text_rows == 1
        runs = trained_runs(ids, labels)
        assert [smollm2.decode(r) for r in runs] == ["I wrote <|im_end|> for you.<|im_end|>"]
    else:
        assert ids == ref  # like apply_chat_template: the typed text becomes the control token
        assert result.control_text_rows == 0


def test_control_token_text_with_trimming_template(llama3):
    """llama3 trims content (prefix fallback): the typed <|eot_id|> still stays plain text."""
    msgs = chat("  end with <|eot_id|> please ", " <|eot_id|> done ")
    rows, _ = encode_chats(llama3, llama3.chat_template, [msgs])
    ids, labels = rows[0]
    eot = llama3.convert_tokens_to_ids("<|eot_id|>")
    assert ids.count(eot) == 2
    assert llama3.decode(ids) == llama3.apply_chat_template(msgs, tokenize=False)
    assert [llama3.decode(r) for r in trained_runs(ids, labels)] == ["<|eot_id|> done<|eot_id|>"]
    rows, _ = encode_chats(llama3, llama3.chat_template, [msgs], literal=False)
    assert rows[0][0] == llama3.apply_chat_template(msgs, tokenize=True)["input_ids"]


def test_literal_encoding_in_isolation(smollm2):
    """_encode_literal: template control tokens are cut where the tokenizer would cut; content isn't."""
    enc = ChatEncoder(smollm2)
    text = "<|im_start|>user\nx<|im_end|>y<|im_end|>"
    content = [(text.index("x"), text.index("y") + 1)]  # "x<|im_end|>y" is user content
    out = enc.encode([text], [[]], [content])
    ids, _ = out.row(0)
    assert ids[0] == smollm2.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == smollm2.convert_tokens_to_ids("<|im_end|>")
    assert ids.count(ids[-1]) == 1
    assert smollm2.decode(ids) == text
    assert enc.has_control_text("a <|im_end|>") and not enc.has_control_text("a <|im_end")


def test_span_labels_golden():
    ids = np.array([10, 11, 12, 13])
    starts, ends = np.array([0, 2, 4, 6]), np.array([2, 4, 6, 7])
    assert span_labels(ids, starts, ends, [(3, 6)]).tolist() == [-100, 11, 12, -100]
    assert span_labels(ids, starts, ends, []).tolist() == [-100] * 4
    assert span_labels(ids, starts, ends, [(0, 1), (6, 7)]).tolist() == [10, -100, -100, 13]
    assert span_labels(ids, starts, ends, [(2, 2)]).tolist() == [-100] * 4  # empty span trains nothing


def test_gather_take_concat_golden():
    index, offsets = gather_index(np.array([5, 0]), np.array([7, 1]))
    assert index.tolist() == [5, 6, 0] and offsets.tolist() == [0, 2, 3]
    a = Encoded(np.array([1, 2, 3]), np.array([-100, 2, 3]), np.array([0, 2, 3]))
    b = Encoded(np.array([4, 5]), np.array([4, -100]), np.array([0, 2]))
    c = concat([a, b])
    assert [c.row(r) for r in range(3)] == [([1, 2], [-100, 2]), ([3], [3]), ([4, 5], [4, -100])]
    t = take(c, [2, 0])
    assert [t.row(r) for r in range(2)] == [([4, 5], [4, -100]), ([1, 2], [-100, 2])]
    assert len(concat([])) == 0


def test_encode_documents(mistral, smollm2):
    enc = encode_documents(mistral, ["Hi", "Hello world", "Bye</s>"])
    # the bare tokenizer.model loads without add_bos_token: ▁Hi </s> (BOS only when the tokenizer adds it)
    assert enc.row(0) == ([15359, 2], [15359, 2])
    assert enc.row(1)[0] == mistral("Hello world")["input_ids"] + [2]
    assert enc.row(2)[0].count(2) == 1  # EOS appended once, not twice
    # SmolLM2 adds no BOS; EOS (<|im_end|>) is appended once
    ids, labels = encode_documents(smollm2, ["Hi"]).row(0)
    assert ids == smollm2("Hi", add_special_tokens=False)["input_ids"] + [2] and labels == ids


def test_shard_tools_not_reused_across_tokenizers(smollm2, mistral):
    """Regression: the per-process tool cache was keyed on id(settings); a new settings object reusing a
    freed one's id silently encoded with the previous tokenizer and template."""
    conv = [chat("a", "first reply")]
    llama2 = resolve_template("llama2")[1]
    for _ in range(2):
        for tok, source in [(smollm2, smollm2.chat_template), (mistral, llama2)]:
            rows, _ = encode_chats(tok, source, conv, engine="tokenizers")
            assert rows[0][0] == tok.apply_chat_template(conv[0], chat_template=source, tokenize=True)["input_ids"]


def test_shard_tools_follow_the_engine(smollm2):
    """Regression: the tool cache ignored --engine, so a run with engine="tokenizers" after an "auto" run
    (same tokenizer and template) kept the previous run's engine."""
    from llmprep.shard import _tools

    def settings(engine):
        return ShardSettings(tokenizer=smollm2, template_source=smollm2.chat_template, max_length=64,
                             truncation="right", engine=engine)

    _tools(settings("auto"))
    assert _tools(settings("tokenizers"))[2].fast is None

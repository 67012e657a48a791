"""Conversations for the real-template conformance tests: one record per kind of chat data people
fine-tune on now, in English and Chinese.

Plain chats are real dialogues from chatterbot-corpus (as tests/conftest.py uses); tool-calling and
reasoning turns are written here in the OpenAI shape: assistant `tool_calls` (content "" or null,
`arguments` a JSON string or an object, one call or parallel calls), `tool` results with
`tool_call_id`/`name`, a record-level `tools` list of JSON schemas, `reasoning_content` / `thinking`, and
DeepSeek-R1-style `<think>` inside content. Plus whitespace at reply edges, OpenAI content parts,
per-message `"train"`, and ShareGPT `function_call`/`observation` turns.

    conversation_records() -> [{"id": "plain_en", "messages": [...]}, ..., {"id": ..., "tools": [...], ...}]
    sharegpt_records()     -> [{"id": "sharegpt_function_call", "conversations": [...], "tools": [...]}]
    SHAREGPT_AS_MESSAGES   -> the OpenAI-shape messages each ShareGPT record means (the oracle renders these)
"""

from __future__ import annotations

import functools
import json
import site
from pathlib import Path

CORPUS = Path(site.getsitepackages()[0]) / "chatterbot_corpus" / "data"


@functools.lru_cache(maxsize=None)
def corpus_dialogue(language: str, topic: str, index: int) -> tuple[str, ...]:
    """One real chatterbot-corpus dialogue. Example: ("english", "science", 2) -> ("what is a wavelength", ...)"""
    import yaml

    with open(CORPUS / language / f"{topic}.yml", encoding="utf-8") as fh:
        return tuple(str(t) for t in yaml.safe_load(fh)["conversations"][index])


def _chat(turns, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}
LOCAL_TIME = {"type": "function", "function": {
    "name": "get_local_time", "description": "Get the current local time in an IANA time zone.",
    "parameters": {"type": "object", "properties": {
        "timezone": {"type": "string", "description": "IANA time zone, e.g. Asia/Tokyo"}},
        "required": ["timezone"]}}}


def _call(call_id: str, name: str, arguments: dict, *, as_string: bool) -> dict:
    args = json.dumps(arguments, ensure_ascii=False) if as_string else arguments
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _result(call_id: str, name: str, payload: dict) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "name": name, "content": json.dumps(payload, ensure_ascii=False)}


def _assistant_calls(content, *calls, **extra) -> dict:
    return {"role": "assistant", "content": content, "tool_calls": list(calls), **extra}


def _user(text) -> dict:
    return {"role": "user", "content": text}


def _assistant(text, **extra) -> dict:
    return {"role": "assistant", "content": text, **extra}


def _tool_records() -> list[dict]:
    """Agent traces in the OpenAI shape. Call ids are 9 alphanumerics (Mistral's templates demand that),
    except in `tool_openai_ids`."""
    paris = {"location": "Paris, France", "unit": "celsius"}
    berlin = {"location": "Berlin, Germany", "unit": "celsius"}
    return [
        {"id": "tool_call_str_empty", "tools": [WEATHER], "messages": [
            _user("What's the weather like in Paris right now?"),
            _assistant_calls("", _call("call00001", "get_weather", paris, as_string=True)),
            _result("call00001", "get_weather", {"temperature": 22, "condition": "sunny"}),
            _assistant("It is 22 °C and sunny in Paris right now.")]},
        {"id": "tool_call_obj_null", "tools": [WEATHER], "messages": [
            _user("Do I need an umbrella in Berlin today?"),
            _assistant_calls(None, _call("call00002", "get_weather", berlin, as_string=False)),
            _result("call00002", "get_weather", {"temperature": 14, "condition": "light rain"}),
            _assistant("Yes: it is 14 °C with light rain in Berlin, so take an umbrella.")]},
        {"id": "tool_parallel", "tools": [WEATHER, LOCAL_TIME], "messages": [
            _user("What's the weather and the local time in Tokyo?"),
            _assistant_calls(None, _call("call00003", "get_weather", {"location": "Tokyo, Japan"}, as_string=False),
                             _call("call00004", "get_local_time", {"timezone": "Asia/Tokyo"}, as_string=False)),
            _result("call00003", "get_weather", {"temperature": 27, "condition": "humid"}),
            _result("call00004", "get_local_time", {"time": "21:40"}),
            _assistant("In Tokyo it is 21:40, 27 °C and humid.")]},
        {"id": "tool_two_steps", "tools": [WEATHER], "messages": [
            _user("Is it warmer in Rome or in Madrid right now?"),
            _assistant_calls("", _call("call00005", "get_weather", {"location": "Rome, Italy"}, as_string=True)),
            _result("call00005", "get_weather", {"temperature": 25, "condition": "clear"}),
            _assistant_calls("", _call("call00006", "get_weather", {"location": "Madrid, Spain"}, as_string=True)),
            _result("call00006", "get_weather", {"temperature": 31, "condition": "clear"}),
            _assistant("Madrid is warmer: 31 °C against 25 °C in Rome.")]},
        {"id": "tool_zh", "tools": [WEATHER], "messages": [
            _user("北京现在天气怎么样？"),
            _assistant_calls("", _call("call00007", "get_weather", {"location": "北京", "unit": "celsius"},
                                       as_string=False)),
            _result("call00007", "get_weather", {"temperature": 18, "condition": "多云"}),
            _assistant("北京现在18°C，多云。")]},
        {"id": "tool_openai_ids", "tools": [WEATHER], "messages": [
            _user("How hot is it in Cairo?"),
            _assistant_calls(None, _call("call_9fK2mQx81LzP", "get_weather", {"location": "Cairo, Egypt"},
                                         as_string=True)),
            _result("call_9fK2mQx81LzP", "get_weather", {"temperature": 35, "condition": "sunny"}),
            _assistant("It is 35 °C and sunny in Cairo.")]},
        {"id": "tool_with_reasoning", "tools": [WEATHER], "messages": [
            _user("Should I wear a coat in Oslo today?"),
            _assistant_calls("", _call("call00008", "get_weather", {"location": "Oslo, Norway"}, as_string=False),
                             reasoning_content="The user asks about Oslo's weather today; I should look it up."),
            _result("call00008", "get_weather", {"temperature": 3, "condition": "windy"}),
            _assistant("Yes, wear a coat: it is 3 °C and windy in Oslo.",
                       reasoning_content="3 °C and windy is cold, so a coat is needed.")]},
    ]


def _reasoning_records() -> list[dict]:
    q1, r1 = corpus_dialogue("english", "science", 2)
    q2, r2 = corpus_dialogue("english", "science", 11)
    zq, zr = corpus_dialogue("chinese", "science", 2)
    return [
        {"id": "reasoning_one", "messages": [
            _user(q1), _assistant(r1, reasoning_content="The user asks for a definition; wavelength and frequency "
                                                        "are inversely related.")]},
        {"id": "reasoning_multi", "messages": [
            _user(q1), _assistant(r1, reasoning_content="A definition is asked; keep it short."),
            _user(q2), _assistant(r2, reasoning_content="Cytology: the study of cells. Answer in one line.")]},
        {"id": "reasoning_zh", "messages": [
            _user(zq), _assistant(zr, reasoning_content="用户问波长的定义。波长与频率成反比。")]},
        {"id": "thinking_field", "messages": [
            _user(q1), _assistant(r1, thinking="A definition is asked; keep it short."),
            _user(q2), _assistant(r2, thinking="Cytology: the study of cells. Answer in one line.")]},
        {"id": "think_in_content", "messages": [
            _user(q1), _assistant(f"<think>\nThe user asks for a definition of wavelength.\n</think>\n\n{r1}")]},
        {"id": "think_in_content_multi", "messages": [
            _user(q1), _assistant(f"<think>\nA definition is asked.\n</think>\n\n{r1}"),
            _user(q2), _assistant(f"<think>\nCytology is the study of cells.\n</think>\n\n{r2}")]},
    ]


def _plain_records() -> list[dict]:
    en1 = corpus_dialogue("english", "science", 2)
    zh1 = corpus_dialogue("chinese", "science", 2)
    en4 = corpus_dialogue("english", "conversations", 2)
    zh4 = corpus_dialogue("chinese", "conversations", 2)
    en5 = corpus_dialogue("english", "conversations", 0)[:4]
    zh_sys = corpus_dialogue("chinese", "science", 3)
    q, r = corpus_dialogue("english", "science", 6)
    return [
        {"id": "plain_en", "messages": _chat(en1)},
        {"id": "plain_zh", "messages": _chat(zh1)},
        {"id": "multi_en", "messages": _chat(en4)},
        {"id": "multi_zh", "messages": _chat(zh4)},
        {"id": "system_en", "messages": _chat(en5, system="You are a friendly assistant. Answer briefly.")},
        {"id": "system_zh", "messages": _chat(zh_sys, system="你是一个乐于助人的助手。")},
        {"id": "reply_leading_newline", "messages": [_user(q), _assistant("\n" + r)]},
        {"id": "reply_trailing_space", "messages": [_user(q), _assistant(r + " ")]},
        {"id": "content_parts", "messages": [
            {"role": "user", "content": [{"type": "text", "text": q}]},
            {"role": "assistant", "content": [{"type": "text", "text": r}]}]},
        {"id": "train_false", "messages": [
            _user(en4[0]), _assistant(en4[1], train=False), _user(en4[2]), _assistant(en4[3])]},
        {"id": "train_true_user", "messages": [{"role": "user", "content": q, "train": True}, _assistant(r)]},
    ]


def conversation_records() -> list[dict]:
    """Every `messages`-format record, each with a unique "id" (and "tools" where it calls tools)."""
    records = _plain_records() + _reasoning_records() + _tool_records()
    assert len({r["id"] for r in records}) == len(records)
    return records


# ShareGPT with function calls (LLaMA-Factory's shape), and the OpenAI-shape messages it stands for:
# a function_call turn is an assistant turn with that call and content None (OpenAI's shape; a template
# that needs a string there refuses it, in transformers as in llmprep); an observation is a tool result.
_SG_CALL = {"name": "get_weather", "arguments": {"location": "Lisbon, Portugal", "unit": "celsius"}}
_SG_OBSERVATION = json.dumps({"temperature": 24, "condition": "sunny"})


def sharegpt_records() -> list[dict]:
    return [{"id": "sharegpt_function_call", "tools": [WEATHER], "conversations": [
        {"from": "human", "value": "What's the weather in Lisbon?"},
        {"from": "function_call", "value": json.dumps(_SG_CALL)},
        {"from": "observation", "value": _SG_OBSERVATION},
        {"from": "gpt", "value": "It is 24 °C and sunny in Lisbon."}]}]


SHAREGPT_AS_MESSAGES = {
    "sharegpt_function_call": [
        _user("What's the weather in Lisbon?"),
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": _SG_CALL}]},
        {"role": "tool", "content": _SG_OBSERVATION},
        _assistant("It is 24 °C and sunny in Lisbon.")],
}

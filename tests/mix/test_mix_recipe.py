import json

import pytest
from helpers import write_jsonl

from llmprep.mix.recipe import RecipeError, load_recipe


@pytest.fixture
def data(tmp_path, sample_rows):
    write_jsonl(tmp_path / "en.jsonl", sample_rows[:100])
    (tmp_path / "zh").mkdir()
    write_jsonl(tmp_path / "zh" / "a.jsonl", sample_rows[-50:])
    write_jsonl(tmp_path / "qa.jsonl", [{"prompt_text": "q", "answer": "a"}])
    return tmp_path


def test_yaml_recipe_with_relative_paths_globs_and_every_amount(data):
    (data / "mix.yaml").write_text("""
seed: 7
total_tokens: 2_000_000
sources:
  - name: en
    path: en.jsonl
    format: messages
    share: 0.6
  - name: zh
    paths: [zh/*.jsonl]
    share: 0.3
  - name: qa
    path: qa.jsonl
    columns: {question: prompt_text}
    tokens: 200000
""", encoding="utf-8")
    r = load_recipe(data / "mix.yaml")
    assert (r.seed, r.total_tokens, r.scarcest) == (7, 2_000_000, False)
    assert [(s.name, s.amount, s.value) for s in r.sources] == [("en", "share", 0.6), ("zh", "share", 0.3),
                                                                 ("qa", "tokens", 200000)]
    assert r.sources[0].paths == (str(data / "en.jsonl"),) and r.sources[1].paths == (str(data / "zh/*.jsonl"),)
    assert r.sources[2].columns == {"question": "prompt_text"} and r.sources[0].format == "messages"


def test_json_recipe_scarcest_and_rows(data):
    (data / "mix.json").write_text(json.dumps({"total_tokens": "scarcest", "sources": [
        {"name": "en", "path": "en.jsonl", "share": 0.5}, {"name": "zh", "path": "zh", "share": 0.5}]}))
    r = load_recipe(data / "mix.json")
    assert r.scarcest and r.total_tokens is None and r.seed == 42
    (data / "rows.json").write_text(json.dumps({"sources": [{"name": "en", "path": "en.jsonl", "rows": 10}]}))
    assert load_recipe(data / "rows.json").sources[0].amount == "rows"


def test_every_problem_is_reported_together_naming_file_source_field_value_and_valid_ones(data):
    (data / "bad.yaml").write_text("""
total_tokens: lots
colour: blue
sources:
  - name: en
    path: en.jsonl
    share: 1.5
    format: chatml
  - name: zh
    path: missing/*.jsonl
    share: 0.2
    rows: 5
  - path: qa.jsonl
    tokens: -3
  - name: en
    paths: []
    share: 0.1
    weight: 2
""", encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        load_recipe(data / "bad.yaml")
    msg = str(err.value)
    assert msg.startswith(f"--mix {data / 'bad.yaml'}: ") and "problems:" in msg
    for expected in [
        "field 'total_tokens': 'lots' is not valid; expected a positive number of trained tokens",
        "'scarcest'",
        "field 'colour' is not known; valid fields: sources, total_tokens, seed",
        "source 'en': field 'share': 1.5 is not valid; expected a fraction in (0, 1]",
        "source 'en': field 'format': 'chatml' is not valid; choose one of messages, sharegpt",
        "source 'zh': field 'path': 'missing/*.jsonl': no such file, directory or matching glob",
        "source 'zh': fields 'share' and 'rows': give exactly one of share",
        "sources[2]: field 'name': None is not valid; expected a non-empty string",
        "sources[2]: field 'tokens': -3 is not valid; expected a positive integer",
        "source 'en': field 'paths': [] is not valid",
        "source 'en': field 'weight' is not known; valid fields: name, path, paths, format, columns, share, tokens, "
        "rows",
    ]:
        assert expected in msg, expected


@pytest.mark.parametrize("doc, expected", [
    ({"total_tokens": 1000, "sources": [{"name": "a", "path": "en.jsonl", "share": 0.5},
                                        {"name": "b", "path": "qa.jsonl", "share": 0.3}]},
     "shares sum to 0.8 (a 0.5 + b 0.3); they must sum to 1"),
    ({"sources": [{"name": "a", "path": "en.jsonl", "share": 1}]}, "field 'total_tokens': missing"),
    ({"total_tokens": "scarcest", "sources": [{"name": "a", "path": "en.jsonl", "share": 0.5},
                                              {"name": "b", "path": "qa.jsonl", "rows": 10}]},
     "every source needs a share; 'b' has rows"),
    ({"total_tokens": 1000, "sources": [{"name": "a", "path": "en.jsonl", "share": 0.5},
                                        {"name": "b", "path": "qa.jsonl", "tokens": 100}]},
     "make 600 trained tokens, not total_tokens 1000"),
    ({"total_tokens": 1000, "sources": [{"name": "a", "path": "en.jsonl", "share": 0.5},
                                        {"name": "b", "path": "en.jsonl", "share": 0.5}]},
     "is in sources 'a' and 'b'; a file belongs to one source"),
    ({"total_tokens": 1000, "sources": [{"name": "a", "path": "en.jsonl", "share": 0.5},
                                        {"name": "a", "path": "qa.jsonl", "share": 0.5}]},
     "source 'a': name used 2 times"),
])
def test_amount_rules(data, doc, expected):
    (data / "r.json").write_text(json.dumps(doc))
    with pytest.raises(RecipeError, match="problem") as err:
        load_recipe(data / "r.json")
    assert expected in str(err.value)


def test_unreadable_or_malformed_recipe(data):
    with pytest.raises(RecipeError, match="cannot read the recipe"):
        load_recipe(data / "nope.yaml")
    (data / "x.yaml").write_text("sources: [\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"x.yaml: not valid YAML at line 2"):
        load_recipe(data / "x.yaml")
    (data / "x.json").write_text("{", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"x.json: not valid JSON at line 1"):
        load_recipe(data / "x.json")
    (data / "list.yaml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="expected a mapping with sources, total_tokens, seed, got list"):
        load_recipe(data / "list.yaml")

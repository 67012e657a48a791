"""Every failure path a user can reach through the CLI ends in one clear message (naming the path,
field or flag) and an exit status — never a Python traceback, never a user's file deleted.

Most cases run in-process (click's CliRunner: an exception escaping the command would show up as
`result.exception`); a real process is used where one matters: signals (Ctrl-C, SIGTERM, kill -9)
and a real full disk through the installed `llmprep` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import chat, mount_tmpfs, write_jsonl

from llmprep.cli import main
from llmprep.store import MARKER

ROOT = Path(__file__).resolve().parents[2]
CHATS = [{"messages": chat(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.")} for i in range(6)]


def cli(*args, env: dict | None = None):
    """Run the CLI in-process; assert no exception escaped it (what would be a traceback)."""
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def fails(*args, code: int = 1, says: list[str]) -> str:
    result = cli(*args)
    assert result.exit_code == code, result.output
    for text in says:
        assert text in result.output, result.output
    return result.output


@pytest.fixture
def data(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    return write_jsonl(tmp_path / "data" / "train.jsonl", CHATS)


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# --- --out ---------------------------------------------------------------------------------------

def test_out_never_replaces_user_files(tmp_path, data, monkeypatch):
    mydir = tmp_path / "mydir"
    mydir.mkdir()
    (mydir / "precious.txt").write_text("mine")
    before = snapshot(tmp_path)
    fails("prepare", data, "--out", data.parent, "--quiet",
          says=[f"--out '{data.parent}': holds files llmprep did not write (train.jsonl)", "remove it yourself"])
    fails("prepare", data, "--out", mydir, "--quiet", says=["(precious.txt)", "never deletes them"])
    fails("prepare", data, "--out", tmp_path / "mydir" / "precious.txt", "--quiet",
          says=["precious.txt' is a file", "Error: Invalid value for '--out'"], code=2)  # click's own check
    fails("prepare", data, "--out", mydir / "precious.txt" / "out", "--quiet",
          says=["precious.txt' is a file, not a directory (Not a directory)"])
    monkeypatch.chdir(tmp_path)
    fails("prepare", data, "--out", ".", "--quiet", says=["--out '.': is the current directory"])
    for stream in ([], ["--stream", "--pack", "wrap"]):  # --stream and vocab commands share the rule
        fails("prepare", data, "--out", "mydir", "--quiet", *stream, says=["--out 'mydir': holds files"])
    fails("vocab", "train", "--corpus", ROOT / "tests/assets/zh_fortunes_excerpt.txt", "--vocab-size", 300,
          "--out", "mydir", says=["--out 'mydir': holds files llmprep did not write (precious.txt)"])
    assert snapshot(tmp_path) == before  # nothing deleted, nothing half-written


def test_out_replaces_its_own_earlier_output(tmp_path, data):
    out = tmp_path / "out"
    for max_length in (128, 64):
        result = cli("prepare", data, "--out", out, "--quiet", "--max-length", max_length, "--no-cache")
        assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["options"]["max_length"] == 64
    assert json.loads((out / MARKER).read_text())["command"] == "llmprep prepare"
    assert sorted(os.listdir(tmp_path)) == ["data", "out"]


def test_read_only_file_system(tmp_path, data):
    ro = tmp_path / "ro"
    unmount = mount_tmpfs(ro, "1m", read_only=True)
    try:
        fails("prepare", data, "--out", ro / "out", "--quiet",
              says=[f"--out '{ro / 'out'}': cannot write in '{ro}': Read-only file system"])
    finally:
        unmount()


# --- input ---------------------------------------------------------------------------------------

def test_bad_records_are_rejects_naming_file_line_and_field(tmp_path):
    src = write_jsonl(tmp_path / "mixed.jsonl", [
        CHATS[0],
        '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}',
        '{"text": ' + "[" * 10_000 + "]" * 10_000 + "}",
        {"messages": chat("q" * 40_000, "a")},
        "\ufeff",  # a stray byte-order mark mid-file is just an odd line
    ])
    array = tmp_path / "array.json"  # a .json item is re-serialised: its surrogate must not reach any writer
    array.write_text('[{"instruction": "hi \\ud800", "output": "x"}]')
    out = tmp_path / "out"
    result = cli("prepare", src, array, "--out", out, "--quiet", "--max-record-bytes", 30_000, "--no-cache")
    assert result.exit_code == 0, result.output
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_bytes().decode("utf-8").splitlines()]
    got = {(Path(r["source"]).name, r["line"]): (r["field"], r["reason"]) for r in rejected}
    assert got["array.json", 1][0] == "instruction" and "lone surrogate U+D800" in got["array.json", 1][1]
    got = {r["line"]: (r["field"], r["reason"]) for r in rejected if r["source"] == str(src)}
    assert got[2][0] == "messages[0].content" and "lone surrogate U+D800" in got[2][1]
    assert "nested more than 100 levels" in got[3][1]
    assert "over --max-record-bytes 30,000" in got[4][1]


def test_an_input_that_yields_nothing_is_one_error_with_the_first_reasons(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    fails("prepare", bad, "--out", tmp_path / "o", "--quiet",
          says=["no usable rows: 1 records read, 1 rejected", f"{bad}:0: cannot read the Parquet file"])
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    fails("prepare", deep, "--out", tmp_path / "o", "--quiet", says=[f"{deep}:1: JSON nested more than 100 levels"])
    assert not (tmp_path / "o").exists()


# --- templates -----------------------------------------------------------------------------------

def test_hostile_templates(tmp_path, data):
    evil = tmp_path / "evil.jinja"
    evil.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}\n{% include 'secrets.txt' %}")
    fails("prepare", data, "--out", tmp_path / "o", "--template", evil, "--quiet", "--no-cache",
          says=["--template: evil.jinja, line 2: {% include %} is not allowed"])
    evil.write_text("{% for m in messages %}{{ m['content'] }}\n{{ 9**999999999 }}{% endfor %}")
    fails("prepare", data, "--out", tmp_path / "o", "--template", evil, "--quiet", "--no-cache",
          says=["no usable rows", "template error in evil.jinja, line 2: '**' would make an integer"])
    evil.write_text("{% for m in messages %}{{ m['content'] }}{% for i in range(99999) %}{% for j in range(99999) %}"
                    "{% endfor %}{% endfor %}{% endfor %}")
    fails("prepare", data, "--out", tmp_path / "o", "--template", evil, "--quiet", "--no-cache",
          "--render-timeout", 0.2, "--num-proc", 1,
          says=["rendering took more than 0.2 s (--render-timeout)"])
    fails("prepare", data, "--out", tmp_path / "o", "--render-timeout", 0, says=["--render-timeout"], code=2)
    assert not (tmp_path / "o").exists()


# --- the guard itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("exc,code,says", [
    (KeyboardInterrupt(), 130, "Aborted!"),
    (FileNotFoundError(2, "No such file or directory", "/data/x.jsonl"), 1,
     "Error: /data/x.jsonl: No such file or directory"),
    (RuntimeError("boom"), 1, "Error: unexpected RuntimeError: boom (this is a bug in llmprep; rerun with "
                              "LLMPREP_DEBUG=1 to see the traceback"),
    (MemoryError(), 1, "Error: out of memory"),
])
def test_any_exception_is_one_line(tmp_path, data, monkeypatch, exc, code, says):
    def explode(*args, **kwargs):
        raise exc

    monkeypatch.setattr("llmprep.prepare.run", explode)
    output = fails("prepare", data, "--out", tmp_path / "o", code=code, says=[says])
    assert len(output.strip().splitlines()) == 1
    if isinstance(exc, RuntimeError):  # LLMPREP_DEBUG=1 lets it through, traceback and all
        result = CliRunner().invoke(main, ["prepare", str(data), "--out", str(tmp_path / "o")],
                                    env={"LLMPREP_DEBUG": "1"})
        assert result.exception is exc


# --- real processes: signals and a full disk --------------------------------------------------------

DRIVER = """
import os, signal, sys
import llmprep.vocab.train as vocab_train

real = vocab_train.write_json
sig = getattr(signal, sys.argv[1])


def write_json(*args, **kwargs):  # the signal arrives while the output is being written
    real(*args, **kwargs)
    os.kill(os.getpid(), sig)


vocab_train.write_json = write_json
from llmprep.cli import main

sys.argv = ["llmprep"] + sys.argv[2:]
main()
"""


def env_with_src() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_signals_leave_nothing_behind_and_no_traceback(tmp_path):
    """Ctrl-C and SIGTERM while any command writes its output (here `vocab train`): one line, the
    conventional exit status, the temp dir removed on the way out. (prepare mid-run, with workers:
    tests/cli/test_prepare_faults.py; kill -9, which no process can handle: tests/test_store.py.)"""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "out"
    args = ["vocab", "train", "--corpus", str(ROOT / "tests/assets/zh_fortunes_excerpt.txt"),
            "--vocab-size", "3000", "--out", str(out)]
    for sig, code, says in [("SIGINT", 130, "Aborted!"), ("SIGTERM", 143, "Terminated")]:
        done = subprocess.run([sys.executable, str(driver), sig, *args], capture_output=True, text=True,
                              env=env_with_src(), timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == code, output
        assert output.strip().splitlines()[-1] == says and "Traceback" not in output, output
        assert sorted(os.listdir(tmp_path)) == ["driver.py"]


def test_full_disk_is_one_error_and_leaves_nothing(tmp_path, data):
    full = tmp_path / "full"
    unmount = mount_tmpfs(full, "12k")
    try:
        out = full / "out"
        done = subprocess.run([str(Path(sys.executable).parent / "llmprep"), "prepare", str(data), "--out", str(out),
                               "--quiet", "--no-cache", "--num-proc", "1"], capture_output=True, text=True,
                              env=env_with_src(), timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert output.startswith(f"Error: --out '{out}': cannot write the output"), output
        assert "No space left on device" in output and "Traceback" not in output
        assert os.listdir(full) == []
    finally:
        unmount()

"""store.py: --out is written atomically and never replaces what llmprep did not write.

Real conditions where they matter: a real SIGKILL at the final rename, a real read-only mount, a
real full disk (size-limited tmpfs); see helpers.mount_tmpfs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import mount_tmpfs

from llmprep import store
from llmprep.errors import ConfigError, OutputError
from llmprep.store import MARKER, atomic_output_dir, check_output_dir, clean_stale, read_marker

SRC = str(Path(__file__).resolve().parents[1] / "src")


def write_output(out: Path, text: str = "new", **kw) -> None:
    with atomic_output_dir(out, **kw) as tmp:
        (tmp / "data.txt").write_text(text)
        (tmp / "sub").mkdir()


def test_new_output_gets_a_marker_listing_its_entries(tmp_path):
    out = tmp_path / "a" / "b" / "out"  # parents are created
    write_output(out)
    assert sorted(os.listdir(out)) == [MARKER, "data.txt", "sub"]
    marker = read_marker(out)
    from llmprep import __version__
    assert marker == {"written_by": "llmprep", "format": 1, "llmprep_version": __version__,
                      "command": __name__, "entries": ["data.txt", "sub"]}  # (the module writing it)
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode
    assert os.listdir(out.parent) == ["out"]  # no temp dir left


def test_the_marker_names_the_command_however_it_was_started(tmp_path):
    from llmprep.stream import prepare_stream
    from llmprep.tokenizer import load_tokenizer

    (tmp_path / "a.txt").write_text("one document\n\nanother one\n")
    prepare_stream([str(tmp_path / "a.txt")], tokenizer=load_tokenizer("smollm2"), out=tmp_path / "s", block_size=4,
                   remainder="pad")
    assert read_marker(tmp_path / "s")["command"] == "llmprep prepare --stream"  # same bytes as from the CLI


def test_an_earlier_output_is_replaced_only_when_the_new_one_is_complete(tmp_path):
    out = tmp_path / "out"
    write_output(out, "first")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "data.txt").write_text("half")
            raise RuntimeError("the run died")
    assert (out / "data.txt").read_text() == "first" and sorted(os.listdir(tmp_path)) == ["out"]
    write_output(out, "second")
    assert (out / "data.txt").read_text() == "second" and sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("content", ["user files", "user file in an llmprep output", "bad marker"])
def test_a_directory_llmprep_did_not_write_is_refused_and_untouched(tmp_path, content):
    out = tmp_path / "data"
    if content == "user files":
        out.mkdir()
        (out / "train.jsonl").write_text('{"text": "precious"}\n')
        expected = "holds files llmprep did not write (train.jsonl) and no .llmprep.json marker"
    elif content == "bad marker":
        out.mkdir()
        (out / MARKER).write_text("{not json")
        (out / "precious.txt").write_text("mine")
        expected = "holds files llmprep did not write (.llmprep.json, precious.txt)"
    else:
        write_output(out)
        (out / "notes.txt").write_text("mine")
        expected = "an earlier llmprep output, but it now also holds files llmprep did not write (notes.txt)"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for call in (lambda: check_output_dir(out), lambda: write_output(out)):
        with pytest.raises(OutputError) as info:
            call()
        assert str(info.value).startswith(f"--out {str(out)!r}: ") and expected in str(info.value)
        assert "new or empty directory, or remove it yourself." in str(info.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert isinstance(info.value, ConfigError)  # callers catching ConfigError keep working


def test_files_llmprep_adds_later_keep_the_output_replaceable(tmp_path):
    out = tmp_path / "out"
    write_output(out)
    (out / "report.html").write_text("<html>")  # `llmprep report DIR` adds report.html after the fact...
    store.record_entry(out, "report.html")  # ...and lists it in the marker
    assert read_marker(out)["entries"] == ["data.txt", "report.html", "sub"]
    (out / ".report.html.tmp-999999").write_text("half")  # left by a killed `llmprep report`
    write_output(out, "again")
    assert (out / "data.txt").read_text() == "again"
    store.record_entry(tmp_path, "x")  # no marker: nothing happens
    assert not (tmp_path / MARKER).exists()


def test_out_dot_and_its_parents_are_refused(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for value in (".", str(work), "..", "./"):
        with pytest.raises(OutputError, match="is the current directory") as info:
            check_output_dir(value)
        assert f"--out {value!r}" in str(info.value)
    # even when it is empty: replacing it would pull the directory out from under the shell
    assert os.listdir(work) == []


def test_bad_paths_name_the_path_and_the_cause(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"afile' is a file, not a directory \(Not a directory\)"):
        check_output_dir(tmp_path / "afile" / "sub" / "out")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "afile")
    empty = tmp_path / "empty"
    empty.mkdir()
    write_output(empty)  # an empty directory is fine
    assert (empty / "data.txt").exists()
    with pytest.raises(OutputError, match="directory exists and is not empty"):
        write_output(empty, overwrite=False)


def test_read_only_file_system(tmp_path):
    ro = tmp_path / "ro"
    unmount = mount_tmpfs(ro, "1m", read_only=True)
    try:
        out = ro / "out"
        with pytest.raises(OutputError) as info:
            write_output(out)
        assert str(info.value) == f"--out {str(out)!r}: cannot write in {str(ro)!r}: Read-only file system"
        assert os.listdir(ro) == []
    finally:
        unmount()


def test_full_disk_leaves_nothing_behind(tmp_path):
    full = tmp_path / "full"
    unmount = mount_tmpfs(full, "256k")
    try:
        out = full / "out"
        with pytest.raises(OutputError) as info:
            with atomic_output_dir(out) as tmp:
                (tmp / "big.bin").write_bytes(b"x" * (1 << 20))
        assert str(info.value).startswith(f"--out {str(out)!r}: cannot write the output")
        assert "No space left on device" in str(info.value) and "nothing was written there" in str(info.value)
        assert isinstance(info.value.__cause__, OSError)
        assert os.listdir(full) == []
    finally:
        unmount()


def test_previous_output_is_put_back_when_the_final_rename_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_output(out, "first")
    real = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new output into place
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(store.os, "replace", failing_replace)
    with pytest.raises(OutputError, match="No space left on device"):
        write_output(out, "second")
    monkeypatch.setattr(store.os, "replace", real)
    assert (out / "data.txt").read_text() == "first" and sorted(os.listdir(tmp_path)) == ["out"]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temp_dirs_of_dead_processes_are_cleaned_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    live = subprocess.Popen(["sleep", "60"])
    try:
        host = store._host()
        names = {"dead_tmp": f".out.tmp-{host}-{_dead_pid()}-abcd1234",
                 "dead_old": f".out.old-{host}-{_dead_pid()}-x_y_z123",
                 "live_tmp": f".out.tmp-{host}-{live.pid}-abcd1234",
                 "other_host": f".out.tmp-otherbox-{_dead_pid()}-abcd1234",
                 "other_out": f".other.tmp-{host}-{_dead_pid()}-abcd1234",
                 "legacy": ".out.tmp-k2j3h4g5"}  # llmprep < 0.2 (no pid): left alone
        for name in names.values():
            (tmp_path / name).mkdir()
            (tmp_path / name / "half.arrow").write_text("x")
        write_output(out)
        left = set(os.listdir(tmp_path))
        assert names["dead_tmp"] not in left and names["dead_old"] not in left
        assert {names[k] for k in ("live_tmp", "other_host", "other_out", "legacy")} <= left
        assert clean_stale(out) == []  # nothing more to do
    finally:
        live.kill()
        live.wait()


KILLER = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {src!r})
from llmprep import store

out, when = Path(sys.argv[1]), sys.argv[2]
real = os.replace
calls = []

def replace(src, dst):
    calls.append(src)
    if when == "rename" and len(calls) == 2:  # the old output moved aside, the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)

store.os.replace = replace
with store.atomic_output_dir(out) as tmp:
    (tmp / "data.txt").write_text("second")
    if when == "writing":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["writing", "rename"])
def test_kill_9_leaves_nothing_that_loads_and_the_next_run_cleans_up(tmp_path, when):
    out = tmp_path / "out"
    write_output(out, "first")
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(src=SRC))
    done = subprocess.run([sys.executable, str(script), str(out), when], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    siblings = [n for n in os.listdir(tmp_path) if n.startswith(".out.")]
    assert siblings  # the dead run's temp dir (and the moved-aside output) are still there
    if when == "writing":  # the earlier output is untouched
        assert read_marker(out) is not None and (out / "data.txt").read_text() == "first"
    else:  # nothing at DIR at all: never a half-written output
        assert not out.exists()
    # the temp dir of the dead run never has a marker unless it was complete
    for name in siblings:
        marker = read_marker(tmp_path / name)
        assert marker is None or (tmp_path / name / "data.txt").read_text() == "second"
    write_output(out, "third")
    assert (out / "data.txt").read_text() == "third"
    assert sorted(os.listdir(tmp_path)) == ["killer.py", "out"]


def test_json_stays_valid_utf8_with_lone_surrogates(tmp_path):
    rows = {"source": "a.jsonl", "line": 1, "field": "messages[0].content", "reason": "x",
            "record": '{"content": "\\ud800"}', "data": {"k\udc80": "v\ud800", "ok": "你好"}}
    store.write_json(tmp_path / "r.json", rows)
    raw = (tmp_path / "r.json").read_bytes()
    raw.decode("utf-8")  # valid UTF-8
    back = json.loads(raw)
    assert back["data"] == {"k\udc80": "v\ud800", "ok": "你好"}  # the escapes round-trip
    assert "你好".encode() in raw  # readable text stays readable

"""The `vidclip` program ends as a normal exit does (threads still running waited for, atexit
handlers, the whole output, the exit code) less the interpreter's teardown, which it skips unless
VIDCLIP_TEARDOWN=1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vidclip
from conftest import SAMPLING, TINY, TINY_CONFIG

TINY_ARGS = ["--model", "vidclip-tiny", "--pretrained", "none", "--model-config", TINY_CONFIG]

# `vidclip <args>` through the console entry point, after registering an atexit handler (as logging
# or a coverage tool does before vidclip's exit) and keeping an object that only the interpreter's
# teardown frees; optionally with a non-daemon thread that finishes 1 s later.
PROGRAM = r"""
import atexit, os, sys, threading, time
marks = sys.argv[1]
class FreedAtTeardown:
    def __del__(self, open=open, path=os.path.join(marks, "teardown")):  # builtins may be gone by then
        open(path, "w").close()
kept = FreedAtTeardown()
atexit.register(lambda: open(os.path.join(marks, "atexit"), "w").close())
if sys.argv[2] == "thread":
    def late():
        time.sleep(1.0)
        open(os.path.join(marks, "thread"), "w").close()
    threading.Thread(target=late).start()
sys.argv = ["vidclip", *sys.argv[3:]]
from vidclip.cli.main import run
run()
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory, video_dir):
    db = tmp_path_factory.mktemp("exit") / "db"
    vidclip.open(db, model=TINY).ingest([video_dir], SAMPLING, progress=False)
    return db


def _program(tmp_path, env, *args, thread: bool = False, name: str = "marks"):
    marks = tmp_path / name
    marks.mkdir()
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(marks), "thread" if thread else "-", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    return done, sorted(p.name for p in marks.iterdir())


def test_a_command_ends_with_its_whole_output_and_atexit_handlers_but_no_teardown(tmp_path, cli_env, db):
    done, marks = _program(tmp_path, cli_env, "search", "a red square", "--db", str(db), "-k", "50", "--json",
                           *TINY_ARGS)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)  # the whole of it, through a pipe
    assert isinstance(hits, list) and len(hits) >= 2 and all("video_id" in h for h in hits)
    assert marks == ["atexit"]  # the handler ran; the object was never freed one by one


def test_an_error_keeps_its_exit_code_and_line(tmp_path, cli_env):
    done, marks = _program(tmp_path, cli_env, "status", "--db", str(tmp_path / "no_store"))
    assert done.returncode == 2 and done.stderr.startswith("vidclip: error:"), done.stderr
    assert marks == ["atexit"]


def test_a_running_thread_is_waited_for_and_the_switch_keeps_the_teardown(tmp_path, cli_env):
    missing = str(tmp_path / "no_store")
    done, marks = _program(tmp_path, cli_env, "status", "--db", missing, thread=True, name="thread")
    assert done.returncode == 2 and marks == ["atexit", "thread"]  # waited for, as a normal exit does
    done, marks = _program(tmp_path, {**cli_env, "VIDCLIP_TEARDOWN": "1"}, "status", "--db", missing, name="switch")
    assert done.returncode == 2 and marks == ["atexit", "teardown"]

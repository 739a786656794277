"""docs/cli.md cannot drift from `--help`: its synopsis is generated from the argparse definitions
(vidclip/cli/synopsis.py) and must equal what they give now; every option has help text."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from vidclip.cli.main import build_parser
from vidclip.cli.synopsis import BEGIN, END, block, commands

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_the_synopsis_in_docs_is_the_one_argparse_gives():
    text = DOCS.read_text()
    found = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.DOTALL)
    assert found, f"{DOCS} has no generated synopsis block"
    assert found.group(0) == block(), "docs/cli.md is stale: run 'python -m vidclip.cli.synopsis docs/cli.md'"


def test_every_command_and_option_is_in_the_synopsis_and_has_help():
    parser = build_parser()
    block_text = block()
    missing_help = []
    for prog, sub in commands(parser):
        assert f"\n{prog} " in f"\n{block_text}", f"{prog} is not in the synopsis"
        for action in sub._actions:
            if action.dest == "help" or action.help == argparse.SUPPRESS:  # internal (a benchmark's worker)
                continue
            if not action.help:
                missing_help.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
            if action.option_strings:  # a --x/--no-x pair shows one of its spellings
                assert any(flag in block_text for flag in action.option_strings), \
                    f"{prog} {action.option_strings} is not in the synopsis"
    assert not missing_help, f"options without help text: {missing_help}"


def test_each_command_is_explained_in_the_prose():
    """Beyond the synopsis, every top-level command is described in docs/cli.md's text."""
    text = DOCS.read_text()
    prose = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), "", text, flags=re.DOTALL)
    names = sorted({prog.split()[1] for prog, _ in commands(build_parser())})
    undocumented = [n for n in names if f"`{n}" not in prose and f"vidclip {n}" not in prose]
    assert not undocumented, f"commands docs/cli.md never describes: {undocumented}"

"""The `vidclip` command line: main (parser, errors, exit codes) and one module per command group."""

from vidclip.cli.main import build_parser, main, run

__all__ = ["build_parser", "main", "run"]

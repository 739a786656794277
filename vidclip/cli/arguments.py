"""What every `vidclip` subcommand shares: argument types that refuse a bad value with one line,
the model options, storage options, and opening the library a command names."""

from __future__ import annotations

import argparse


def _number(text: str, kind, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def fraction(text: str) -> float:
    value = _number(text, float, "a number")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {value}")
    return value


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --pretrained, --model-config, --device, --precision: which CLIP model (default: the store's)."""
    p.add_argument("--model", metavar="NAME", help="open_clip model name (default: the store's, or ViT-B-32 for a new store)")
    p.add_argument(
        "--pretrained", metavar="TAG|PATH|none",
        help="open_clip pretrained tag, a local checkpoint file, or 'none' for seeded random weights "
        "(default: the store's, or laion2b_s34b_b79k for a new store)",
    )
    p.add_argument("--model-config", metavar="JSON", help="open_clip model config JSON registering a custom architecture")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    from vidclip.config import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="image tower arithmetic: auto (bf16 where native: CUDA, or a CPU with AVX512-BF16/AMX, "
                        "about 5x faster there; else fp32), fp32, bf16")


def add_store_args(p: argparse.ArgumentParser, help: str = "the store: a directory, or s3:// gs:// az:// URI") -> None:
    """--db and how to reach it: every command that opens a store takes the same storage options."""
    p.add_argument("--db", required=True, metavar="DIR|URI", help=help)
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="object-store option for the store and for s3:// gs:// az:// inputs, e.g. aws_region=eu-west-1, "
                        "aws_endpoint=http://host:9000, allow_http=true (repeatable; keys as in Lance's docs)")
    p.add_argument("--storage-options-file", metavar="FILE",
                   help="KEY=VALUE lines (an env file) of storage options; --storage-option wins over it")


def storage_options(args) -> dict | None:
    """The storage options a command was given, checked against the keys its --db's object store takes."""
    from vidclip.objectstore import check_options, parse_pairs

    options = parse_pairs(getattr(args, "storage_option", []), getattr(args, "storage_options_file", None))
    check_options(getattr(args, "db", None), options)
    return options or None


def open_library(args, create: bool):
    """The library `--db` names, with the model and storage options the command was given."""
    import vidclip

    return vidclip.open(
        args.db,
        storage_options=storage_options(args),
        model=getattr(args, "model", None),
        pretrained=getattr(args, "pretrained", None),
        model_config=getattr(args, "model_config", None),
        device=getattr(args, "device", "auto"),
        precision=getattr(args, "precision", "auto"),
        create=create,
    )


def filter_pairs(items: list[str]) -> dict[str, str]:
    """--filter COLUMN=VALUE (repeatable) -> {column: value}; the store types and quotes the values
    (vidclip.store.filters: '1984' stays a string for a text column)."""
    from vidclip.errors import InputError

    where = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise InputError(f"--filter expects COLUMN=VALUE, got {item!r}")
        where[column] = value
    return where

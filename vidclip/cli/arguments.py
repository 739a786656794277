"""What every `vidclip` subcommand shares: argument types that refuse a bad value with one line,
the model options, storage options, and opening the library a command names."""

from __future__ import annotations

import argparse

from vidclip.errors import InputError


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
    """--model, --pretrained, --model-config, --device: which CLIP model (default: the store's)."""
    p.add_argument("--model", help="open_clip model name (default: the store's, or ViT-B-32 for a new store)")
    p.add_argument(
        "--pretrained",
        help="open_clip pretrained tag, a local checkpoint file, or 'none' for seeded random weights "
        "(default: the store's, or laion2b_s34b_b79k for a new store)",
    )
    p.add_argument("--model-config", help="open_clip model config JSON registering a custom architecture")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")


def storage_options(pairs: list[str]) -> dict | None:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--storage-option expects KEY=VALUE, got {pair!r}")
        options[key] = value
    return options or None


def open_library(args, create: bool):
    """The library `--db` names, with the model and storage options the command was given."""
    import vidclip

    return vidclip.open(
        args.db,
        storage_options=storage_options(getattr(args, "storage_option", [])),
        model=getattr(args, "model", None),
        pretrained=getattr(args, "pretrained", None),
        model_config=getattr(args, "model_config", None),
        device=getattr(args, "device", "auto"),
        create=create,
    )

"""Name -> aggregator class, and the one error type of the temporal package.

An aggregator registers itself with `@register("name")`; `temporal/__init__.py` imports
every aggregator module, so `names()` and `build()` see all of them once `temporal` is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

_AGGREGATORS: dict[str, type[nn.Module]] = {}


# What a module is fed: "normalized" = the stored, L2-normalised frame vectors (vidclip's own
# modules); "raw" = the image tower's unnormalised features, as CLIP4Clip feeds its seqTransf and
# seqLSTM (modules imported from CLIP4Clip checkpoints).
FRAME_INPUTS = ("normalized", "raw")


class TemporalError(ValueError):
    """A user mistake: all-padded clip, unknown module name, bad hparams, wrong checkpoint."""


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make an aggregator buildable by `name`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _AGGREGATORS:
            raise RuntimeError(f"temporal module {name!r} registered twice")
        cls.name = name
        _AGGREGATORS[name] = cls
        return cls

    return add


def names() -> list[str]:
    """Registered aggregator names, sorted."""
    return sorted(_AGGREGATORS)


def build(name: str, dim: int, **hparams) -> nn.Module:
    """A freshly initialised aggregator `name` over D=`dim` vectors; `hparams` override its defaults."""
    if name not in _AGGREGATORS:
        raise TemporalError(f"unknown temporal module {name!r}; choose one of {names()}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise TemporalError(f"temporal module dim must be a positive int, got {dim!r}")
    return _AGGREGATORS[name](dim, **hparams)


def wants_raw_frames(module: nn.Module) -> bool:
    """Whether `module` expects the image tower's unnormalised features rather than unit vectors."""
    return getattr(getattr(module, "hparams", None), "frames", "normalized") == "raw"


def check_frames_input(name: str, value) -> None:
    if value not in FRAME_INPUTS:
        raise TemporalError(f"{name} frames must be one of {FRAME_INPUTS}, got {value!r}")


def parse_hparams(config_cls: type, name: str, hparams: dict):
    """`config_cls(**hparams)`, with a one-line TemporalError naming the allowed keys on a typo."""
    allowed = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise TemporalError(f"temporal module {name!r} has no hparam(s) {unknown}; allowed: {allowed}")
    return config_cls(**hparams)

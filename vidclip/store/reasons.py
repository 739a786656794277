"""Failure reasons: a failed video's recorded error reduced to its kind, for counting by reason.

"not a readable video container (Invalid data found when processing input)" and the same error with
another FFmpeg detail are one reason; so are timeouts of different lengths."""

from __future__ import annotations

import re

_DETAIL = re.compile(r"\s*\([^()]*\)")  # "(Invalid data ...)", "(killed)", "(found: audio)"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def reason_of(error: str | None) -> str:
    """The kind of a recorded error: details in parentheses dropped, text after the first ': ' dropped,
    numbers replaced by N.  "decoder timed out: no progress for 30s (killed)" -> "decoder timed out"."""
    if not error:
        return "unknown"
    text = _DETAIL.sub("", " ".join(error.split()))
    text = text.split(": ", 1)[0]
    return _NUMBER.sub("N", text).strip(" .,;") or "unknown"

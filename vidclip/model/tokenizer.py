"""The model's own tokenizer (open_clip's `get_tokenizer`), loaded with one-line errors, and how
many tokens a text becomes.

Every open_clip tokenizer cuts a text to the model's context length in tokens (start and end
tokens included): CLIP's byte-pair tokenizer keeps the first tokens and ends with its end token,
a Hugging Face tokenizer truncates with `truncation=True`.  `count` says how many tokens a text
would have before that cut, so a caller can tell the user what the model did not read.
Texts are passed as given: CLIP's own tokenizer lowercases (its vocabulary is lowercase);
Hugging Face tokenizers keep case and script.
"""

from __future__ import annotations

from typing import Callable

from vidclip.errors import ModelError


def load(name: str) -> Callable:
    """open_clip's tokenizer for model `name` (its config registered already)."""
    import open_clip

    try:
        return open_clip.get_tokenizer(name)
    except Exception as e:
        text = " ".join(str(e).split())[:300] or type(e).__name__
        raise ModelError(f"cannot load the tokenizer of model {name}: {type(e).__name__}: {text}") from None


def context_length(tokenizer) -> int:
    """Tokens the model reads per text, start and end tokens included."""
    return int(tokenizer.context_length)


def count(tokenizer, text: str) -> int | None:
    """Tokens `text` becomes before the cut to the context length, start and end tokens included;
    None for a tokenizer this does not know."""
    from open_clip.tokenizer import HFTokenizer, SigLipTokenizer, SimpleTokenizer, basic_clean, canonicalize_text

    if isinstance(tokenizer, SimpleTokenizer):
        return len(tokenizer.encode(text)) + 2  # start + text + end, as its __call__ builds them
    if isinstance(tokenizer, HFTokenizer):
        ids = tokenizer.tokenizer(tokenizer.clean_fn(text))["input_ids"]
        return len(ids) + (1 if tokenizer.tokenizer_mode == "clips" else 0)  # "clips" appends a class token
    if isinstance(tokenizer, SigLipTokenizer):
        return len(tokenizer.tokenizer(canonicalize_text(basic_clean(text)))["input_ids"])
    return None


__all__ = ["context_length", "count", "load"]

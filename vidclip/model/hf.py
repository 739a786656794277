"""Hugging Face parts of an open_clip model: a text tower (`text_cfg.hf_model_name`) and a tokenizer
(`text_cfg.hf_tokenizer_name`), each a local folder or a hub name.

open_clip builds an HF text tower from its config alone (`AutoConfig.from_pretrained` then
`AutoModel.from_config`) when vidclip asks for no tower weights, which it always does: the CLIP
checkpoint (or the seeded random init) supplies every weight.  So a local folder needs only its
`config.json`, and nothing is fetched when both names are local folders.

A hub name is resolved by transformers, which retries an unreachable hub for ~25 s per file;
`check` probes the hub once first and, offline, fails in one line that says how to use a local
copy instead.
"""

from __future__ import annotations

import logging
import os

from vidclip.errors import ModelError

log = logging.getLogger("vidclip")

# config key -> the file transformers reads first for it
_FIRST_FILE = {"hf_model_name": "config.json", "hf_tokenizer_name": "tokenizer_config.json"}
INSTALL_HINT = 'pip install "vidclip[hf]"'


def hf_names(text_cfg: dict) -> dict[str, str]:
    """{"hf_model_name": ..., "hf_tokenizer_name": ...}: the Hugging Face sources a text config names."""
    return {key: str(text_cfg[key]) for key in _FIRST_FILE if text_cfg.get(key)}


def is_local(spec: str) -> bool:
    """A local folder (or meant as one: an absolute, ~ or ./ path), as opposed to a hub name."""
    return os.path.isdir(os.path.expanduser(spec)) or spec.startswith(("/", "~", "./", "../")) or os.path.isabs(spec)


def resolve_paths(text_cfg: dict, base: str) -> dict:
    """`text_cfg` with relative local folders made absolute against `base` (the config JSON's folder),
    so that a store reopened from another working directory finds them."""
    out = dict(text_cfg)
    for key, spec in hf_names(text_cfg).items():
        if not os.path.isabs(os.path.expanduser(spec)):
            candidate = os.path.join(base, os.path.expanduser(spec))
            if os.path.isdir(candidate):
                out[key] = candidate
        else:
            out[key] = os.path.expanduser(spec)
    return out


def check(name: str, text_cfg: dict) -> None:
    """Refuse, in one line, an HF text tower or tokenizer that cannot be loaded here: transformers
    missing, a local folder missing, or a hub name with the hub unreachable and no cached copy."""
    names = hf_names(text_cfg)
    if not names:
        return
    import open_clip.hf_model

    if open_clip.hf_model.transformers is None:
        keys = " and ".join(f"text_cfg.{k}" for k in names)
        raise ModelError(f"model {name} has a Hugging Face text tower or tokenizer ({keys}), which needs "
                         f"transformers: {INSTALL_HINT}")
    for key, spec in names.items():
        if is_local(spec):
            folder = os.path.expanduser(spec)
            if not os.path.isdir(folder):
                raise ModelError(f"model {name}: text_cfg.{key} {spec!r} is not a folder")
            if key == "hf_model_name" and not os.path.isfile(os.path.join(folder, "config.json")):
                raise ModelError(f"model {name}: text_cfg.{key} {spec!r} has no config.json "
                                 f"(save the text model with save_pretrained)")
            continue
        _check_hub(name, key, spec)


def _check_hub(name: str, key: str, repo_id: str) -> None:
    from vidclip.model.weights import probe_hub

    reason = probe_hub(repo_id, _FIRST_FILE[key])
    if reason is None:
        return  # the hub answers: transformers downloads (or revalidates) it
    reason = " ".join(reason.split())[:160]
    if _is_cached(repo_id, key):
        if "HF_HUB_OFFLINE" not in reason:  # transformers will ask the hub again, retrying, before the cache
            log.warning("the Hugging Face hub cannot be reached (%s): %s comes from the HF cache; set HF_HUB_OFFLINE=1 "
                        "to skip transformers' retries", reason, repo_id)
        return
    raise ModelError(
        f"model {name}: text_cfg.{key} {repo_id!r} is a Hugging Face hub name and the hub cannot be reached "
        f"({reason}): download the folder elsewhere (hf download {repo_id} --local-dir DIR), copy it here, "
        f"and set text_cfg.hf_model_name / hf_tokenizer_name to DIR in a model config JSON passed with --model-config"
    )


def _is_cached(repo_id: str, key: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    files = (_FIRST_FILE[key], "tokenizer.json") if key == "hf_tokenizer_name" else (_FIRST_FILE[key],)
    try:
        return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in files)
    except Exception:  # a malformed repo id
        return False


__all__ = ["INSTALL_HINT", "check", "hf_names", "is_local", "resolve_paths"]

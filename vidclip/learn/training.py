"""Training a temporal module on stored frame vectors and frozen CLIP text vectors (CLIP4Clip recipe).

    config = TrainConfig(epochs=5, lr=1e-4, seed=0)
    result = fit(examples, config, clip_model=encoder.model)       # vectors only: any Examples
    report = train_store(lib, matched, out_dir, config)            # `vidclip train`: store -> checkpoint

One step: a batch of captions, their units' frames (B, T, D) + mask -> module -> (B, D); the
symmetric InfoNCE of `temporal.info_nce` against the captions' (B, D) text vectors, with a
learnable temperature that starts at CLIP's logit scale and is clamped to 100 as CLIP does.
AdamW (no decay on biases, LayerNorm and the temperature), linear warm-up then cosine decay.
The validation split is by video (seeded), and the best epoch (validation t2v R@1; validation loss
when the split is tiny) is the one kept.  Same seed, same data -> identical weights.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import temporal
from vidclip.learn.captions import Matched
from vidclip.errors import InputError, StoreError
from vidclip.learn.evaluation import Examples, encode_captions, gather, score

log = logging.getLogger("vidclip")

MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(logit_scale) to 100
DEFAULT_LOGIT_SCALE = 1 / 0.07  # CLIP's initial temperature, when no CLIP model is given
MIN_UNITS_FOR_RECALL = 8  # below this many validation units, R@1 is too coarse: select by validation loss
SELECT_BY = ("auto", "r1", "loss")


@dataclass(frozen=True)
class TrainConfig:
    temporal: str = "seq_transformer"
    hparams: tuple[tuple[str, object], ...] = ()  # overrides for temporal.build, e.g. (("layers", 2),)
    epochs: int = 5
    lr: float = 1e-4  # CLIP4Clip's rate for the new (non-CLIP) modules
    batch_size: int = 128
    weight_decay: float = 0.2
    warmup: float = 0.1  # fraction of steps with a linear warm-up
    val_fraction: float = 0.1  # share of videos held out
    max_frames: int = 12
    seed: int = 0
    init_from_clip: bool = True
    select_by: str = "auto"  # "r1": validation t2v R@1; "loss": validation loss; "auto": r1 unless tiny

    def __post_init__(self) -> None:
        if self.temporal not in temporal.names():
            raise InputError(f"--temporal must be one of {temporal.names()}, got {self.temporal!r}")
        for name in ("epochs", "batch_size", "max_frames"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if not 0 <= self.warmup < 1 or self.weight_decay < 0:
            raise InputError("warmup must lie in [0, 1) and weight_decay be >= 0")
        if self.select_by not in SELECT_BY:
            raise InputError(f"select_by must be one of {SELECT_BY}, got {self.select_by!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hparams"] = dict(self.hparams)
        return d


@dataclass
class TrainResult:
    module: torch.nn.Module  # the best epoch's weights, eval mode
    history: list[dict]  # one entry per epoch (0 = before training, when there is a validation split)
    best_epoch: int
    select_by: str  # what chose best_epoch: "val_r1", "val_loss" or "train_loss"
    logit_scale: float  # the learned temperature multiplier at the best epoch
    init_from_clip: bool
    split: dict = field(default_factory=dict)  # counts of train/val videos, units, captions


# -- data split -------------------------------------------------------------------------------------
def split_by_video(examples: Examples, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train units, val units): a seeded share of the *videos* is held out, all their units with them."""
    videos = sorted(set(examples.video_of))
    n_val = int(round(val_fraction * len(videos)))
    if val_fraction > 0 and len(videos) >= 2:
        n_val = min(max(1, n_val), len(videos) - 1)
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(len(videos))
    held = {videos[i] for i in order[:n_val]}
    is_val = np.array([v in held for v in examples.video_of], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# -- the loop ---------------------------------------------------------------------------------------
def build_module(config: TrainConfig, dim: int, clip_model=None) -> tuple[torch.nn.Module, bool]:
    """A fresh module seeded by config.seed; seq_transformer starts from CLIP's text tower when it can."""
    torch.manual_seed(config.seed)
    hparams = dict(config.hparams)
    if config.init_from_clip and config.temporal == "seq_transformer" and clip_model is not None:
        hparams = {**clip_text_hparams(clip_model, dim), **hparams}  # explicit hparams win
    module = temporal.build(config.temporal, dim, **hparams)
    limit = getattr(getattr(module, "hparams", None), "max_positions", None)
    if limit is not None and limit < config.max_frames:
        raise InputError(f"{config.temporal} has {limit} positions but units hold up to {config.max_frames} frames")
    applied = False
    if config.init_from_clip and config.temporal == "seq_transformer":
        if clip_model is None:
            log.info("no CLIP model given: seq_transformer starts from random init")
        else:
            applied = temporal.init_from_clip(module, clip_model)
            if not applied:
                log.info("seq_transformer starts from random init (CLIP text tower does not fit, see warning above)")
    return module, applied


def clip_text_hparams(clip_model, dim: int) -> dict:
    """Heads and activation of CLIP's text blocks, so seq_transformer can take their weights
    (CLIP4Clip builds seqTransf with CLIP's own head count).  Empty when the widths differ."""
    for tower in (clip_model, getattr(clip_model, "text", None)):
        blocks = getattr(getattr(tower, "transformer", None), "resblocks", None)
        if blocks is None or not len(blocks):
            continue
        block = blocks[0]
        heads = getattr(getattr(block, "attn", None), "num_heads", None)
        width = getattr(getattr(block, "ln_1", None), "normalized_shape", (None,))[0]
        if heads is None or width != dim:
            return {}
        act = type(getattr(getattr(block, "mlp", None), "gelu", None)).__name__
        return {"heads": int(heads), **({"activation": "quick_gelu"} if act == "QuickGELU" else {"activation": "gelu"} if act == "GELU" else {})}
    return {}


def fit(
    examples: Examples,
    config: TrainConfig,
    clip_model=None,
    logit_scale: float | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> TrainResult:
    """Train config.temporal on `examples` and return the best epoch's module.

    clip_model: open_clip model whose text tower initialises seq_transformer (optional).
    logit_scale: the initial temperature multiplier (CLIP's exp(logit_scale)); default 1/0.07.
    device: where the module trains (examples stay on the CPU; batches are moved).  Bit-for-bit
    reproducibility is promised on the CPU.
    """
    if examples.n_captions < 2:
        raise InputError(f"need at least 2 captions to train (a contrastive loss needs negatives), got {examples.n_captions}")
    dim = int(examples.frames.shape[-1])
    module, applied = build_module(config, dim, clip_model)
    device = torch.device(device)
    module.to(device)
    train_units, val_units = split_by_video(examples, config.val_fraction, config.seed)
    train, val = examples.subset(train_units), examples.subset(val_units)
    if train.n_captions < 2:
        raise InputError(f"the training split holds {train.n_captions} caption(s); lower --val-fraction or add captions")
    select_by = _selection(config.select_by, val)
    split = {
        "train": {"videos": len(set(train.video_of)), "units": train.n_units, "captions": train.n_captions},
        "val": {"videos": len(set(val.video_of)), "units": val.n_units, "captions": val.n_captions},
    }
    log.info("training %s on %d caption(s) of %d video(s); validating on %d caption(s) of %d video(s); best by %s",
             config.temporal, train.n_captions, split["train"]["videos"], val.n_captions, split["val"]["videos"], select_by)

    start = min(float(logit_scale if logit_scale is not None else DEFAULT_LOGIT_SCALE), MAX_LOGIT_SCALE)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(start), device=device))  # ()
    optimizer = torch.optim.AdamW(_param_groups(module, log_scale, config.weight_decay), lr=config.lr)
    steps_per_epoch = _n_batches(train.n_captions, config.batch_size)
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total, config.warmup))
    order_gen = torch.Generator().manual_seed(config.seed)

    history: list[dict] = []
    best = None  # (key, epoch, state, scale)
    if val.n_captions:
        entry = {"epoch": 0, "train_loss": None, "val": _validate(module, val, log_scale)}
        history.append(entry)
        best = _consider(best, select_by, entry, module, log_scale)
    bar = _progress_bar(total, progress)
    for epoch in range(1, config.epochs + 1):
        module.train()
        order = torch.randperm(train.n_captions, generator=order_gen)  # (N,)
        losses = []
        for batch in _batches(order, config.batch_size):
            units = train.unit_of[batch]  # (B,)
            video = module(train.frames[units].to(device), train.mask[units].to(device))  # (B, D)
            loss = temporal.info_nce(video, train.text[batch].to(device), log_scale.exp())  # ()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                log_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))
            losses.append(loss.item())
            bar.update(1)
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)), "logit_scale": float(log_scale.detach().exp())}
        if val.n_captions:
            entry["val"] = _validate(module, val, log_scale)
        history.append(entry)
        best = _consider(best, select_by, entry, module, log_scale)
        bar.set_postfix_str(f"loss {entry['train_loss']:.4f}", refresh=False)
        log.info("epoch %d/%d: %s%s", epoch, config.epochs, _describe(entry), "  (best)" if best[1] == epoch else "")
    bar.close()
    _, best_epoch, state, scale = best
    module.load_state_dict(state)
    return TrainResult(
        module=module.cpu().eval(), history=history, best_epoch=best_epoch, select_by=select_by,
        logit_scale=scale, init_from_clip=applied, split=split,
    )


def _selection(requested: str, val: Examples) -> str:
    if val.n_units < 2:
        return "train_loss"  # no usable validation split
    if requested == "r1" or (requested == "auto" and val.n_units >= MIN_UNITS_FOR_RECALL):
        return "val_r1"
    return "val_loss"


def _consider(best, select_by: str, entry: dict, module, log_scale):
    """Keep the better of `best` and this epoch; earlier epochs win ties."""
    if select_by == "train_loss":
        if entry["train_loss"] is None:
            return best
        key = (-entry["train_loss"],)
    elif select_by == "val_r1":
        key = (entry["val"]["t2v"]["R1"], -entry["val"]["loss"])
    else:
        key = (-entry["val"]["loss"],)
    if best is None or key > best[0]:
        return (key, entry["epoch"], copy.deepcopy(module.state_dict()), float(log_scale.detach().exp()))
    return best


def _validate(module, val: Examples, log_scale) -> dict:
    """Validation retrieval metrics and InfoNCE loss (in fixed batches of 128 captions)."""
    metrics = score(module, val)
    module.eval()
    losses, weights = [], []
    with torch.no_grad():
        for batch in _batches(torch.arange(val.n_captions), 128):
            units = val.unit_of[batch]
            device = log_scale.device
            video = module(val.frames[units].to(device), val.mask[units].to(device))  # (B, D)
            losses.append(float(temporal.info_nce(video, val.text[batch].to(device), log_scale.exp())))
            weights.append(len(batch))
    module.train()
    return {"t2v": metrics["t2v"], "v2t": metrics["v2t"], "loss": float(np.average(losses, weights=weights)) if losses else 0.0}


def _describe(entry: dict) -> str:
    text = f"train loss {entry['train_loss']:.4f}"
    if "val" in entry:
        v = entry["val"]
        text += f", val loss {v['loss']:.4f}, val t2v R@1 {v['t2v']['R1']:.1f} R@5 {v['t2v']['R5']:.1f}"
    return text


def _n_batches(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or full == 0 else 0)


def _batches(order: torch.Tensor, batch_size: int):
    """Consecutive slices; a trailing single caption joins no batch (InfoNCE needs >= 2)."""
    n = len(order)
    for lo in range(0, n, batch_size):
        batch = order[lo : lo + batch_size]
        if len(batch) >= 2 or n == 1:
            yield batch


def _param_groups(module: torch.nn.Module, log_scale, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (CLIP4Clip: none on biases and LayerNorm), none on the temperature."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        (decay if p.dim() >= 2 and "ln_" not in name else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay + [log_scale], "weight_decay": 0.0},
    ]


def _warmup_cosine(total: int, warmup: float):
    warm = max(1, int(total * warmup)) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return _NoBar()  # logging reports every epoch anyway
    from tqdm import tqdm

    return tqdm(total=total, desc="train", unit="step", file=sys.stderr, leave=False, dynamic_ncols=True)


# -- the train command ------------------------------------------------------------------------------
def train_store(
    lib, matched: Matched, out_dir: str | os.PathLike, config: TrainConfig, progress: bool = True, device: str = "cpu"
) -> dict:
    """Train on a store's frame vectors and captions, save the best module + metrics.json in out_dir."""
    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    store = lib.store
    model = store.meta.get("model")
    if not model:
        raise StoreError(f"{store.uri}: the store is empty; ingest videos first")
    encoder = lib.encoder  # the store's own CLIP model, checked against its recorded identity
    text = encode_captions(encoder, matched.pairs)  # (N, D), frozen: computed once
    examples = gather(store, matched.pairs, text, config.max_frames)
    clip_scale = float(encoder.model.logit_scale.detach().exp()) if hasattr(encoder.model, "logit_scale") else None
    result = fit(examples, config, clip_model=encoder.model, logit_scale=clip_scale, progress=progress, device=device)
    temporal.save(result.module, out, clip_model=model["name"])
    report = {
        "checkpoint": str(out.resolve()),
        "temporal": config.temporal,
        "fingerprint": temporal.fingerprint(out),
        "best_epoch": result.best_epoch,
        "selected_by": result.select_by,
        "best": next((h for h in result.history if h["epoch"] == result.best_epoch), {}),
        "epochs": result.history,
        "seed": config.seed,
        "config": config.to_dict(),
        "init_from_clip": result.init_from_clip,
        "logit_scale": {"initial": clip_scale, "learned": result.logit_scale},
        "clip": {"name": model["name"], "weights_sha256": model.get("weights_sha256"), "dim": int(model["dim"])},
        "data": {"captions": examples.n_captions, "units": examples.n_units, "skipped": matched.skipped, **result.split},
        "seconds": round(time.perf_counter() - started, 3),
    }
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "metrics.json")
    log.info("saved %s (best epoch %d by %s) to %s", config.temporal, result.best_epoch, result.select_by, out)
    return report

"""Tiny real model families built at test time, offline: a tokenizer trained with `tokenizers` on
Chinese, Latin and Cyrillic lines, Hugging Face text towers (XLM-R and BERT) saved with
save_pretrained, and open_clip model config JSONs that point at those folders.

    families = build(folder)  # -> Families: the folders and the config paths
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

EN = (["a dog", "a cat", "a child", "two people", "a red car", "a bird", "an old man", "a girl"],
      ["catches a frisbee", "runs", "swims", "plays", "sleeps", "jumps", "eats lunch", "walks"],
      ["on the beach", "in the park", "at night", "in the city", "in a forest", "near the sea", "in the snow"])
ZH = (["一只狗", "一只猫", "一个孩子", "两个人", "一辆红色的汽车", "一只鸟", "一位老人", "一个女孩"],
      ["接飞盘", "在跑步", "在游泳", "在玩耍", "在睡觉", "在跳", "在吃午饭", "在散步"],
      ["在海滩上", "在公园里", "在夜里", "在城市里", "在森林里", "在海边", "在雪地里"])
RU = (["собака", "кошка", "ребёнок", "два человека", "красная машина", "птица", "старик", "девочка"],
      ["ловит фрисби", "бежит", "плавает", "играет", "спит", "прыгает", "обедает", "гуляет"],
      ["на пляже", "в парке", "ночью", "в городе", "в лесу", "у моря", "в снегу"])
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's order: pad is 1
CONTEXT = 32
# a constant the saved HF weights are filled with: a tower that took them would show it
FOLDER_WEIGHT = 0.125


def corpus() -> list[str]:
    lines = []
    for (i, s), (j, v) in itertools.product(enumerate(EN[0]), enumerate(EN[1])):
        p = (i + j) % len(EN[2])
        lines += [f"{s} {v} {EN[2][p]}", f"{ZH[0][i]}{ZH[2][p]}{ZH[1][j]}", f"{RU[0][i]} {RU[1][j]} {RU[2][p]}"]
        lines += [f"{ZH[0][i]}{ZH[1][j]}", f"{s.capitalize()} {v}.", f"{RU[0][i].capitalize()} {RU[1][j].upper()}"]
    return lines


def train_tokenizer(folder: Path) -> Path:
    """A Unigram tokenizer (XLM-R's kind: Metaspace, <s> A </s>) wrapped as PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus(), trainers.UnigramTrainer(vocab_size=400, special_tokens=SPECIALS, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                   model_max_length=CONTEXT)
    fast.save_pretrained(folder)
    return folder


def save_text_model(folder: Path, kind: str, vocab_size: int) -> Path:
    """A 2-layer, 32-wide XLM-R ("xlm-roberta") or BERT ("bert") model, its weights set to FOLDER_WEIGHT."""
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    common = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if kind == "xlm-roberta":
        model = XLMRobertaModel(XLMRobertaConfig(max_position_embeddings=CONTEXT + 2, **common))
    else:
        model = BertModel(BertConfig(max_position_embeddings=CONTEXT, **common))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(FOLDER_WEIGHT)
    model.save_pretrained(folder)
    return folder


VISION = {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16}


@dataclass(frozen=True)
class Families:
    tokenizer: Path
    xlmr: Path  # HF text model folders
    bert: Path
    xlmr_config: Path  # open_clip model config JSONs
    bert_config: Path
    siglip_config: Path


def build(root: Path) -> Families:
    from transformers import AutoTokenizer

    tok = train_tokenizer(root / "tokenizer")
    vocab = len(AutoTokenizer.from_pretrained(tok))
    xlmr = save_text_model(root / "xlmr", "xlm-roberta", vocab)
    bert = save_text_model(root / "bert", "bert", vocab)
    configs = root / "configs"
    configs.mkdir()

    def hf_config(name: str, text_folder: Path) -> Path:
        cfg = {"embed_dim": 32, "vision_cfg": VISION,
               "text_cfg": {"hf_model_name": str(text_folder), "hf_tokenizer_name": str(tok), "hf_proj_type": "mlp",
                            "hf_pooler_type": "mean_pooler", "context_length": CONTEXT}}
        path = configs / f"{name}.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    # SigLIP-style: a logit bias (sigmoid loss), a bidirectional text transformer pooled at the last
    # token with an HF tokenizer, and SigLIP's preprocessing (mean/std 0.5, squash) with bilinear resize
    siglip = configs / "vidclip-siglip.json"
    siglip.write_text(json.dumps({
        "embed_dim": 32, "init_logit_bias": -10, "init_logit_scale": math.log(10), "custom_text": True,
        "vision_cfg": VISION,
        "text_cfg": {"context_length": CONTEXT, "vocab_size": vocab, "hf_tokenizer_name": "../tokenizer",
                     "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 32, "heads": 2, "layers": 2,
                     "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "pad_id": 1},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear",
                           "resize_mode": "squash"},
    }, indent=2))
    return Families(tok, xlmr, bert, hf_config("vidclip-xlmr", xlmr), hf_config("vidclip-bert", bert), siglip)

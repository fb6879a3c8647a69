"""Train an NLLB-style tokenizer offline (Metaspace BPE + language-code special tokens).

The real NLLB-200 SentencePiece model cannot be downloaded here, so tests and the mini-world train a small
BPE with `tokenizers` and wrap it in the stock `NllbTokenizer`: every code path downstream is the NLLB one.
"""

import json
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import NllbTokenizer

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def train_nllb_tokenizer(texts: Iterable[str], lang_codes: list[str], vocab_size: int = 2000,
                         isolate_punctuation: bool = False) -> NllbTokenizer:
    """BPE on `texts`; `lang_codes` (e.g. ["eng_Latn", "swh_Latn"]) become special tokens after the vocabulary.

    `isolate_punctuation=True` learns no merge across punctuation ("7." stays "▁7" + "."): NllbTokenizer's own
    Metaspace pre-tokenizer still sees "▁7." as one piece, but BPE has no merge to join them.
    """
    if not lang_codes:
        raise ValueError("lang_codes is empty: give at least one NLLB language code such as 'eng_Latn'")
    bpe = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    if isolate_punctuation:
        bpe.pre_tokenizer = pre_tokenizers.Sequence([bpe.pre_tokenizer, pre_tokenizers.Split(Regex(r"[.,?!:;'\"]"), behavior="isolated")])
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    model_json = json.loads(bpe.to_str())["model"]
    vocab = model_json["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    return NllbTokenizer(vocab=vocab, merges=merges, additional_special_tokens=list(lang_codes), src_lang=lang_codes[0])

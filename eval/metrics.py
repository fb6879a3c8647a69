"""Scoring with the field's libraries: sacrebleu (BLEU, chrF++), multilingual ROUGE-L, optional COMET, and
MGSM-style answer extraction.

Each scorer returns `(value, note)`-style information the runner stores next to the score, so a reader of
scores.json sees e.g. which BLEU tokenizer was used or why COMET is missing.
"""

import importlib.util
import math
import os
import re
import warnings
from functools import lru_cache

import sacrebleu
from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS
from sacrebleu.utils import SACREBLEU_DIR

from . import languages

# ---------------------------------------------------------------- answers (MGSM / MSVAMP convention)

# A number: optional sign, digits with optional thousands separators, optional decimals.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> float | None:
    """The last number in `text` (thousands commas removed), or None when there is none.

    The MGSM convention: chain-of-thought output ends with the answer, so the last number is taken.
    """
    matches = _NUMBER.findall(text or "")
    if not matches:
        return None
    # "18." at the end of a sentence is matched without the dot; a trailing comma (e.g. "5, and") likewise.
    number = matches[-1].rstrip(",").replace(",", "")
    try:
        return float(number)
    except ValueError:  # e.g. a lone "-"
        return None


def answers_match(prediction: str, reference: str | float) -> bool:
    """Compare the extracted answer with the reference as numbers (so "18" == "18.0")."""
    predicted = extract_answer(prediction)
    expected = extract_answer(str(reference))
    if predicted is None or expected is None:
        return False
    return math.isclose(predicted, expected, rel_tol=0, abs_tol=1e-6)


def accuracy(predictions: list[str], references: list[str | float]) -> float:
    """Percentage of exact numeric matches (0-100, like the papers report)."""
    if not predictions:
        return float("nan")
    return 100.0 * sum(answers_match(p, r) for p, r in zip(predictions, references, strict=True)) / len(predictions)


# ---------------------------------------------------------------- BLEU / chrF++


def flores200_spm_available() -> bool:
    """True when sacrebleu's FLORES-200 SentencePiece model is already on disk (we never download it)."""
    name = os.path.basename(SPM_MODELS["flores200"]["url"])
    return os.path.exists(os.path.join(SACREBLEU_DIR, "models", name))


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def bleu_tokenizer(tgt_lang: str) -> str:
    """The sacrebleu tokenizer for references in `tgt_lang` (NLLB code).

    spBLEU (`flores200`) is the FLORES convention; without its SentencePiece model, the language's own
    fallback from the language table (`zh`, `char`, `ja-mecab` when MeCab + ipadic are installed, else `char`).
    """
    if flores200_spm_available():
        return "flores200"
    tokenizer = languages.BY_NLLB[tgt_lang].bleu_tokenizer
    if tokenizer == "ja-mecab" and not (_module_available("MeCab") and _module_available("ipadic")):
        tokenizer = "char"
    return tokenizer


def bleu(hypotheses: list[str], references: list[str], tgt_lang: str) -> tuple[float, str]:
    """Corpus BLEU and its sacrebleu signature (which names the tokenizer)."""
    metric = sacrebleu.BLEU(tokenize=bleu_tokenizer(tgt_lang))
    score = metric.corpus_score(hypotheses, [references])
    return score.score, str(metric.get_signature())


def chrf_pp(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """Corpus chrF++ (chrF with word bigrams, `word_order=2`) and its signature."""
    metric = sacrebleu.CHRF(word_order=2)
    score = metric.corpus_score(hypotheses, [references])
    return score.score, str(metric.get_signature())


# ---------------------------------------------------------------- COMET (optional)


def comet(sources, hypotheses, references, model_name: str, batch_size: int = 16) -> tuple[float | None, str]:
    """System-level COMET, or (None, reason) when unbabel-comet or its model is not available offline."""
    if not _module_available("comet"):
        return None, "COMET skipped: unbabel-comet is not installed (pip install unbabel-comet)"
    from huggingface_hub import snapshot_download

    try:  # never download during an evaluation: use the model only when it is already local
        path = model_name if os.path.isdir(model_name) else snapshot_download(model_name, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any failure here means "not available offline"
        return None, f"COMET skipped: model {model_name!r} is not available offline ({type(error).__name__})"
    from comet import load_from_checkpoint

    model = load_from_checkpoint(os.path.join(path, "checkpoints", "model.ckpt"))
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references, strict=True)]
    output = model.predict(data, batch_size=batch_size, gpus=0 if not _cuda() else 1, progress_bar=False)
    return 100.0 * output.system_score, f"COMET model {model_name}"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------- ROUGE-L (XL-Sum)

# The XL-Sum authors' scorer (google rouge-score + language-aware segmentation/stemming) is published on
# PyPI as `multilingual-rouge`; we use it, working around three packaging gaps that break it offline:
# the Japanese segmenter wants the full UniDic download (we give it unidic-lite instead), NLTK Snowball
# stemmers are created with `ignore_stopwords=True` which needs the NLTK stopwords download (we create them
# without), and the wheel lacks the Bengali stemmer's rules file (Bengali is scored unstemmed).
_UNSTEMMED = {"bengali"}


@lru_cache(maxsize=None)
def _rouge_scorer(lang: str | None):
    if not _module_available("multilingual_rouge"):
        raise ImportError("XL-Sum ROUGE-L needs the XL-Sum authors' scorer: pip install multilingual-rouge unidic-lite")
    from multilingual_rouge import rouge_scorer
    from multilingual_rouge.stemmers import LANG2STEMMER
    from nltk.stem import SnowballStemmer

    kwargs = {}
    if lang == "japanese":
        import fugashi
        import unidic_lite

        tagger = fugashi.GenericTagger(f"-r {unidic_lite.DICDIR}/mecabrc -d {unidic_lite.DICDIR} -Owakati")
        kwargs["callable_tokenizer"] = lambda text: tagger.parse(text).split()
    elif lang is not None:
        kwargs["lang"] = lang  # selects the Thai (pythainlp) / Chinese (jieba) segmenters
    stem = lang in LANG2STEMMER and lang not in _UNSTEMMED
    if stem and lang in SnowballStemmer.languages:
        kwargs["callable_stemmer"] = SnowballStemmer(lang, ignore_stopwords=False).stem
    with warnings.catch_warnings():  # "unknown stemmer language" for languages without one: expected
        warnings.simplefilter("ignore")
        return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem, **kwargs)


def rouge_l(predictions: list[str], references: list[str], lang: str) -> float:
    """Mean ROUGE-L F1 (0-100) with the XL-Sum language-aware tokenisation for `lang` (NLLB code)."""
    scorer = _rouge_scorer(languages.BY_NLLB[lang].rouge)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]
    return 100.0 * sum(scores) / len(scores) if scores else float("nan")

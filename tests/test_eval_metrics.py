"""Scoring conventions: MGSM answer extraction, sacrebleu BLEU/chrF++, multilingual ROUGE-L, COMET skipping."""

import pytest
import sacrebleu

from eval import metrics


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1,234", 1234.0),
        ("$5.50", 5.5),
        ("-3", -3.0),
        ("The answer is 18.", 18.0),
        ("She pays $1,250,000 in total, so the answer is 1,250,000.", 1250000.0),
        ("First 3 eggs, then 4, finally 9", 9.0),  # the last number wins
        ("Jibu ni 42", 42.0),
        ("no number at all", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert metrics.extract_answer(text) == expected


def test_answers_compare_as_numbers():
    assert metrics.answers_match("so the total is 8", "8.0")  # MSVAMP references are floats
    assert metrics.answers_match("The answer is 1,234.", "1234")
    assert not metrics.answers_match("The answer is 18.", "17")
    assert not metrics.answers_match("I do not know", "3")
    assert metrics.accuracy(["18", "The answer is 3", "none"], ["18", "3", "5"]) == pytest.approx(200 / 3)


HYPS = ["The cat sat on the mat.", "He reads a book every day."]
REFS = ["The cat is sitting on the mat.", "Every day he reads a book."]


def test_bleu_and_chrf_equal_sacrebleu():
    value, signature = metrics.bleu(HYPS, REFS, "eng_Latn")
    expected = sacrebleu.corpus_bleu(HYPS, [REFS], tokenize=metrics.bleu_tokenizer("eng_Latn"))
    assert value == pytest.approx(expected.score) and 0 < value < 100
    assert "tok:" in signature  # the tokenizer used is reported with the score
    value, signature = metrics.chrf_pp(HYPS, REFS)
    assert value == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS], word_order=2).score)
    assert "nw:2" in signature  # chrF++ (word bigrams), not plain chrF


def test_bleu_tokenizer_fallbacks_without_flores200_model(monkeypatch):
    monkeypatch.setattr(metrics, "flores200_spm_available", lambda: False)
    assert metrics.bleu_tokenizer("zho_Hans") == "zh"
    assert metrics.bleu_tokenizer("tha_Thai") == "char"
    assert metrics.bleu_tokenizer("swh_Latn") == "13a"
    assert metrics.bleu_tokenizer("jpn_Jpan") in ("ja-mecab", "char")
    # Thai written without spaces: char tokenisation gives partial credit where 13a sees one wrong "word".
    hyp, ref = ["ฉันชอบกินข้าวผัดมาก"], ["ฉันชอบกินข้าวผัด"]
    assert metrics.bleu(hyp, ref, "tha_Thai")[0] > 0
    assert sacrebleu.corpus_bleu(hyp, [ref], tokenize="13a").score == 0
    monkeypatch.setattr(metrics, "flores200_spm_available", lambda: True)
    assert metrics.bleu_tokenizer("tha_Thai") == "flores200"


@pytest.mark.parametrize(
    "lang, prediction, reference",
    [("zho_Hans", "我不喜欢吃苹果", "我喜欢吃苹果"), ("tha_Thai", "ฉันไม่ชอบกินข้าวผัด", "ฉันชอบกินข้าวผัด")],
)
def test_rouge_l_segments_unspaced_scripts(lang, prediction, reference):
    pytest.importorskip("multilingual_rouge", reason="pip install multilingual-rouge unidic-lite (eval extra)")
    from rouge_score import rouge_scorer

    whitespace = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert whitespace == 0  # Google's rouge-score drops non-Latin text: the failure the XL-Sum scorer fixes
    assert 50 < metrics.rouge_l([prediction], [reference], lang) < 100


def test_rouge_l_other_languages():
    pytest.importorskip("multilingual_rouge", reason="pip install multilingual-rouge unidic-lite (eval extra)")
    assert metrics.rouge_l(["私はリンゴが大好きです"], ["私はリンゴが好きです"], "jpn_Jpan") > 50
    assert metrics.rouge_l(["আমি ভাত খাই"], ["আমি ভাত খাই"], "ben_Beng") == pytest.approx(100)
    # English is stemmed as in the XL-Sum setup (cats ~ cat, running ~ runs): LCS 3 of 4 and 3 tokens.
    assert metrics.rouge_l(["the cats were running"], ["the cat runs"], "eng_Latn") == pytest.approx(100 * 6 / 7)
    assert metrics.rouge_l(["totally different"], ["the cat runs"], "eng_Latn") == 0


def test_comet_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setattr(metrics, "_module_available", lambda name: False)
    value, note = metrics.comet(["a"], ["b"], ["c"], "Unbabel/wmt22-comet-da")
    assert value is None and "unbabel-comet" in note

"""The linear warm start of the encoder-side mapping (train/warm_start.py, `--enc_map_init english_lstsq`): pieces
are aligned to the LLM tokens they overlap, the block then computes the least-squares map exactly, and a bad setting
is an error that names the valid one."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from tiny_bases import FLORES, build_tiny_bilingual_nmt
from train.warm_start import aligned_states, char_spans, fit_linear, warm_start_enc_map

ENGLISH = (FLORES / "eng_Latn.devtest").read_text(encoding="utf-8").splitlines()[:60]


def test_pieces_find_their_characters_left_to_right():
    text = "It's it, it."
    assert char_spans(text, ["\u2581It", "'", "s", "\u2581it", ",", "\u2581it", "."]) == [
        (0, 2), (2, 3), (3, 4), (5, 7), (7, 8), (9, 11), (11, 12)]
    assert char_spans("a b", ["\u2581a", "<unk>", "\u2581b"]) == [(0, 1), None, (2, 3)]


@pytest.fixture(scope="module")
def nllb_bridge(tiny_bases):
    model = XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"], enc_map_hidden_size=64)
    return model.eval(), XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["llm"])


def test_the_warm_started_block_is_the_least_squares_map(nllb_bridge):
    model, processor = nllb_bridge
    x, y = aligned_states(model, processor, ENGLISH)
    # every aligned piece of the first sentence: NLLB puts the language code first, so pieces start at position 1
    assert len(x) > 10 * len(ENGLISH) / 2 and x.shape[1] == model.config.nmt_hidden_size and y.shape[1] == 32
    random_error = (model.enc_map(x) - y).pow(2).mean()
    stats = warm_start_enc_map(model, processor, ENGLISH)
    assert stats["aligned_pieces"] == len(x) and stats["texts"] == len(ENGLISH)
    weight = fit_linear(x, y)
    torch.testing.assert_close(model.enc_map(x), x @ weight, atol=1e-5, rtol=1e-4)  # exactly linear
    fitted_error = (model.enc_map(x) - y).pow(2).mean()
    assert fitted_error < 0.8 * random_error
    # the ridge solution: no other map does better than it by more than its small ridge term
    exact = torch.linalg.lstsq(x.double(), y.double()).solution.float()
    assert fitted_error <= (x @ exact - y).pow(2).mean() * 1.01 + 1e-6


def test_the_first_piece_of_an_nllb_source_follows_its_language_code(nllb_bridge):
    model, processor = nllb_bridge
    x, _ = aligned_states(model, processor, ENGLISH[:1])
    batch = processor(ENGLISH[:1], src_lang="eng_Latn", prompt=False)
    states = model.encode_source(batch["input_ids"], batch["attention_mask"])
    first = states[0, 1] * torch.rsqrt(states[0, 1].pow(2).mean() + model.enc_map.norm.eps)
    torch.testing.assert_close(x[0], first)


def test_a_marian_source_with_its_own_vocabulary_aligns_from_position_0(tmp_path, tiny_bases):
    path = build_tiny_bilingual_nmt(tmp_path / "marian")
    model = XBridgeForConditionalGeneration.from_bases(path, tiny_bases["llm"], nmt_source_lang="spa_Latn",
                                                       nmt_target_lang="spa_Latn").eval()
    processor = XBridgeProcessor(AutoTokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(tiny_bases["llm"]),
                                 nmt_source_lang="spa_Latn", nmt_target_lang="spa_Latn", ot_vocabulary="target")
    text = "El gato duerme."
    x, _ = aligned_states(model, processor, [text], src_lang="spa_Latn")
    batch = processor([text], src_lang="spa_Latn", prompt=False)
    states = model.encode_source(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(x[0], states[0, 0] * torch.rsqrt(states[0, 0].pow(2).mean() + model.enc_map.norm.eps))


def test_the_wrong_width_and_a_later_stage_are_errors_that_say_what_to_do(tiny_bases):
    from train.run import warm_start

    model = XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"])
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["llm"])
    with pytest.raises(ValueError, match="--enc_map_hidden_size 64"):
        warm_start_enc_map(model, processor, ENGLISH[:4])
    records = SimpleNamespace(column_names=["en_text"])
    args = dict(nmt_name_or_path=tiny_bases["nmt"], enc_map_init_records=4)
    with pytest.raises(ValueError, match="'english'.*use random .* or english_lstsq"):
        warm_start("stage1", SimpleNamespace(enc_map_init="english", **args), model, processor, records)
    with pytest.raises(ValueError, match="stage2 continues a trained one"):
        warm_start("stage2", SimpleNamespace(enc_map_init="english_lstsq", **args), model, processor, records)


def test_a_source_cut_by_the_processor_aligns_the_pieces_it_kept(nllb_bridge):
    model, processor = nllb_bridge
    long = max(ENGLISH, key=len)
    full, _ = aligned_states(model, processor, [long])
    kept = processor.max_source_length
    try:
        processor.max_source_length = 8  # language code, 6 pieces, </s>
        cut, _ = aligned_states(model, processor, [long])
    finally:
        processor.max_source_length = kept
    assert 0 < len(cut) <= 6 < len(full)

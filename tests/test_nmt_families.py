"""Every NMT family beside NLLB (issue 32), through one language-control declaration (`languages_xbridge.FAMILIES`):
M2M100 (`__pt__`), mBART-50 (`pt_XX`), T5 / MADLAD-400 (`<2pt>` on the encoder input), Marian multi-target
(`>>por<<`). Each is a tiny random model of the stock architecture with its stock tokenizer class, trained offline.
Per family: the tags against the tokenizer's own code list, the ids against its own template, from_bases with Llama
and Qwen2, a training step of each stage with every loss term finite, generate (batched = one by one), and a
fresh-process remote-code reload that reproduces the ids. NLLB's own behaviour is pinned by test_model.py."""

import pytest
import torch

from hub_user import load_and_generate
from languages_xbridge import FAMILIES, ISO639_1, NLLB_CODES, detect_family, short_code
from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from tiny_bases import FAMILY_LANGS, build_tiny_family_nmt, quick_train_args, seeded_bridge

FAMILIES_UNDER_TEST = ("m2m100", "mbart50", "madlad", "marian")
TEXTS = ["Der Hund schläft im Garten.", "Morgen gehen wir mit unseren Freunden auf den Markt."]
ANSWERS = ["The dog sleeps in the garden.", "Tomorrow we go to the market with our friends."]
# CTranslate2 4.8's converters against transformers 5 checkpoints, measured: T5 converts; M2M100 fails (its
# tokenizer's vocabulary lacks the `__pt__` tags: "Source vocabulary 0 has size 809 but the model expected 901"),
# mBART fails ("'MBartConfig' object has no attribute 'normalize_before'"), Marian fails (vocabulary 805 vs 804).
CT2_CONVERTS = ("madlad",)
TARGETS = ["Le chien dort dans le jardin.", "Demain nous allons au marché avec nos amis."]


@pytest.fixture(scope="module")
def nmts(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: str(build_tiny_family_nmt(root / family, family)) for family in FAMILIES_UNDER_TEST}


def _bridge(nmt, llm):
    model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(nmt, llm))
    return model.eval(), XBridgeProcessor.from_bases(nmt, llm)


def test_m2m100_and_mbart50_tags_are_the_tokenizers_own_code_lists(nmts):
    """Every code of the stock tokenizers' own lists has exactly one NLLB name (M2M100: all but Breton and Western
    Frisian, which NLLB-200 lacks), and no two NLLB codes share a tag."""
    from transformers import AutoTokenizer

    m2m = AutoTokenizer.from_pretrained(nmts["m2m100"])
    codes = FAMILIES["m2m100"].lang_codes(m2m)
    assert {m2m.convert_ids_to_tokens(i) for i in codes.values()} == set(m2m.lang_token_to_id) - {"__br__", "__fy__"}
    assert codes["por_Latn"] == m2m.lang_token_to_id["__pt__"] and codes["nso_Latn"] == m2m.lang_token_to_id["__ns__"]
    assert codes["zho_Hans"] == m2m.lang_token_to_id["__zh__"] and "zho_Hant" not in codes
    mbart = AutoTokenizer.from_pretrained(nmts["mbart50"])
    codes = FAMILIES["mbart50"].lang_codes(mbart)
    own = {mbart.convert_tokens_to_ids(c) for c in mbart.lang_code_to_id} if hasattr(mbart, "lang_code_to_id") else None
    from transformers.models.mbart50.tokenization_mbart50 import FAIRSEQ_LANGUAGE_CODES

    assert set(codes.values()) == (own or {mbart.convert_tokens_to_ids(c) for c in FAIRSEQ_LANGUAGE_CODES})
    assert len(codes) == len(FAIRSEQ_LANGUAGE_CODES) == 52
    assert mbart.convert_ids_to_tokens(codes["por_Latn"]) == "pt_XX" and mbart.convert_ids_to_tokens(codes["zho_Hans"]) == "zh_CN"


def test_madlad_and_marian_tags_and_the_iso_table():
    """MADLAD's `<2xx>` and Marian's `>>xxx<<`: the script-specific tag first, the bare one for the language's first
    NLLB script only (so `zho_Hant` never silently becomes `<2zh>`); the ISO 639-1 table is one-to-one."""
    madlad, marian = FAMILIES["madlad"], FAMILIES["marian"]
    assert madlad.candidates("por_Latn", {}) == ["<2pt_Latn>", "<2pt>"]
    assert madlad.candidates("zho_Hant", {}) == ["<2zh_Hant>"] and madlad.candidates("ceb_Latn", {})[-1] == "<2ceb>"
    assert marian.candidates("por_Latn", {}) == [">>por_Latn<<", ">>por<<"]
    assert len(set(ISO639_1.values())) == len(ISO639_1) and set(ISO639_1) <= set(NLLB_CODES)
    assert short_code("ast_Latn") == "ast" and short_code("swh_Latn") == "sw"


def test_the_family_is_told_by_the_tokenizer_and_an_unknown_one_is_named(nmts, tiny_bases):
    from transformers import AutoTokenizer

    assert {f: detect_family(AutoTokenizer.from_pretrained(p)) for f, p in nmts.items()} == {f: f for f in nmts}
    assert detect_family(AutoTokenizer.from_pretrained(tiny_bases["nmt"])) == "nllb"  # NLLB shares M2M100's model
    with pytest.raises(ValueError, match=r"nmt_family='opus'.*'m2m100'.*__pt__"):
        XBridgeForConditionalGeneration.from_bases(nmts["m2m100"], tiny_bases["llm"], nmt_family="opus")


@pytest.mark.parametrize("family", ["m2m100", "mbart50"])
def test_source_and_target_ids_are_the_family_tokenizers_own(nmts, tiny_bases, family):
    """Where the family's own tokenizer has a template for languages (`src_lang=` / `tgt_lang=`), the processor's
    composition gives its exact ids: `[tag] text </s>` on both sides."""
    _, processor = _bridge(nmts[family], tiny_bases["llm"])
    tok = processor.nmt_tokenizer
    own = {"m2m100": ("de", "fr"), "mbart50": ("de_DE", "fr_XX")}[family]
    tok.src_lang, tok.tgt_lang = own
    batch = processor(TEXTS, src_lang="deu_Latn", answers=ANSWERS, targets=TARGETS, tgt_lang="fra_Latn")
    for i in range(len(TEXTS)):
        assert batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist() == tok(TEXTS[i])["input_ids"]
        assert [x for x in batch["labels"][i].tolist() if x != -100] == tok(text_target=TARGETS[i])["input_ids"]


@pytest.mark.parametrize("family", ["madlad", "marian"])
def test_an_encoder_tagged_family_reads_with_the_english_tag_and_writes_through_a_memory_prefix(nmts, tiny_bases, family):
    """T5 / Marian decoders read the target language from the encoder: the source carries the English tag; labels
    carry none; the decoder memory is led by the frozen encoder's own states of `[tag, </s>]`; generate starts from
    the decoder start token alone and matches the NMT's generate over that same memory."""
    from transformers.modeling_outputs import BaseModelOutput

    model, processor = _bridge(nmts[family], tiny_bases["llm"])
    codes = model.config.lang_code_to_id
    batch = processor(TEXTS, src_lang="deu_Latn", answers=ANSWERS, targets=TARGETS, tgt_lang="fra_Latn")
    assert (batch["input_ids"][:, 0] == codes["eng_Latn"]).all()
    assert not torch.isin(batch["labels"], torch.tensor(list(codes.values()))).any()
    assert batch["decoder_lang_ids"].tolist() == [[codes["fra_Latn"]]] * 2
    with pytest.raises(ValueError, match="decoder_lang_ids"):
        model(**{k: v for k, v in batch.items() if k != "decoder_lang_ids"})
    prompt = processor(TEXTS, src_lang="deu_Latn")
    out = model.generate(**prompt, tgt_lang="fra_Latn", max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
    assert (out.sequences[:, 0] == model.decoder_start_id).all()
    tags = torch.tensor([[codes["fra_Latn"], model.config.nmt_config.eos_token_id]] * 2)
    with torch.no_grad():
        tag_states = model.nmt.get_encoder()(input_ids=tags).last_hidden_state
    memory = torch.cat([tag_states, out.decoder_memory], dim=1)
    mask = torch.cat([torch.ones_like(tags), out.decoder_memory_mask], dim=1)
    reference = model.nmt.generate(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=mask,
                                   decoder_input_ids=torch.full((2, 1), model.decoder_start_id), max_new_tokens=6,
                                   do_sample=False)
    assert torch.equal(out.sequences, reference)
    # the prefix is what tells the languages apart: the decoder's first-step logits differ between two of them
    start = torch.full((2, 1), model.decoder_start_id)
    logits = []
    for lang in ("fra_Latn", "swh_Latn"):
        memory, mask = model.with_language_memory(out.decoder_memory, out.decoder_memory_mask,
                                                  torch.full((2, 1), codes[lang]))
        logits.append(model.nmt(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=mask,
                                decoder_input_ids=start).logits)
    assert (logits[0] - logits[1]).abs().max() > 1e-3


@pytest.mark.parametrize("llm", ["llama", "llm"])
@pytest.mark.parametrize("family", FAMILIES_UNDER_TEST)
def test_each_stage_trains_a_step_and_generate_batched_equals_one_by_one(nmts, tiny_bases, family, llm):
    from train.trainer import STAGES, XBridgeCollator

    model, processor = _bridge(nmts[family], tiny_bases[llm])
    assert model.config.nmt_family == family and set(FAMILY_LANGS) <= set(model.config.lang_codes)
    records = [{"src_text": t, "src_lang": "deu_Latn", "en_text": a, "tgt_text": y, "tgt_lang": "fra_Latn",
                "question": t, "answer_en": a, "answer_tgt": y} for t, a, y in zip(TEXTS, ANSWERS, TARGETS)]
    for stage in ("stage1", "stage2", "stage3"):
        preset = STAGES[stage]
        model.config.lambda_llm, model.config.lambda_dec, model.config.lambda_ot = preset["lambdas"]
        model.set_ot_loss(lambda x, xm, y, ym: (x.mean() - y.mean()) ** 2)  # any differentiable stand-in
        trainable = model.set_stage(preset["model_stage"])
        model.train()
        out = model(**XBridgeCollator(processor, stage, default_instruction="Translate.")(records))
        terms = {k: getattr(out, k) for k in ("loss_llm", "loss_dec", "loss_ot")}
        assert all(torch.isfinite(v) for v in terms.values() if v is not None), (stage, terms)
        out.loss.backward()
        grads = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        assert grads and set(grads) <= set(trainable), stage
        if preset["targets"]:  # the decoder side learns: its cross-attention gets gradients
            assert any(model._is_cross_attention(n) for n in grads), stage
        model.zero_grad(set_to_none=True)
    model.set_stage(None)
    model.eval()
    batch = processor(TEXTS, src_lang="deu_Latn")
    together = model.generate(**batch, tgt_lang=["eng_Latn", "fra_Latn"], max_new_tokens=6, do_sample=False)
    for i, text in enumerate(TEXTS):
        alone = model.generate(**processor([text], src_lang="deu_Latn"), tgt_lang=["eng_Latn", "fra_Latn"],
                               max_new_tokens=6, do_sample=False)
        for lang in ("eng_Latn", "fra_Latn"):
            row = together[lang][i][: alone[lang].shape[1]]
            assert torch.equal(row, alone[lang][0]), (family, lang, i)
    assert all(isinstance(t, str) for t in processor.batch_decode(together["fra_Latn"]))


@pytest.mark.parametrize("family", FAMILIES_UNDER_TEST)
def test_a_family_bridge_reloads_as_remote_code_with_the_same_ids(nmts, tiny_bases, family, tmp_path):
    model, processor = _bridge(nmts[family], tiny_bases["llama"])
    expected = model.generate(**processor(TEXTS, src_lang="fra_Latn"), tgt_lang="fra_Latn", max_new_tokens=6)
    model.save_pretrained(tmp_path / "bridge")
    processor.save_pretrained(tmp_path / "bridge")
    out = load_and_generate(tmp_path / "bridge", TEXTS, cwd=tmp_path, lang="fra_Latn")
    assert out["ids"] == expected.tolist()


def test_an_unknown_code_names_the_family_and_its_codes(nmts, tiny_bases):
    model, processor = _bridge(nmts["madlad"], tiny_bases["llm"])
    with pytest.raises(ValueError, match=r"unknown tgt_lang 'por_Latm' for this madlad NMT; did you mean 'por_Latn'.*<2pt>"):
        model.generate(**processor(TEXTS, src_lang="deu_Latn"), tgt_lang="por_Latm", max_new_tokens=3)
    with pytest.raises(ValueError, match=r"unknown src_lang 'jpn_Jpan' for this madlad NMT"):
        processor(TEXTS, src_lang="jpn_Jpan")


def test_the_flores101_to_flores200_code_map(tmp_path):
    """All 101 FLORES-101 codes map one-to-one onto NLLB-200 codes and back; the renamed macrolanguages take their
    FLORES-200 names; Korean is `kor_Hang` (the paper's NLLB En->Ko row at 0.18 BLEU points to a map that missed it);
    a FLORES-101 folder is read through the map."""
    from eval import data, languages

    mapped = {code: languages.flores200_code(code) for code in languages.FLORES101_CODES}
    assert len(mapped) == 101 and len(set(mapped.values())) == 101 and set(mapped.values()) <= set(NLLB_CODES)
    assert all(languages.flores101_code(new) == old for old, new in mapped.items())
    assert mapped["kor"] == "kor_Hang" and mapped["zho_trad"] == "zho_Hant" and mapped["ara"] == "arb_Arab"
    assert mapped["fas"] == "pes_Arab" and mapped["msa"] == "zsm_Latn" and mapped["swh"] == "swh_Latn"
    assert languages.flores101_code("ace_Arab") is None
    with pytest.raises(ValueError, match=r"'kor_Hang' is not a FLORES-101 code; valid: afr, amh"):
        languages.flores200_code("kor_Hang")
    (tmp_path / "kor.devtest").write_text("첫 문장.\n둘째 문장.\n", encoding="utf-8")
    assert data.flores_sentences(str(tmp_path), "kor_Hang") == ["첫 문장.", "둘째 문장."]


@pytest.mark.parametrize("family", FAMILIES_UNDER_TEST)
def test_plain_translation_puts_each_familys_tags_in_its_place_on_both_engines(nmts, family, tmp_path):
    """The engine of build-data and of the nmt / translate-test systems: NLLB-like families lead the source with
    the source's tag and force the target's after the decoder start; T5 and Marian lead the source with the target's
    tag and force nothing. `generate()` with the family's own inputs gives the same text; CTranslate2 gives it too
    in float32 where it converts the family (`CT2_CONVERTS`)."""
    import shutil

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from nmt_engine import CTranslate2NLLB, TransformersNLLB

    engine = TransformersNLLB(nmts[family])
    codes, tok = engine.inputs.codes, engine.tokenizer
    ids = engine.inputs.source_ids(TEXTS, "deu_Latn", "fra_Latn", None)
    in_encoder = family in ("madlad", "marian")
    assert all(row[0] == codes["fra_Latn" if in_encoder else "deu_Latn"] and row[-1] == tok.eos_token_id for row in ids)
    assert engine.inputs.forced_target("fra_Latn") == (None if in_encoder else codes["fra_Latn"])
    got = engine.translate(TEXTS, "deu_Latn", "fra_Latn", max_new_tokens=8)
    model = AutoModelForSeq2SeqLM.from_pretrained(nmts[family]).eval()
    reference = []
    for row in ids:
        out = model.generate(torch.tensor([row]), forced_bos_token_id=engine.inputs.forced_target("fra_Latn"),
                             max_new_tokens=8, do_sample=False)[0].tolist()
        reference.append(tok.decode([i for i in out if i not in codes.values()], skip_special_tokens=True))
    assert got == reference and not any("__" in t or ">>" in t or "<2" in t for t in got)
    with pytest.raises(ValueError, match=rf"this {family} NMT has no tag for 'ace_Latn'"):
        engine.translate(TEXTS, "deu_Latn", "ace_Latn")
    if family not in CT2_CONVERTS:
        return
    pytest.importorskip("ctranslate2")
    folder = tmp_path / family
    shutil.copytree(nmts[family], folder)
    assert CTranslate2NLLB(str(folder), compute_type="float32", threads=1).translate(
        TEXTS, "deu_Latn", "fra_Latn", max_new_tokens=8) == got
    assert isinstance(AutoTokenizer.from_pretrained(folder), type(tok))


@pytest.mark.parametrize("family", ["mbart50", "madlad"])
def test_the_data_builder_translates_with_a_family_nmt(nmts, family):
    """build-data's Translator (stage-1 triples, stage-3 answers) on a non-NLLB NMT: the languages it accepts are
    the ones the NMT has tags for; English targets are copied; the rest is the engine's translation."""
    from nmt_engine import TransformersNLLB
    from train.build_data import Translator
    from train.data import DataError

    translator = Translator(nmts[family], num_beams=1, max_new_tokens=8)
    assert {"eng_Latn", "fra_Latn", "swh_Latn"} <= set(translator.lang_codes)
    out = translator.translate(ANSWERS, ["fra_Latn", "eng_Latn"])
    assert out[1] == ANSWERS[1] and out[0] == TransformersNLLB(nmts[family]).translate(
        ANSWERS[:1], "eng_Latn", "fra_Latn", num_beams=1, max_new_tokens=8)[0].strip()
    with pytest.raises(DataError, match="ace_Latn"):
        translator.check_lang("ace_Latn", "record 1")


def test_stage1_then_stage3_from_the_cli_on_a_t5_nmt(nmts, tiny_bases, tmp_path):
    """`python -m train stage1` on a MADLAD-style T5 NMT: the family is told by its tokenizer and saved, the stage-1
    loss falls (OT and the decoder term through the memory prefix), stage 3 goes on from its folder."""
    import json
    import os

    from train.cli import main as cli_main

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = [{"src_text": t, "src_lang": "deu_Latn", "en_text": a, "tgt_text": y, "tgt_lang": "fra_Latn"}
            for t, a, y in zip(TEXTS, ANSWERS, TARGETS)]
    data = tmp_path / "tri.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    trainer = cli_main(["stage1", "--config", os.path.join(root, "train", "configs", "stage1.yaml"),
                        "--nmt_name_or_path", nmts["madlad"], "--llm_name_or_path", tiny_bases["llm"],
                        "--train_file", str(data), *quick_train_args(tmp_path / "s1", 12)])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    saved = json.loads((tmp_path / "s1" / "config.json").read_text())
    assert saved["nmt_family"] == "madlad" and "fra_Latn" in saved["lang_code_to_id"]
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps({"question": t, "src_lang": "deu_Latn", "answer_en": a, "answer_tgt": y,
                                        "tgt_lang": "fra_Latn"}, ensure_ascii=False) + "\n"
                            for t, a, y in zip(TEXTS, ANSWERS, TARGETS)), encoding="utf-8")
    again = cli_main(["stage3", "--config", os.path.join(root, "train", "configs", "stage3.yaml"), "--model_name_or_path",
                      str(tmp_path / "s1"), "--train_file", str(task), *quick_train_args(tmp_path / "s3", 4)])
    assert again.model.config.nmt_family == "madlad"
    assert XBridgeProcessor.from_pretrained(tmp_path / "s3").nmt_family == "madlad"


@pytest.mark.parametrize("family", ["madlad", "mbart50"])
def test_encoder_fusion_reads_every_layer_of_any_encoder(nmts, tiny_bases, family):
    """The multi-layer fusion option over a T5 encoder (whose config names its depth `num_layers`) and a BART-style
    one: one weight per hidden state (embeddings + each layer), and the stage-1 loss is finite."""
    model = XBridgeForConditionalGeneration.from_bases(nmts[family], tiny_bases["llm"], encoder_fusion="global_softmax")
    processor = XBridgeProcessor.from_bases(nmts[family], tiny_bases["llm"])
    assert model.encoder_fusion.layer_logits.numel() == 3  # 2 layers + the embeddings
    batch = processor(TEXTS, src_lang="deu_Latn", prompt=False, answers=ANSWERS, targets=TARGETS, tgt_lang="fra_Latn")
    assert torch.isfinite(model(**batch).loss)

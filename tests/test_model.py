"""The core bundle: parity with the stock HF models, generation, save/load, errors."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, M2M100ForConditionalGeneration

from configuration_xbridge import XBridgeConfig
from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from hub_user import bundle_differences, load_and_generate, run_fresh_python
from tiny_bases import make_offline_hub_cache, seeded_bridge

QUESTIONS = ["Habari ya dunia, leo ni siku nzuri.", "Ninapenda kusoma vitabu.", "Mama yangu ana ng'ombe tatu na mbuzi wawili."]
ANSWERS = ["The answer is 5.", "I like books very much, thank you.", "Three cows."]
TARGETS = ["Jibu ni 5.", "Napenda vitabu sana.", "Ng'ombe watatu."]


def batch_for(processor, n=3, **kw):
    return processor(QUESTIONS[:n], src_lang="swh_Latn", instruction="Answer the question.", answers=ANSWERS[:n],
                     targets=TARGETS[:n], tgt_lang="swh_Latn", ot_targets=True, **kw)


def test_generation_outputs_differ_between_inputs(tiny_bridge):
    # Guard for every comparison below: identical outputs for all inputs would make them vacuous.
    model, processor = tiny_bridge
    ids = model.generate(**processor(QUESTIONS, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=6)
    english = model.generate(**processor(QUESTIONS, src_lang="swh_Latn"), max_new_tokens=6)
    assert len({tuple(r) for r in ids.tolist()}) > 1
    assert len({tuple(r) for r in english.tolist()}) > 1


# ---------------------------------------------------------------- parity with the stock models
def test_nllb_encoder_parity(tiny_bridge, tiny_bases):
    model, processor = tiny_bridge
    model.train()  # the frozen base must stay in eval mode (no dropout) even so
    stock = M2M100ForConditionalGeneration.from_pretrained(tiny_bases["nmt"]).eval()
    batch = processor(QUESTIONS, src_lang="swh_Latn")
    ours = model.encode_source(batch["input_ids"], batch["attention_mask"])
    theirs = stock.model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("arch", ["llm", "llama"])
def test_llm_logits_and_captured_states_parity(tiny_bases, arch):
    torch.manual_seed(0)
    model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases[arch])).eval()
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases[arch])
    stock = AutoModelForCausalLM.from_pretrained(tiny_bases[arch]).eval()
    batch = batch_for(processor)
    out = model(**batch)
    embeds, mask, _, _ = model._llm_inputs(batch["input_ids"], batch["attention_mask"], batch["prompt_ids"],
                                        batch["prompt_attention_mask"], batch["answer_ids"], batch["answer_attention_mask"])
    total = 0.0
    for i in range(len(QUESTIONS)):  # each row alone, unpadded, through the stock LLM
        keep = mask[i].bool()
        ref = stock(inputs_embeds=embeds[i, keep][None], output_hidden_states=True)
        n = int(batch["answer_attention_mask"][i].sum())
        La = batch["answer_ids"].shape[1]
        # positions predicting the answer: last prompt token .. second-to-last answer token
        torch.testing.assert_close(out.llm_logits[i, La - n:], ref.logits[0, -n - 1 : -1], rtol=1e-4, atol=1e-4)
        mem_ref = model.map_to_memory(ref.hidden_states[-2][0, -n - 1 : -1])
        torch.testing.assert_close(out.decoder_memory[i, La - n:], mem_ref, rtol=1e-4, atol=1e-4)
        assert out.decoder_memory_mask[i].sum() == n
        total = total + torch.nn.functional.cross_entropy(ref.logits[0, -n - 1 : -1], batch["answer_ids"][i, :n], reduction="sum")
    torch.testing.assert_close(out.loss_llm, total / batch["answer_attention_mask"].sum(), rtol=1e-4, atol=1e-4)


def test_decoder_logits_parity(tiny_bridge, tiny_bases):
    model, processor = tiny_bridge
    stock = M2M100ForConditionalGeneration.from_pretrained(tiny_bases["nmt"]).eval()
    batch = batch_for(processor)
    out = model(**batch)
    from modeling_xbridge import shift_right

    ref = stock(encoder_outputs=(out.decoder_memory,), attention_mask=out.decoder_memory_mask,
                decoder_input_ids=shift_right(batch["labels"], 1, 2))
    torch.testing.assert_close(out.decoder_logits, ref.logits, rtol=1e-4, atol=1e-4)
    expected = torch.nn.functional.cross_entropy(ref.logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    torch.testing.assert_close(out.loss_dec, expected)
    assert batch["labels"][0, 0] == model.config.lang_code_to_id["swh_Latn"]  # the language code is a target


def test_loss_is_weighted_sum_of_terms(tiny_bridge):
    model, processor = tiny_bridge
    model.set_ot_loss(lambda x, xm, y, ym: (x.mean() - y.mean()) ** 2)
    model.config.lambda_dec, model.config.lambda_ot = 0.5, 2.0
    out = model(**batch_for(processor))
    torch.testing.assert_close(out.loss, out.loss_llm + 0.5 * out.loss_dec + 2.0 * out.loss_ot)
    assert out.ot_target_states.shape[:2] == out.ot_target_mask.shape


# ---------------------------------------------------------------- generation
@pytest.mark.parametrize("num_beams", [1, 3])
def test_captured_states_equal_teacher_forced_forward(tiny_bridge, num_beams):
    model, processor = tiny_bridge
    batch = processor(QUESTIONS, src_lang="swh_Latn")
    gen = model.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=7, num_beams=num_beams, return_dict_in_generate=True)
    english, mask = gen.llm_sequences, gen.decoder_memory_mask
    forced = model(**batch, answer_ids=english, answer_attention_mask=mask)
    valid = mask.bool()
    torch.testing.assert_close(gen.decoder_memory[valid], forced.decoder_memory[valid], rtol=1e-4, atol=1e-4)


def test_batch_equals_one_by_one(tiny_bridge):
    model, processor = tiny_bridge
    together = model.generate(**processor(QUESTIONS, src_lang="swh_Latn"), tgt_lang=["swh_Latn", "eng_Latn"], max_new_tokens=6)
    for i, q in enumerate(QUESTIONS):
        alone = model.generate(**processor([q], src_lang="swh_Latn"), tgt_lang=["swh_Latn", "eng_Latn"], max_new_tokens=6)
        for lang in ("swh_Latn", "eng_Latn"):
            row = together[lang][i]
            n = alone[lang].shape[1]
            assert row[:n].tolist() == alone[lang][0].tolist(), lang


def test_several_languages_equal_separate_calls(tiny_bridge):
    model, processor = tiny_bridge
    batch = processor(QUESTIONS, src_lang="swh_Latn")
    langs = ["swh_Latn", "fra_Latn", "zho_Hans"]
    many = model.generate(**batch, tgt_lang=langs, max_new_tokens=6)
    assert list(many) == langs
    for lang in langs:
        single = model.generate(**batch, tgt_lang=lang, max_new_tokens=6)
        assert torch.equal(many[lang][:, : single.shape[1]], single)
        assert (single[:, 1] == model.config.lang_code_to_id[lang]).all()  # </s> tgt_code, as forced_bos does
    text = processor.batch_decode(many, skip_special_tokens=True)
    assert set(text) == set(langs) and all(isinstance(t, str) for t in text["fra_Latn"])


def test_english_target_returns_llm_ids_and_phase_kwargs(tiny_bridge):
    model, processor = tiny_bridge
    batch = processor(QUESTIONS[:1], src_lang="swh_Latn")
    english = model.generate(**batch, tgt_lang="eng_Latn", max_new_tokens=5)
    assert torch.equal(english, model.generate(**batch, tgt_lang=None, max_new_tokens=5))
    assert english.shape[1] <= 5 and english.max() >= model.config.nmt_config.vocab_size  # LLM vocabulary
    assert isinstance(processor.batch_decode(english, from_llm=True)[0], str)
    out = model.generate(**batch, tgt_lang="swh_Latn", llm_max_new_tokens=3, nmt_max_new_tokens=9, nmt_min_new_tokens=9,
                         return_dict_in_generate=True)
    assert out.llm_sequences.shape[1] <= 3 and out.sequences.shape[1] == 2 + 9


# ---------------------------------------------------------------- stages, dtypes
def test_stage_presets_and_frozen_bases_stay_in_eval(tiny_bridge):
    model, _ = tiny_bridge
    names = {s: model.set_stage(s) for s in (1, 2, 3)}
    assert all(n.startswith(("enc_map", "boundary")) for n in names[2]) and "boundary" in names[2]
    assert any("encoder_attn." in n for n in names[3]) and any("encoder_attn_layer_norm" in n for n in names[3])
    assert not any(n.startswith(("enc_map", "boundary", "llm.")) for n in names[3])
    assert set(names[1]) == set(names[2]) | set(names[3])
    assert not any(n.startswith("llm.") or "self_attn" in n or "nmt.model.encoder" in n for n in names[1])
    model.train()
    assert model.training and not model.nmt.training and not model.llm.training
    with pytest.raises(ValueError, match="stage=4"):
        model.set_stage(4)


def test_stage_gradients_reach_only_trainable(tiny_bridge):
    model, processor = tiny_bridge
    model.set_stage(2)
    model.train()
    model(**batch_for(processor)).loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and grads <= set(model.trainable_parameter_names())
    assert "boundary" in grads


def test_bf16_bases_with_fp32_bridge(tiny_bases):
    model = XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"], dtype=torch.bfloat16)
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["llm"])
    assert model.llm.dtype == torch.bfloat16 and model.nmt.dtype == torch.bfloat16
    assert model.enc_map.up.weight.dtype == torch.float32 and model.dec_map[1].down.weight.dtype == torch.float32
    model.set_stage(1)
    assert model.nmt.model.decoder.layers[0].encoder_attn.q_proj.weight.dtype == torch.float32
    out = model(**batch_for(processor))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.dec_map[0].up.weight.grad is not None
    assert model.nmt.model.decoder.layers[0].encoder_attn.k_proj.weight.grad is not None
    ids = model.generate(**processor(QUESTIONS[:1], src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=4)
    assert ids.shape[0] == 1


# ---------------------------------------------------------------- errors
def test_errors_name_the_bad_value(tiny_bridge):
    model, processor = tiny_bridge
    with pytest.raises(ValueError, match=r"unknown src_lang 'swh_latn'.*did you mean 'swh_Latn'"):
        processor(["x"], src_lang="swh_latn")
    batch = processor(["x"], src_lang="swh_Latn")
    with pytest.raises(ValueError, match=r"unknown tgt_lang 'fra_latn'.*'fra_Latn'.*lang_code_to_id"):
        model.generate(**batch, tgt_lang="fra_latn")
    with pytest.raises(ValueError, match="empty batch"):
        processor([], src_lang="swh_Latn")
    with pytest.raises(ValueError, match="empty batch"):
        model.generate(input_ids=batch["input_ids"][:0], attention_mask=batch["attention_mask"][:0], tgt_lang="swh_Latn")
    with pytest.warns(UserWarning, match=r"1 of 2 source texts truncated to 512 tokens"):
        long = processor(["neno " * 2000, "fupi"], src_lang="swh_Latn")
    assert long["input_ids"].shape[1] == 512 and long["input_ids"][0, -1] == processor.nmt_tokenizer.eos_token_id


def test_config_converts_and_validates(tiny_bases):
    model = XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"], llm_layer="-1", lambda_ot="2")
    assert model.config.llm_layer == -1 and model.config.lambda_ot == 2.0
    assert model.config.nmt_name_or_path == tiny_bases["nmt"]
    assert model.config.llm_config._attn_implementation == model.llm.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="llm_layer=7 is out of range"):
        XBridgeConfig(llm_config=model.config.llm_config, llm_layer=7)
    with pytest.raises(ValueError, match="encoder_fusion='mean'"):
        XBridgeConfig(encoder_fusion="mean")


def test_llm_layer_last_reads_final_norm(tiny_bases):
    model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"], llm_layer=-1)).eval()
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["llm"])
    batch = batch_for(processor, n=1)
    out = model(**batch)
    embeds, _, _, _ = model._llm_inputs(batch["input_ids"], None, batch["prompt_ids"], None, batch["answer_ids"], None)
    ref = model.llm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1]
    n = batch["answer_ids"].shape[1]
    torch.testing.assert_close(out.decoder_memory[0], model.map_to_memory(ref[0, -n - 1 : -1]), rtol=1e-4, atol=1e-4)


def test_mismatched_bases_error_names_both(tiny_bridge, tiny_bases, tmp_path):
    model, _ = tiny_bridge
    model.save_pretrained(tmp_path / "bridge")
    cfg = json.loads((tmp_path / "bridge" / "config.json").read_text())
    cfg["llm_config"]["hidden_size"] = 64
    (tmp_path / "bridge" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"LLM hidden_size=64.*tiny-qwen2.*hidden_size=32"):
        XBridgeForConditionalGeneration.from_pretrained(tmp_path / "bridge")


# ---------------------------------------------------------------- save / load
def test_bridge_only_save_load_in_fresh_process(tiny_bridge, tmp_path):
    model, processor = tiny_bridge
    expected = model.generate(**processor(QUESTIONS, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=6)
    folder = tmp_path / "bridge"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert (folder / "generation_config.json").exists()
    card = ModelCard.load(folder / "README.md")  # the Hub's own parser reads the card's metadata
    assert card.data.base_model == [model.config.nmt_name_or_path, model.config.llm_name_or_path]
    assert card.data.pipeline_tag == "text-generation" and "xbridge" in card.data.tags
    assert "swh_Latn" in card.text and f"- training stage: {model.config.stage or 'untrained'}" in card.text
    assert bundle_differences(folder) == []  # every remote-code file, the package's own
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM", "AutoProcessor"} <= set(auto_map)
    bridge_bytes = (folder / "model.safetensors").stat().st_size
    base_bytes = sum(f.stat().st_size for p in (model.config.nmt_name_or_path, model.config.llm_name_or_path)
                     for f in Path(p).glob("*.safetensors"))
    assert bridge_bytes < 0.05 * base_bytes, (bridge_bytes, base_bytes)
    out = load_and_generate(folder, QUESTIONS, cwd=tmp_path)
    assert out["ids"] == expected.tolist()
    assert out["class"] == "XBridgeForConditionalGeneration"


def test_local_bases_are_found_from_the_bridge_not_the_working_directory(tiny_bridge, tiny_bases, tmp_path):
    import shutil

    model, processor = tiny_bridge
    expected = model.generate(**processor(QUESTIONS, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=6)
    tree = tmp_path / "tree"  # bases and bridge side by side, as a shipped checkpoint folder holds them
    for name in ("nmt", "llm"):
        shutil.copytree(tiny_bases[name], tree / name)
    first = _saved(model, processor, tmp_path / "first")
    assert json.loads((first / "config.json").read_text())["nmt_name_or_path"] == str(Path(tiny_bases["nmt"]).resolve())
    moved = XBridgeForConditionalGeneration.from_pretrained(first, nmt_name_or_path=str(tree / "nmt"),
                                                            llm_name_or_path=str(tree / "llm"))
    moved.save_pretrained(tree / "bridge")
    processor.save_pretrained(tree / "bridge")
    config = json.loads((tree / "bridge" / "config.json").read_text())
    assert (config["nmt_name_or_path"], config["llm_name_or_path"]) == ("../nmt", "../llm")
    relocated = tmp_path / "elsewhere" / "tree"
    shutil.move(tree, relocated)  # the whole tree moves; a fresh process in another folder still finds the bases
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    out = load_and_generate(relocated / "bridge", QUESTIONS, cwd=workdir)
    assert out["ids"] == expected.tolist()
    assert out["llm"] == str(relocated / "llm")
    shutil.rmtree(relocated / "nmt")
    with pytest.raises(OSError, match=r"nmt_name_or_path='\.\./nmt'.*tried \[.*elsewhere/tree/nmt'\].*pass nmt_name_or_path="):
        XBridgeForConditionalGeneration.from_pretrained(relocated / "bridge")
    from transformers import AutoModel  # the override through AutoModel + remote code too (its config is another
    # copy of the class, built by AutoConfig with the override applied: it must not be read again from the folder)
    remote = AutoModel.from_pretrained(relocated / "bridge", trust_remote_code=True, nmt_name_or_path=str(tiny_bases["nmt"]))
    assert remote.config.nmt_name_or_path == str(tiny_bases["nmt"])
    assert torch.equal(remote.generate(**processor(QUESTIONS, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=6),
                       expected)
    config["nmt_name_or_path"] = "runs/miniworld/bases/nmt"  # an old bridge's cwd-relative path: not a Hub id either
    (relocated / "bridge" / "config.json").write_text(json.dumps(config))
    with pytest.raises(OSError, match=r"'runs/miniworld/bases/nmt'.*not found"):
        XBridgeForConditionalGeneration.from_pretrained(relocated / "bridge")


def _saved(model, processor, folder):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_full_checkpoint_roundtrip(tiny_bridge, tmp_path):
    model, processor = tiny_bridge
    batch = processor(QUESTIONS[:2], src_lang="swh_Latn")
    expected = model.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=5)
    model.save_pretrained(tmp_path / "full", bridge_only=False)
    assert (tmp_path / "full" / "model.safetensors").stat().st_size > 10 * 2**20
    reloaded = XBridgeForConditionalGeneration.from_pretrained(tmp_path / "full").eval()
    assert reloaded.config.bridge_only is False
    assert torch.equal(reloaded.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=5), expected)


def test_chat_template_bos_is_not_repeated_after_the_source(tiny_bridge):
    """The model places the LLM's BOS at position 0; a chat template that opens with BOS (Llama 3, Gemma) must not
    put a second one between the source and the prompt."""
    import copy

    processor = copy.deepcopy(tiny_bridge[1])
    llm = processor.llm_tokenizer
    llm.bos_token = "<|endoftext|>"
    llm.chat_template = "{{ bos_token }}### Instruction: {{ messages[0]['content'] }} ### Response:"
    processor.use_chat_template, processor.source_in_prompt = True, False
    batch = processor(QUESTIONS[:2], src_lang="swh_Latn", instruction="Answer the question.")
    expected = llm("### Instruction: Answer the question. ### Response:", add_special_tokens=False)["input_ids"]
    for ids, mask in zip(batch["prompt_ids"].tolist(), batch["prompt_attention_mask"].tolist()):
        assert [i for i, m in zip(ids, mask) if m] == expected
    llm.chat_template = "### Instruction: {{ messages[0]['content'] }} ### Response:"  # no BOS: the prompt is kept whole
    assert processor(QUESTIONS[:1], src_lang="swh_Latn", instruction="Answer the question.")["prompt_ids"][0].tolist() == expected


def test_device_map_auto_and_processor_settings_roundtrip(tiny_bridge, tmp_path):
    model, processor = tiny_bridge
    processor.max_source_length, processor.source_in_prompt = 64, False
    model.save_pretrained(tmp_path / "b")
    processor.save_pretrained(tmp_path / "b")
    from transformers import AutoProcessor

    reloaded_processor = AutoProcessor.from_pretrained(tmp_path / "b", trust_remote_code=True)
    assert reloaded_processor.max_source_length == 64 and reloaded_processor.source_in_prompt is False
    reloaded = XBridgeForConditionalGeneration.from_pretrained(tmp_path / "b", device_map="auto")
    batch = processor(QUESTIONS[:1], src_lang="swh_Latn")
    assert torch.equal(reloaded.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=4),
                       model.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=4))


def test_hub_ids_resolve_through_offline_cache(tiny_bases, tmp_path):
    hf_home = tmp_path / "hf_home"
    make_offline_hub_cache(hf_home, "tiny-org/nllb-tiny", Path(tiny_bases["nmt"]))
    make_offline_hub_cache(hf_home, "tiny-org/qwen2-tiny", Path(tiny_bases["llm"]))
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    build = f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from tiny_bases import seeded_bridge
        from modeling_xbridge import XBridgeForConditionalGeneration
        from processing_xbridge import XBridgeProcessor
        model = seeded_bridge(XBridgeForConditionalGeneration.from_bases("tiny-org/nllb-tiny", "tiny-org/qwen2-tiny")).eval()
        processor = XBridgeProcessor.from_bases("tiny-org/nllb-tiny", "tiny-org/qwen2-tiny")
        model.save_pretrained({str(tmp_path / 'bridge')!r}); processor.save_pretrained({str(tmp_path / 'bridge')!r})
        print(model.generate(**processor({QUESTIONS!r}, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=6).tolist())
    """
    expected = run_fresh_python(build, cwd=tmp_path, env_extra=env).splitlines()[-1]
    config = json.loads((tmp_path / "bridge" / "config.json").read_text())
    assert config["nmt_name_or_path"] == "tiny-org/nllb-tiny" and config["llm_name_or_path"] == "tiny-org/qwen2-tiny"
    make_offline_hub_cache(hf_home, "tiny-org/xbridge-tiny", tmp_path / "bridge")
    for sub in ("nmt_tokenizer", "llm_tokenizer"):  # processor sub-folders, as a Hub repo has them
        make_offline_hub_cache(hf_home, "tiny-org/xbridge-tiny", tmp_path / "bridge" / sub, subfolder=sub)
    env.pop("PYTHONPATH")
    out = load_and_generate("tiny-org/xbridge-tiny", QUESTIONS, cwd=tmp_path, env_extra=env)
    assert str(out["ids"]) == expected
    assert out["llm"] == "tiny-org/qwen2-tiny"


def test_gradient_checkpointing_gives_same_gradients(tiny_bridge):
    model, processor = tiny_bridge
    batch = batch_for(processor)
    model.set_stage(1)
    model.train()
    model(**batch).loss.backward()
    reference = model.enc_map.up.weight.grad.clone()
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model.train()
    layer = model.llm.base_model.layers[0]
    calls = []
    checkpoint = layer._gradient_checkpointing_func
    layer._gradient_checkpointing_func = lambda *a, **k: calls.append(1) or checkpoint(*a, **k)
    model(**batch).loss.backward()
    assert calls, "the LLM layers were not checkpointed"
    assert not model.llm.training and not model.nmt.model.decoder.layers[0].training  # no dropout anywhere
    torch.testing.assert_close(model.enc_map.up.weight.grad, reference, rtol=1e-4, atol=1e-6)


def test_stage3_weights_skip_the_llm_vocabulary(tiny_bridge):
    model, processor = tiny_bridge
    model.config.lambda_llm = 0.0
    out = model(**batch_for(processor))
    assert out.loss_llm is None and out.llm_logits is None  # no (B, La, V) logits for a term that weighs nothing
    torch.testing.assert_close(out.loss, model.config.lambda_dec * out.loss_dec)
    assert out.decoder_memory is not None


def test_bf16_load_keeps_trained_cross_attention_in_fp32(tiny_bridge, tmp_path):
    model, _ = tiny_bridge
    with torch.no_grad():
        model.nmt.model.decoder.layers[0].encoder_attn.q_proj.weight.add_(1e-3 * torch.randn_like(model.nmt.model.decoder.layers[0].encoder_attn.q_proj.weight))
    model.save_pretrained(tmp_path / "b")
    reloaded = XBridgeForConditionalGeneration.from_pretrained(tmp_path / "b", dtype=torch.bfloat16)
    q = reloaded.nmt.model.decoder.layers[0].encoder_attn.q_proj.weight
    assert q.dtype == torch.float32 and reloaded.nmt.model.decoder.layers[0].fc1.weight.dtype == torch.bfloat16
    assert torch.equal(q, model.nmt.model.decoder.layers[0].encoder_attn.q_proj.weight)


def test_a_gpt2_style_llm_composes(tiny_bases):
    """GPT-2 keeps its blocks under `h` and its final norm in `ln_f` (no `model.layers`): the bridge finds the decoder
    layers as the one ModuleList of `num_hidden_layers` blocks under the base model, and every `llm_layer` index
    reads exactly the stock model's `hidden_states[index]`; generate works and a batch equals one by one."""
    torch.manual_seed(0)
    stock = AutoModelForCausalLM.from_pretrained(tiny_bases["gpt2"]).eval()
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["gpt2"])
    for layer in (0, 1, -2, -1):
        model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["gpt2"],
                                                                         llm_layer=layer)).eval()
        assert model.llm_layers() is model.llm.transformer.h
        batch = batch_for(processor, n=1)
        out = model(**batch)
        embeds, _, _, _ = model._llm_inputs(batch["input_ids"], None, batch["prompt_ids"], None, batch["answer_ids"], None)
        ref = stock(inputs_embeds=embeds, output_hidden_states=True)
        n = batch["answer_ids"].shape[1]
        torch.testing.assert_close(out.llm_logits[0, -n:], ref.logits[0, -n - 1 : -1], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.decoder_memory[0], model.map_to_memory(ref.hidden_states[layer][0, -n - 1 : -1]),
                                   rtol=1e-4, atol=1e-4)
    assert torch.isfinite(out.loss)
    questions = processor(QUESTIONS, src_lang="swh_Latn")
    together = model.generate(**questions, tgt_lang=["swh_Latn", "eng_Latn"], max_new_tokens=5, do_sample=False)
    for i, question in enumerate(QUESTIONS):  # GPT-2's learned positions follow the left padding too
        alone = model.generate(**processor([question], src_lang="swh_Latn"), tgt_lang=["swh_Latn", "eng_Latn"],
                               max_new_tokens=5, do_sample=False)
        for lang, ids in alone.items():
            assert together[lang][i, : ids.shape[1]].tolist() == ids[0].tolist(), lang

"""train.convert_original: checkpoints in the authors' layout, written here from tiny bases, converted and checked."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import M2M100ForConditionalGeneration

from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from hub_user import bundle_differences, load_and_generate
from tiny_bases import make_offline_hub_cache, seeded_bridge
from train import convert_original

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["Mama ana maembe 3 na ananunua 4 zaidi.", "Ninapenda kusoma vitabu.", "Habari ya dunia, leo ni siku nzuri."]
ANSWERS = ["3 + 4 = 7. The answer is 7.", "I like books.", "Hello world, today is a good day."]
TARGETS = ["3 + 4 = 7. Jibu ni 7.", "Napenda vitabu.", "Habari dunia, leo ni siku nzuri."]
# The authors' mapping-block names (reference notes, "Released checkpoint layout"), written out independently of
# the converter's own table: this package's MappingBlock part -> original part.
ORIGINAL_PARTS = {"norm.weight": "input_layernorm.weight", "up.weight": "linear1.weight", "up.bias": "linear1.bias",
                  "down.weight": "linear2.weight", "down.bias": "linear2.bias"}
ENC_MID, DEC_MID = 128, 48  # 4 x d_nmt as the release (this package's default would be d_llm = 32); not 2 x d_llm


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A package model over the tiny NLLB + Llama bases with trained-looking bridge weights, cross-attention included."""
    from tiny_bases import build_tiny_bases

    bases = build_tiny_bases(tmp_path_factory.mktemp("bases"))
    model = XBridgeForConditionalGeneration.from_bases(bases["nmt"], bases["llama"], enc_map_hidden_size=ENC_MID,
                                                       dec_map_hidden_size=DEC_MID, lambda_dec=1.0, lambda_ot=6.0)
    seeded_bridge(model, seed=3)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():  # cross-attention is trained in the release: it must come from the checkpoint, not the base
        for name, param in model.named_parameters():
            if model._is_cross_attention(name):
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
    return model.eval(), bases


def original_state(model, nmt=None) -> dict:
    """The weights as the public model class saves them; `nmt`: another NLLB model's base weights inside."""
    state = {}
    for key, tensor in model.nmt.state_dict().items():
        if key in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"):
            continue  # tied to model.shared.weight: saved once
        if nmt is not None and not ("encoder_attn." in key or "encoder_attn_layer_norm." in key):
            tensor = nmt.state_dict()[key]
        state["model_mt." + key] = tensor
    state.update({"model_llm." + k: v for k, v in model.llm.state_dict().items()})
    state["mapping_enc2llm.end_boundary"] = model.boundary.reshape(1, 1, -1)
    for ours, theirs in ORIGINAL_PARTS.items():
        state[f"mapping_enc2llm.layers.0.{theirs}"] = model.enc_map.get_parameter(ours)
        for i in (0, 1):
            state[f"mapping_llm2dec.layers.{i}.{theirs}"] = model.dec_map[i].get_parameter(ours)
    state["mapping_llm2dec.end_boundary"] = torch.zeros(1, 1, model.config.nmt_hidden_size)
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def original_config(model, **overrides) -> dict:
    llm = model.config.llm_config
    config = {
        "architectures": ["XBridgeModel"], "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
        "mt_path": "/data/ictnlp/models/nllb-200-distilled-1.3B", "llm_path": "/data/ictnlp/models/llama3-8B",
        "dec_lambda": 1.0, "ot_lambda": 6.0, "max_gen_len": 512, "mt_pad_token_id": 1, "mt_eos_token_id": 2,
        "llm_bos_token_id": llm.bos_token_id, "llm_eos_token_id": llm.eos_token_id, "llm_pad_token_id": llm.pad_token_id,
        "freeze_enc": True, "freeze_llm": True, "freeze_dec": False, "freeze_mapping_enc2llm": True,
        "freeze_mapping_llm2dec": False, "mt_vocab_size": model.config.nmt_config.vocab_size, "hidden_act": "silu",
        "rms_norm_eps": 1e-6, "torch_dtype": "float32",
    }
    config.update(overrides)
    return config


def write_original(folder: Path, state: dict, config: dict, shards: int = 1, pickle: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if pickle:
        torch.save(state, folder / "pytorch_model.bin")
    elif shards == 1:
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    else:
        keys = list(state)
        weight_map = {}
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = keys[i * len(keys) // shards:(i + 1) * len(keys) // shards]
            save_file({k: state[k] for k in part}, folder / name, metadata={"format": "pt"})
            weight_map.update({k: name for k in part})
        total = sum(t.numel() * t.element_size() for t in state.values())
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return folder


def convert(source, bases, out, *flags):
    convert_original.main([str(source), "--nmt", bases["nmt"], "--llm", bases["llama"], "--out", str(out), *flags])
    return out


def batch(processor):
    return processor(QUESTIONS, src_lang="swh_Latn", answers=ANSWERS, targets=TARGETS, tgt_lang="swh_Latn")


@pytest.mark.parametrize("shards", [1, 3])
def test_converted_bridge_matches_a_model_built_directly(reference, tmp_path, capsys, shards):
    model, bases = reference
    state = original_state(model)
    source = write_original(tmp_path / "original", state, original_config(model), shards=shards)
    out = convert(source, bases, tmp_path / "converted")
    printed = capsys.readouterr().out
    assert "forward: loss" in printed and "greedy swh_Latn" in printed  # the verification run printed its outputs
    assert "size:" in printed and "peak memory" in printed

    converted = XBridgeForConditionalGeneration.from_pretrained(out).eval()
    own = converted.state_dict()
    landed = {"boundary": "mapping_enc2llm.end_boundary"}
    landed.update({f"enc_map.{ours}": f"mapping_enc2llm.layers.0.{theirs}" for ours, theirs in ORIGINAL_PARTS.items()})
    landed.update({f"dec_map.{i}.{ours}": f"mapping_llm2dec.layers.{i}.{theirs}" for i in (0, 1) for ours, theirs in ORIGINAL_PARTS.items()})
    landed.update({n: "model_mt." + n[len("nmt."):] for n in own if converted._is_cross_attention(n)})
    assert len(landed) == 1 + 5 + 10 + 2 * 10  # boundary, enc block, two dec blocks, 2 layers x 10 cross-attn tensors
    for name, key in landed.items():
        assert torch.equal(own[name], state[key].reshape(own[name].shape)), name
    assert {n for n, _ in converted.named_parameters() if converted.is_bridge_parameter(n)} == set(landed)

    processor = XBridgeProcessor.from_pretrained(out)
    inputs = batch(processor)
    with torch.no_grad():
        ours, theirs = converted(**inputs), model(**inputs)
    torch.testing.assert_close(ours.loss_llm, theirs.loss_llm, rtol=0, atol=0)
    torch.testing.assert_close(ours.loss_dec, theirs.loss_dec, rtol=0, atol=0)
    prompt = {k: inputs[k] for k in processor.model_input_names}
    ids = converted.generate(**prompt, tgt_lang="swh_Latn", max_new_tokens=8)
    assert torch.equal(ids, model.generate(**prompt, tgt_lang="swh_Latn", max_new_tokens=8))
    assert len({tuple(r) for r in ids.tolist()}) > 1  # different inputs, different outputs: the comparison means something


def test_settings_prompt_and_provenance_carry_over(reference, tmp_path, capsys):
    model, bases = reference
    config = original_config(model, llm_pad_token_id=151650, dec_lambda=0.5, ot_lambda=3.0)
    source = write_original(tmp_path / "original", original_state(model), config)
    with pytest.warns(UserWarning, match="llm_pad_token_id=151650 in the checkpoint, pad_token_id=151643 in the base"):
        out = convert(source, bases, tmp_path / "converted", "--skip_verify")
    saved = json.loads((out / "config.json").read_text())
    assert (saved["enc_map_hidden_size"], saved["dec_map_hidden_size"], saved["llm_layer"]) == (ENC_MID, DEC_MID, -2)
    assert (saved["lambda_llm"], saved["lambda_dec"], saved["lambda_ot"], saved["stage"]) == (1.0, 0.5, 3.0, 3)
    assert saved["llm_config"]["pad_token_id"] == 151650 and saved["llm_config"]["bos_token_id"] == 151643
    assert (saved["nmt_config"]["pad_token_id"], saved["nmt_config"]["eos_token_id"]) == (1, 2)
    # local bases are saved relative to the bridge's folder (Hub ids as they are: the fresh-process test)
    assert [os.path.normpath(out / saved[k]) for k in ("nmt_name_or_path", "llm_name_or_path")] == [bases["nmt"], bases["llama"]]
    assert saved["bridge_only"] is True and saved["lang_code_to_id"] == model.config.lang_code_to_id
    assert json.loads((out / "generation_config.json").read_text())["max_new_tokens"] == 512
    processor = XBridgeProcessor.from_pretrained(out)
    assert processor.prompt_template.endswith("### Response: Let's think step by step.")
    assert processor.source_in_prompt is True and processor.use_chat_template is False
    prompt = processor.llm_tokenizer.decode(processor([QUESTIONS[0]], src_lang="swh_Latn")["prompt_ids"][0])
    assert prompt == convert_original.RELEASE_PROMPT.format(query=QUESTIONS[0])  # the raw question is in the prompt
    card = (out / "README.md").read_text()
    assert f"from `{source}` (a local folder)" in card and "nllb-200-distilled-1.3B" in card
    assert "relative difference" in card and "max_new_tokens=512" in card
    assert (out / "processor_config.json").exists() and bundle_differences(out) == []  # the package's remote code
    # --stage overrides the stage read from the freeze flags
    with pytest.warns(UserWarning, match="llm_pad_token_id"):
        convert(source, bases, tmp_path / "as_stage2", "--skip_verify", "--stage", "2")
    assert json.loads((tmp_path / "as_stage2" / "config.json").read_text())["stage"] == 2


def test_bases_inside_that_differ_from_the_named_ones(reference, tmp_path):
    model, bases = reference
    torch.manual_seed(7)
    other = M2M100ForConditionalGeneration(model.nmt.config)  # same shapes, other weights: "distilled vs full"
    source = write_original(tmp_path / "original", original_state(model, nmt=other), original_config(model))
    with pytest.raises(SystemExit, match=r"model_mt\.model\.\S+ differs from --nmt's model\.\S+ \(relative difference .*"
                                         r"--allow_base_mismatch"):
        convert(source, bases, tmp_path / "refused", "--skip_verify")
    with pytest.warns(UserWarning, match=r"model_mt\.model\.\S+ differs.*converting anyway"):
        out = convert(source, bases, tmp_path / "forced", "--skip_verify", "--allow_base_mismatch")
    assert "relative difference" in (out / "README.md").read_text()


def test_bases_without_safetensors_are_compared_once_loaded(reference, tmp_path):
    model, bases = reference
    nmt_bin = tmp_path / "nllb-bin"  # a base published as pytorch_model.bin only: sampled after loading it
    shutil.copytree(bases["nmt"], nmt_bin)
    torch.save(load_file(nmt_bin / "model.safetensors"), nmt_bin / "pytorch_model.bin")
    (nmt_bin / "model.safetensors").unlink()
    bases = {**bases, "nmt": str(nmt_bin)}
    torch.manual_seed(7)
    other = M2M100ForConditionalGeneration(model.nmt.config)
    source = write_original(tmp_path / "differs", original_state(model, nmt=other), original_config(model))
    with pytest.raises(SystemExit, match=r"model_mt\.model\.\S+ differs from --nmt's model\.\S+ \(relative difference"):
        convert(source, bases, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.converting").exists()  # nothing half-checked left
    with pytest.warns(UserWarning, match="8 sampled base tensors not compared"):
        convert(source, bases, tmp_path / "unchecked", "--skip_verify")
    same = write_original(tmp_path / "same", original_state(model), original_config(model))
    card = (convert(same, bases, tmp_path / "out") / "README.md").read_text()
    assert card.count("- model_mt.") == 8 and card.count("- model_llm.") == 8 and "not compared" not in card


BAD_INPUTS = {
    "missing key": (lambda s: s.pop("mapping_llm2dec.layers.1.linear2.bias"), (),
                    r"1 missing key\(s\): mapping_llm2dec\.layers\.1\.linear2\.bias"),
    "unknown key": (lambda s: s.update({"mapping_enc2llm.gate.weight": torch.zeros(2)}), (),
                    r"1 unknown key\(s\), not part of the XBridge layout: mapping_enc2llm\.gate\.weight"),
    "wrong shape": (lambda s: s.update({"mapping_enc2llm.layers.0.linear2.weight": torch.zeros(32, 64)}), (),
                    r"mapping_enc2llm\.layers\.0\.linear2\.weight: \(32, 64\) in the checkpoint, \(32, 128\) expected"),
    "unreachable base": (lambda s: None, ("--llm", "tiny-org/no-such-llm"),
                         r"cannot load the config of --llm 'tiny-org/no-such-llm'.*Hub id that exists"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_named(reference, tmp_path, monkeypatch, case):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no 20 s of retries for a missing Hub id
    model, bases = reference
    state = original_state(model)
    edit, flags, message = BAD_INPUTS[case]
    edit(state)
    source = write_original(tmp_path / "original", state, original_config(model))
    with pytest.raises(SystemExit, match=message):
        convert(source, bases, tmp_path / "out", "--skip_verify", *flags)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_pickle_needs_the_flag(reference, tmp_path):
    model, bases = reference
    state = original_state(model)
    source = write_original(tmp_path / "original", state, original_config(model), pickle=True)
    with pytest.raises(SystemExit, match=r"only pickle weights \(pytorch_model\.bin\).*--allow_pickle"):
        convert(source, bases, tmp_path / "refused", "--skip_verify")
    out = convert(source, bases, tmp_path / "allowed", "--skip_verify", "--allow_pickle")
    converted = XBridgeForConditionalGeneration.from_pretrained(out)
    assert torch.equal(converted.dec_map[1].down.weight, state["mapping_llm2dec.layers.1.linear2.weight"])


def test_hub_source_converts_and_loads_in_a_fresh_process(reference, tmp_path):
    model, bases = reference
    hf_home = tmp_path / "hf_home"
    make_offline_hub_cache(hf_home, "ICTNLP/XBridge-tiny", write_original(tmp_path / "original", original_state(model),
                                                                          original_config(model), shards=2))
    make_offline_hub_cache(hf_home, "tiny-org/nllb-tiny", Path(bases["nmt"]))
    make_offline_hub_cache(hf_home, "tiny-org/llama-tiny", Path(bases["llama"]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    cli = subprocess.run([sys.executable, "-m", "train.convert_original", "ICTNLP/XBridge-tiny", "--nmt", "tiny-org/nllb-tiny",
                          "--llm", "tiny-org/llama-tiny", "--out", str(tmp_path / "converted")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "revision 0000000000000000000000000000000000000000" in cli.stdout and "greedy swh_Latn" in cli.stdout
    assert "at revision `0000000000000000000000000000000000000000`" in (tmp_path / "converted" / "README.md").read_text()

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = load_and_generate(tmp_path / "converted", QUESTIONS, cwd=workdir, env_extra=env)
    processor = XBridgeProcessor.from_pretrained(tmp_path / "converted")
    expected = model.generate(**processor(QUESTIONS, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=6)
    assert result["ids"] == expected.tolist()
    assert result["module"].startswith("transformers_modules") and result["stage"] == 3  # the remote code, not the checkout

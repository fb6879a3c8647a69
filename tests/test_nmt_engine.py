"""The CTranslate2 NLLB engine gives generate()'s outputs in float32 (greedy and beam) on a trained mini-world NMT,
is converted once next to the checkpoint, and fails clearly when absent; build-data and the nmt system use it."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

ct2 = pytest.importorskip("ctranslate2")  # optional dependency: pip install "xbridge[fast]"

from nmt_engine import CTranslate2NLLB, TransformersNLLB, converted_path, load_nllb  # noqa: E402
from miniworld import shipped  # noqa: E402
from miniworld.world import WorldConfig, generate  # noqa: E402

torch.set_num_threads(1)
TINY = WorldConfig(n_llm_problems=200, n_nmt_items=200, n_stage1=30, n_task=30, n_test_problems=30, n_test_sentences=20)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The shipped mini-world NMT (a copy: the converted model is written next to it) on a small world's held-out
    sentences: real translations out, not a random model's loops."""
    import shutil

    root = tmp_path_factory.mktemp("ct2-world")
    generate(root / "world", TINY)
    nmt = shutil.copytree(shipped.checkpoint("nmt"), root / "nmt")
    flores = root / "world" / "test" / "flores"
    text = {p.stem: p.read_text(encoding="utf-8").splitlines() for p in flores.glob("*.devtest")}
    return {"nmt": str(nmt), "text": text}


def _chrf(hyps, refs):
    import sacrebleu

    return sacrebleu.corpus_chrf(hyps, [refs]).score


@pytest.mark.parametrize("src, tgt", [("qaa_Latn", "eng_Latn"), ("eng_Latn", "qab_Cyrl")])
def test_float32_outputs_equal_generate(world, src, tgt):
    hf = TransformersNLLB(world["nmt"])
    fast = CTranslate2NLLB(world["nmt"], compute_type="float32", threads=1)
    texts, refs = world["text"][src], world["text"][tgt]
    greedy = hf.translate(texts, src, tgt, max_new_tokens=100)
    assert fast.translate(texts, src, tgt, max_new_tokens=100) == greedy
    # The comparison means something: varied, finished sentences of the right language, not a random model's loops.
    assert len(set(greedy)) >= 0.5 * len(texts) and _chrf(greedy, refs) > 12
    lengths = [len(hf.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in greedy]
    assert sum(n < 90 for n in lengths) >= 0.75 * len(texts)  # most sentences end with </s> before the limit
    # A limit that cuts most sentences: cut at the same token (max_new_tokens counts the code and </s> alike).
    assert fast.translate(texts, src, tgt, max_new_tokens=6) == hf.translate(texts, src, tgt, max_new_tokens=6)
    # Beam search: CTranslate2 stops when num_beams hypotheses are finished = generate(early_stopping=True).
    hf.tokenizer.src_lang = src
    enc = hf.tokenizer(texts, return_tensors="pt", padding=True)
    ids = hf.model.generate(**enc, forced_bos_token_id=hf.tokenizer.convert_tokens_to_ids(tgt), num_beams=4,
                            early_stopping=True, do_sample=False, max_new_tokens=100)
    assert fast.translate(texts, src, tgt, num_beams=4, max_new_tokens=100) == hf.tokenizer.batch_decode(
        ids, skip_special_tokens=True)


def test_int8_quality_is_measured_and_close(world):
    src, tgt = "qaa_Latn", "eng_Latn"
    texts, refs = world["text"][src], world["text"][tgt]
    f32 = load_nllb("ctranslate2", world["nmt"], compute_type="float32", threads=1).translate(texts, src, tgt)
    int8 = load_nllb("ctranslate2", world["nmt"], compute_type="int8", threads=1).translate(texts, src, tgt)
    delta = _chrf(int8, refs) - _chrf(f32, refs)
    print(f"int8 chrF delta on {len(texts)} mini-world sentences: {delta:+.2f}")
    # 20 sentences of an undertrained model: a loose bound here; bench/ measures it on more sentences.
    assert abs(delta) <= 3.0
    assert sum(a == b for a, b in zip(int8, f32)) >= len(texts) // 2


def test_converted_once_next_to_the_checkpoint_atomically(world):
    folder = converted_path(world["nmt"])
    assert folder == os.path.abspath(world["nmt"]) + "-ct2"
    CTranslate2NLLB(world["nmt"], threads=1)
    model_bin = Path(folder) / "model.bin"
    stamp = model_bin.stat().st_mtime_ns
    CTranslate2NLLB(world["nmt"], compute_type="int8", threads=1)  # another compute type: no new conversion
    assert model_bin.stat().st_mtime_ns == stamp
    parent = Path(folder).parent
    assert not [p for p in parent.iterdir() if ".tmp-" in p.name]  # no half-written conversion left behind
    assert json.loads((Path(folder) / "xbridge_conversion.json").read_text())["source"] == world["nmt"]


def test_clear_errors(world, monkeypatch):
    with pytest.raises(ValueError, match="unknown engine 'ct2'; valid engines: transformers, ctranslate2"):
        load_nllb("ct2", world["nmt"])
    with pytest.raises(ValueError, match="compute type 'float16' is not supported on cpu; this device offers"):
        load_nllb("ctranslate2", world["nmt"], compute_type="float16")
    with pytest.raises(ValueError, match="unknown compute type 'int4'"):
        load_nllb("ctranslate2", world["nmt"], compute_type="int4")
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if not installed
    with pytest.raises(ImportError, match=r'not installed: pip install "xbridge\[fast\]"'):
        load_nllb("ctranslate2", world["nmt"])


def test_build_data_and_nmt_system_give_the_same_outputs_on_either_engine(world, tmp_path):
    from eval.systems import load_system
    from train.build_data import main as build_main

    en = world["text"]["eng_Latn"]
    (tmp_path / "en.txt").write_text("\n".join(en) + "\n", encoding="utf-8")
    (tmp_path / "x.txt").write_text("\n".join(world["text"]["qaa_Latn"]) + "\n", encoding="utf-8")
    shards = {}
    for engine in ("transformers", "ctranslate2"):
        out = tmp_path / engine
        build_main(["trilingual", "--nmt_name_or_path", world["nmt"], "--src_file", str(tmp_path / "x.txt"),
                    "--en_file", str(tmp_path / "en.txt"), "--src_lang", "qaa_Latn", "--tgt_langs",
                    "qab_Cyrl,qac_Thai", "--output_dir", str(out), "--num_beams", "1", "--engine", engine,
                    "--compute_type", "float32" if engine == "ctranslate2" else "default"])
        shards[engine] = (out / "shard-00000.jsonl").read_bytes()
    assert shards["transformers"] == shards["ctranslate2"]
    with pytest.raises(Exception, match="engine"):  # resuming a folder with another engine is refused
        build_main(["trilingual", "--nmt_name_or_path", world["nmt"], "--src_file", str(tmp_path / "x.txt"),
                    "--en_file", str(tmp_path / "en.txt"), "--src_lang", "qaa_Latn", "--tgt_langs",
                    "qab_Cyrl,qac_Thai", "--output_dir", str(tmp_path / "transformers"), "--num_beams", "1",
                    "--engine", "ctranslate2"])

    texts = world["text"]["qaa_Latn"][:8]
    a = load_system("nmt", nmt=world["nmt"], device="cpu").translate(texts, "qaa_Latn", "eng_Latn")
    b = load_system("nmt", nmt=world["nmt"], device="cpu", engine="ctranslate2", compute_type="float32")
    assert b.nmt.engine.engine == "ctranslate2" and b.translate(texts, "qaa_Latn", "eng_Latn") == a
    with pytest.raises(ValueError, match="applies to the systems that only translate"):
        load_system("direct", llm=world["nmt"], engine="ctranslate2")

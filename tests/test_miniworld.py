"""The mini-world: the generator's guarantees and the fast end-to-end variant of the main job (~5 min)."""

import dataclasses
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import pytest

from miniworld.world import ENGLISH, LOW_RESOURCE, UNSEEN, World, WorldConfig, generate

REPO = Path(__file__).resolve().parent.parent
TINY = WorldConfig(n_llm_problems=200, n_nmt_items=200, n_stage1=30, n_task=30, n_test_problems=30, n_test_sentences=20,
                   n_llm_general=300, n_nmt_stories=30, n_test_stories=20)
SCRIPT_NAMES = {"Latn": "LATIN", "Cyrl": "CYRILLIC", "Thai": "THAI", "Deva": "DEVANAGARI", "Grek": "GREEK", "Armn": "ARMENIAN"}


def _jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate(out, TINY)
    return out


def test_generation_is_deterministic(world_dir, tmp_path):
    generate(tmp_path, TINY)
    for name in ("llm_pretrain.jsonl", "nmt_pretrain.jsonl", "stage1.jsonl", "task.jsonl", "test/problems.jsonl"):
        assert (tmp_path / name).read_bytes() == (world_dir / name).read_bytes(), name


def test_languages_differ_in_script_order_and_vocabulary(world_dir):
    info = json.loads((world_dir / "world.json").read_text())
    langs = info["languages"]
    assert len(langs) >= 5
    assert {spec["order"] for spec in langs.values()} == {"SVO", "SOV", "VSO"}
    assert all(re.fullmatch(r"q[a-t][a-z]_[A-Z][a-z]{3}", code) for code in langs)  # ISO 639-3 private use
    sentences = {code: (world_dir / "test" / "flores" / f"{code}.devtest").read_text(encoding="utf-8") for code in langs}
    for code, text in sentences.items():
        letters = [ch for ch in text if ch.isalpha()]
        script = SCRIPT_NAMES[code.split("_")[1]]
        wrong = [ch for ch in letters if not unicodedata.name(ch).startswith(script)]
        assert letters and not wrong, f"{code}: letters outside {script}: {wrong[:5]}"
    vocab = {code: set(re.findall(r"\w+", text)) - set(re.findall(r"\d+", text)) for code, text in sentences.items()}
    codes = list(vocab)
    for i, a in enumerate(codes):
        for b in codes[i + 1:]:
            assert not vocab[a] & vocab[b], f"{a} and {b} share words"


def test_answers_are_the_last_number_in_every_language(world_dir):
    rows = _jsonl(world_dir / "test" / "problems.jsonl")
    assert {r["lang"] for r in rows} == {ENGLISH, *json.loads((world_dir / "world.json").read_text())["languages"]}
    for r in rows:
        for text in (r["answer_en"], r["answer_tgt"]):
            assert int(re.findall(r"\d+", text)[-1]) == r["answer"], text
    assert {r["n_ops"] for r in rows} == {1, 2, 3}


def test_arithmetic_of_reasoning_is_right(world_dir):
    for r in _jsonl(world_dir / "llm_pretrain.jsonl"):
        for a, op, b, c in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", r["completion"]):
            assert eval(f"{a} {op} {b}") == int(c), r["completion"]  # noqa: S307  (digits and one operator only)


def test_held_out_sets_never_appear_in_training(world_dir):
    test_questions = {r["question"] for r in _jsonl(world_dir / "test" / "problems.jsonl")}
    train_questions = {r["question"] for r in _jsonl(world_dir / "task.jsonl")}
    train_questions |= {r["prompt"] for r in _jsonl(world_dir / "llm_pretrain.jsonl")}
    assert not any(q in p for q in test_questions for p in train_questions)
    test_sentences = set((world_dir / "test" / "flores" / f"{ENGLISH}.devtest").read_text().splitlines())
    nmt_text = {r["src_text"] for r in _jsonl(world_dir / "nmt_pretrain.jsonl")}
    assert not test_sentences & nmt_text


def test_unseen_language_is_out_of_every_xbridge_stage_and_low_resource_is_small(world_dir):
    stage1, task = _jsonl(world_dir / "stage1.jsonl"), _jsonl(world_dir / "task.jsonl")
    assert UNSEEN not in {r["src_lang"] for r in stage1 + task} | {r["tgt_lang"] for r in stage1 + task}
    nmt = _jsonl(world_dir / "nmt_pretrain.jsonl")
    per_lang = {code: sum(r["src_lang"] == code for r in nmt) for code in World(TINY).codes}
    assert per_lang[UNSEEN] > 0  # the translation model knows it
    assert per_lang[LOW_RESOURCE] * 5 <= min(v for k, v in per_lang.items() if k != LOW_RESOURCE)


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="qzz_Latn"):
        World(TINY).realise([], "qzz_Latn")


# Measured over seeds 0-4 of `python -m miniworld --fast --seeds 0 1 2 3 4` (ANALYSIS.md, section 2): xbridge minus
# direct was +71.7, +65.0, +66.7, +63.3 and +13.3 points (the last seed's stage 2 had not converged), every paired
# interval above 0. The threshold sits 8 points below the worst seed; a bridge that does not transfer (the failed CI
# run before v4: +2.5) still fails it.
FAST_MARGIN = 5


def _fast_run(out: Path, **environment: str) -> dict:
    """`python -m miniworld --fast` from the shipped bases into `out` (`environment`: more variables of its
    process); returns its results.json."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **environment}
    subprocess.run([sys.executable, "-m", "miniworld", "--fast", "--out", str(out / "run"), "--results", str(out / "results")],
                   check=True, cwd=REPO, env=env)
    return json.loads((out / "results" / "results.json").read_text())


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fast")
    return out, _fast_run(out)


@pytest.mark.timeout(1200)
def test_fast_main_job_learns(fast_run):
    """XBridge far above `direct` (on the 95% intervals, not only the means), every loss term decreasing."""
    out, results = fast_run
    avg = "avg (non-en)"
    xbridge, direct = results["math"]["answer-en"]["xbridge"][avg], results["math"]["answer-en"]["direct"][avg]
    assert xbridge["mean"] >= direct["mean"] + FAST_MARGIN, (xbridge, direct)
    claim = next(c for c in results["claims"] if c["claim"] == "xbridge - direct, English answer" and c["scope"] == avg)
    assert claim["verdict"] == "higher", claim
    for stage, terms in results["losses"].items():
        for term, values in terms.items():
            if term == "ce_llm" and stage.endswith("stage3"):
                continue  # stage 3 trains the decoder side only; the LLM's loss is logged, not optimised
            tail = values[-3:]  # logged values are means over ~10% of the steps each
            assert len(values) >= 4 and sum(tail) / len(tail) < values[0], f"{stage} {term} did not decrease: {values}"
    for name in ("README.md", "math_en.png", "math_x.png", "translation.png", "run_info.json"):
        assert (out / "results" / name).exists(), name


def test_stories_summaries_and_general_data(world_dir):
    """The general world: each story's summary is its protagonist's events cut to their core, in every language;
    no held-out story, sentence or problem is trained on; the LLM's instructions are the harness's own."""
    from eval.systems import INSTRUCTIONS
    from miniworld.world import TASK_INSTRUCTIONS

    assert TASK_INSTRUCTIONS == INSTRUCTIONS
    langs = [ENGLISH, *json.loads((world_dir / "world.json").read_text())["languages"]]
    stories = _jsonl(world_dir / "test" / "stories.jsonl")
    assert {r["lang"] for r in stories} == set(langs) and len(stories) == len(langs) * TINY.n_test_stories
    for r in (r for r in stories if r["lang"] == ENGLISH):
        hero = r["story"].split()[0]
        summary = [s + "." for s in r["summary"].rstrip(".").split(". ")]
        assert 1 <= len(summary) <= 2 and all(s.startswith(hero + " ") for s in summary), r
        assert len(r["summary"].split()) < len(r["story"].split())
    # XL-Sum's layout, line-aligned across languages
    for lang in langs:
        rows = _jsonl(world_dir / "test" / "xlsum" / f"{'english' if lang == ENGLISH else lang[:3]}_test.jsonl")
        assert [row["text"] for row in rows] == [r["story"] for r in stories if r["lang"] == lang]
    held_out = {r["story"] for r in stories} | {r["question"] for r in _jsonl(world_dir / "test" / "problems.jsonl")}
    llm = _jsonl(world_dir / "general" / "llm.jsonl")
    assert {r.get("task", "text") for r in llm} == {"math", "summarize", "text"}
    assert not held_out & {r.get("input", r.get("text")) for r in llm}
    task = _jsonl(world_dir / "general" / "task.jsonl")
    assert {r["task"] for r in task} == {"math", "summarize"} and not held_out & {r["question"] for r in task}
    assert all(r["instruction"] == INSTRUCTIONS[r["task"]] for r in task)
    assert UNSEEN not in {r["src_lang"] for r in task} | {r["src_lang"] for r in _jsonl(world_dir / "general" / "stage1.jsonl")}
    # repeated passages (where the LLM learns to copy from its context): `A\nA`, their share as configured, none
    # holding a held-out sentence
    repeats = [r["text"].split("\n") for r in llm if "text" in r and "\n" in r["text"]]
    assert all(len(parts) == 2 and parts[0] == parts[1] for parts in repeats)
    assert len(repeats) == round(TINY.repeat_fraction * (len(llm) - len(repeats)))
    sentences = lambda text: {s.rstrip(".") for s in text.split(". ")}  # noqa: E731
    held_out_sentences = {s for r in stories if r["lang"] == ENGLISH for s in sentences(r["story"])}
    assert repeats and not held_out_sentences & {s for parts in repeats for s in sentences(parts[0])}


def test_repeated_passages_leave_every_other_file_unchanged(world_dir, tmp_path):
    """The repeated passages come from their own random stream: a world without them differs in the LLM's records
    only (the NMT, the stage data and the test sets stay byte for byte what they are)."""
    generate(tmp_path, dataclasses.replace(TINY, repeat_fraction=0.0))
    files = sorted(p.relative_to(world_dir) for p in world_dir.rglob("*") if p.is_file() and p.name != "COMPLETED")
    differ = [str(f) for f in files if (world_dir / f).read_bytes() != (tmp_path / f).read_bytes()]
    assert differ == ["general/llm.jsonl", "world.json"]


@pytest.mark.timeout(1200)
def test_fast_main_job_repeats_byte_for_byte(fast_run, tmp_path):
    """The same command twice (here: with a competing process on the machine, this test suite) writes the same
    results.json, byte for byte: no thread count, data order or schedule depends on load or timing. The second run
    starts as on another kind of CPU (ATen's generic kernels instead of this CPU's AVX2 / AVX-512 ones): the jobs pin
    their kernels (train/machine.py), so the bits do not depend on the CPU either."""
    out, _ = fast_run
    _fast_run(tmp_path, ATEN_CPU_CAPABILITY="default")
    assert (tmp_path / "results" / "results.json").read_bytes() == (out / "results" / "results.json").read_bytes()
    assert (tmp_path / "results" / "README.md").read_bytes() == (out / "results" / "README.md").read_bytes()
    # each evaluation's kept result (jobs.Job.cache; its fingerprint names the other run folder) repeats too
    kept = sorted(p.relative_to(out / "results") for p in (out / "results" / "kept").rglob("*.json.gz"))
    assert Path("kept/xbridge/seed0.json.gz") in kept and Path("kept/eval/direct.json.gz") in kept
    for path in kept:
        first, second = (json.loads(gzip.decompress((root / "results" / path).read_bytes())) for root in (out, tmp_path))
        assert first["result"] == second["result"] and first["fingerprint"] != second["fingerprint"], path
    # the same command again without its training folders (a new session): every result is taken from `kept/`,
    # nothing is trained, and the report is the same
    report = (tmp_path / "results" / "results.json").read_bytes()
    shutil.rmtree(tmp_path / "run")
    _fast_run(tmp_path)
    assert (tmp_path / "results" / "results.json").read_bytes() == report
    assert [p.parent.name for p in (tmp_path / "run").rglob("COMPLETED")] == ["world"]  # nothing trained


def test_bases_fast_pretraining_starts_and_losses_fall(tmp_path):
    """`python -m miniworld bases --fast`: both bases pretrain from scratch (a few steps) and their losses fall."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "miniworld", "bases", "--fast", "--out", str(tmp_path / "run"),
                    "--results", str(tmp_path / "results")], check=True, cwd=REPO, env=env)
    report = json.loads((tmp_path / "results" / "base_models.json").read_text())
    for kind in ("llm", "nmt"):
        losses = report["rebuilt"][kind]["losses"]
        assert len(losses) >= 10 and max(losses[-3:]) < 0.8 * losses[0], (kind, losses)
        assert (tmp_path / "run" / "bases" / kind / "model.safetensors").exists()


def test_bases_fast_general_pretraining_starts_and_losses_fall(tmp_path):
    """`python -m miniworld bases --general --fast`: the NMT with stories and the three LLM families pretrain from
    scratch (a few steps), each loss falls, and each LLM loads back with its family's classes."""
    from transformers import AutoConfig

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "miniworld", "bases", "--general", "--fast", "--out", str(tmp_path / "run"),
                    "--results", str(tmp_path / "results")], check=True, cwd=REPO, env=env)
    report = json.loads((tmp_path / "results" / "base_models_general.json").read_text())
    assert set(report["rebuilt"]) == {"nmt-general", "llm-llama", "llm-qwen2", "llm-gemma"}
    for kind, metrics in report["rebuilt"].items():
        losses = metrics["losses"]
        assert len(losses) >= 10 and min(losses[-3:]) < 0.8 * losses[0], (kind, losses)
        if kind.startswith("llm-"):
            assert AutoConfig.from_pretrained(tmp_path / "run" / "bases" / kind).model_type == kind.removeprefix("llm-")
            assert 0 <= metrics["summary_rouge_l"] <= 100 and metrics["n_stories"] == WorldConfig.fast().n_test_stories


def test_copy_warmup_goes_on_in_rounds_until_its_loss_is_low(world_dir, tmp_path):
    """The copy warm-up's rounds (`BaseConfig.llm_copy_warmup_until`): a run whose first round already ends below
    the bound trains exactly as a one-round warm-up did (bit for bit: the shipped Llama and Qwen2 keep their weights),
    and a bound no round reaches runs every round, each logging its losses."""
    import torch
    from safetensors.torch import load_file

    from miniworld.bases import BaseConfig, train_general_llm

    small = dataclasses.replace(BaseConfig.fast(), llm_steps=8, llm_d_model=32, llm_ffn=64, llm_heads=2, llm_batch=4,
                                llm_copy_warmup_steps=20, llm_copy_fraction=0.05, llm_by_length=False)
    torch.set_num_threads(1)
    runs = {name: train_general_llm("llama", world_dir, tmp_path / name, dataclasses.replace(small, **changed))
            for name, changed in (("one-round", {}),
                                  ("stops-after-one", dict(llm_copy_warmup_until=1e9, llm_copy_warmup_rounds=3)),
                                  ("every-round", dict(llm_copy_warmup_until=0.0, llm_copy_warmup_rounds=3)))}
    info = {name: json.loads((folder / "COMPLETED").read_text()) for name, folder in runs.items()}
    weights = {name: load_file(folder / "model.safetensors") for name, folder in runs.items()}
    assert info["stops-after-one"]["copy_warmup_losses"] == info["one-round"]["copy_warmup_losses"]
    assert all(torch.equal(weights["one-round"][k], weights["stops-after-one"][k]) for k in weights["one-round"])
    losses = info["every-round"]["copy_warmup_losses"]
    assert len(losses) == 3 * len(info["one-round"]["copy_warmup_losses"]) and losses[-1] < losses[0], losses
    assert not all(torch.equal(weights["one-round"][k], weights["every-round"][k]) for k in weights["one-round"])


def test_base_card_is_a_hub_card_with_its_provenance():
    from huggingface_hub import ModelCard

    from miniworld.pipeline import _card

    card = ModelCard(_card("llm", "An LLM", "10 steps", "English accuracy 50.0%", "ab" * 32))
    assert (card.data.license, card.data.library_name) == ("apache-2.0", "transformers")
    assert card.data.tags == ["xbridge", "mini-world", "synthetic"]
    assert "- Rebuild: `python -m miniworld bases`" in card.text and f"`{'ab' * 32}`" in card.text
    assert 'AutoModelForCausalLM.from_pretrained(checkpoint("xbridge-miniworld/llm"))' in card.text


def test_shipped_checkpoints_match_their_checksums_and_name_a_corrupted_file(tmp_path, monkeypatch):
    import shutil

    from miniworld import shipped

    shipped.verify()
    for name in shipped.NAMES:
        card = (Path(shipped.checkpoint(name)) / "README.md").read_text()
        assert "python -m miniworld" in card and shipped.sha256(Path(shipped.checkpoint(name)) / "model.safetensors") in card
    copy = tmp_path / "checkpoints"
    shutil.copytree(shipped.ROOT, copy)
    monkeypatch.setattr(shipped, "ROOT", copy)
    monkeypatch.setattr(shipped, "SUMS", copy / "SHA256SUMS")
    weights = copy / "llm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"llm/model\.safetensors does not match its checksum"):
        shipped.verify()
    with pytest.raises(ValueError, match=r"'xbridge-miniworld/bases'.*shipped: \['xbridge-miniworld/nmt'"):
        shipped.checkpoint("xbridge-miniworld/bases")


SHIPPED_BRIDGE_ANSWERS = """
    import json, sys
    assert not any(p.rstrip("/").endswith("main") for p in sys.path if p), sys.path
    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained({repo!r}, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained({repo!r}, trust_remote_code=True)
    batch = processor({questions!r}, src_lang={lang!r}, return_tensors="pt")
    out = model.generate(**batch, tgt_lang=[{lang!r}], max_new_tokens=64, return_dict_in_generate=True)
    print(json.dumps(dict(english=processor.batch_decode(out.llm_sequences, from_llm=True, skip_special_tokens=True),
                          answer=processor.batch_decode(out.sequences[{lang!r}], skip_special_tokens=True))))
"""


def test_shipped_bridge_answers_from_any_folder(tmp_path):
    """The shipped bridge loads in a fresh process, from a temporary working directory with no project on
    sys.path, finds its shipped bases beside it, and answers held-out problems of a seen language."""
    from miniworld import shipped

    examples = Path(shipped.checkpoint("bridge")) / "examples" / "mgsm" / "mgsm_qab.tsv"
    rows = [line.split("\t") for line in examples.read_text(encoding="utf-8").splitlines() if line.strip()]
    code = textwrap.dedent(SHIPPED_BRIDGE_ANSWERS).format(repo=shipped.checkpoint("bridge"), questions=[q for q, _ in rows], lang="qab_Cyrl")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    right = [re.findall(r"\d+", text)[-1:] == [answer] for text, (_, answer) in zip(out["english"], rows)]
    assert sum(right) >= len(rows) - 1, list(zip(out["english"], rows))  # the bridge is ~95% right on this language
    assert all(re.search("[\u0400-\u04ff]", text) for text in out["answer"])  # the decoder writes Cyrillic


def test_a_smaller_world_keeps_the_unseen_and_low_resource_roles():
    assert list(World(WorldConfig.fast()).languages) == ["qab_Cyrl", UNSEEN, LOW_RESOURCE]
    with pytest.raises(ValueError, match=f"{UNSEEN} and {LOW_RESOURCE} must be among them"):
        World(WorldConfig(languages=("qaa_Latn", "qab_Cyrl")))
    with pytest.raises(ValueError, match="'xyz_Latn'"):
        World(WorldConfig(languages=("xyz_Latn", UNSEEN, LOW_RESOURCE)))


def test_every_step_restates_its_fact_and_the_verb_fixes_the_sign(world_dir):
    gain, loss = {"buys", "finds", "gets"}, {"gives", "sells", "loses", "eats"}
    checked = 0
    for r in _jsonl(world_dir / "llm_pretrain.jsonl")[:200]:
        sentences = r["completion"].strip().split(". ")
        for fact, equation in zip(sentences, sentences[1:]):
            match = re.fullmatch(r"(\d+) ([-+]) (\d+) = \d+ \w+", equation)
            verb = fact.split()[1] if len(fact.split()) > 1 else ""
            if match and verb in gain | loss:
                assert match[3] in fact.split() and (match[2] == "+") == (verb in gain), (fact, equation)
                checked += 1
    assert checked > 100


def test_max_ops_bounds_every_problem(tmp_path):
    generate(tmp_path, dataclasses.replace(TINY, max_ops=2))
    assert {r["n_ops"] for r in _jsonl(tmp_path / "test" / "problems.jsonl")} == {1, 2}
    equations = [len(re.findall(r"\d+ [-+*/] \d+ =", r["completion"])) for r in _jsonl(tmp_path / "llm_pretrain.jsonl")]
    assert max(equations) == 2 and min(equations) == 1
    with pytest.raises(ValueError, match="max_ops=4"):
        WorldConfig(max_ops=4)


# The general world (issue 13) in its fast variant: the shipped general bases (`nmt-general`, `llm-llama`), math,
# summaries and translation for every system. Measured over seeds 0-4 of `python -m miniworld general --fast --seeds
# 0 1 2 3 4` with the first general LLM (ANALYSIS.md, section 4): XBridge's x->en chrF++ on qab was 20.9, 23.8, 20.6,
# 16.1, 19.1 against `direct`'s 5.6 (worst seed +10.5); the threshold leaves 5.5 points of room. With the shipped LLM
# (retrained with repeated passages, section 5) seed 0 gave 15.5 against 1.5 (+14.0); with the copying LLM shipped now
# (section 9; this fast variant keeps the 200-step stage 1, which stops before stage 1's loss drop) seed 0 gave 15.8
# against 3.0 (+12.8); the other seeds were not re-run for either.
# Its math and summaries do NOT yet beat `direct` on every seed (+4.7 and +1.5 on average: the recipe does not
# transfer in this world yet), so the test does not claim they do.
GENERAL_FAST_X_EN_MARGIN = 5


@pytest.fixture(scope="module")
def general_fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("general-fast")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "miniworld", "general", "--fast", "--out", str(out / "run"),
                    "--results", str(out / "results")], check=True, cwd=REPO, env=env)
    return out, json.loads((out / "results" / "results.json").read_text())


@pytest.mark.timeout(1800)
def test_general_fast_job_covers_every_task_family(general_fast_run):
    """Every task family of the paper's evaluation is measured for every system that can do it (encoder-only: no
    summaries in the story's language, no en->x), with the harness's instructions: the cascade summarises in every
    language near the LLM's English level, and the bridge translates into English far better than the LLM
    prompted directly."""
    out, results = general_fast_run
    avg, langs = "avg (non-en)", {"qab", "qae", "qaf"}
    assert set(results["summary"]) == {"direct", "translate-test", "sft", "xbridge"}
    assert set(results["math"]["answer-en"]) == {"direct", "translate-test", "sft", "xbridge-encoder-only", "xbridge"}
    assert set(results["translation"]) == {
        "direct x-en", "direct en-x", "xbridge-encoder-only x-en", "xbridge x-en", "xbridge en-x", "nmt x-en", "nmt en-x",
        "xbridge-encoder-only (stage 1) x-en", "xbridge (stage 1) x-en", "xbridge (stage 1) en-x"}  # Table 1: stage 1
    assert set(results["translation_bleu"]) == set(results["translation"])
    assert all(set(row) == langs | {avg} for row in results["translation"].values())  # avg: the pooled corpus
    trans, summary = results["translation"], results["summary"]
    # the shipped general NMT is the ceiling of the paper's Table 1; the cascade on top of it summarises as well in
    # every language as the LLM does in English (80.3 vs 5.9 for `direct`, deterministic: no training involved)
    assert min(trans[f"nmt {d}"][lang]["mean"] for d in ("x-en", "en-x") for lang in langs) >= 80
    assert summary["translate-test"][avg]["mean"] >= summary["direct"][avg]["mean"] + 50
    assert trans["xbridge x-en"]["qab"]["mean"] >= trans["direct x-en"]["qab"]["mean"] + GENERAL_FAST_X_EN_MARGIN
    # the error analysis of the in-language answers; the cascade's way back is the NMT, which writes the language's
    # script (deterministic: no training involved)
    errors = results["answer_x_errors"]
    assert {f"{s}: {m}" for s in ("translate-test", "xbridge") for m in
            ("states its English answer's number", "states no number", "written in the language's script")} <= set(errors)
    assert errors["translate-test: written in the language's script"]["qab"]["mean"] >= 90
    for name in ("README.md", "summaries.png", "translation.png"):
        assert (out / "results" / name).exists(), name

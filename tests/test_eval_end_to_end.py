"""Every benchmark and system end to end on tiny offline models: predictions, scores, resume, errors, report."""

import json

import pytest

from eval import report, runner
from eval.__main__ import main
from eval.systems import System, load_system
from miniworld.runs import read_jsonl

TOKENS = {"translate": 6, "math": 6, "summarize": 6}  # tiny random models: length only costs time


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine the threads fight: 4x faster."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def bridge_dir(tiny_bases, tmp_path_factory):
    """A saved (bridge-only) XBridge checkpoint with its processor, over the tiny bases."""
    from modeling_xbridge import XBridgeForConditionalGeneration
    from processing_xbridge import XBridgeProcessor
    from tiny_bases import seeded_bridge

    path = tmp_path_factory.mktemp("bridge")
    model = XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"])
    seeded_bridge(model).save_pretrained(path)
    XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["llm"]).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def xbridge(bridge_dir):
    return load_system("xbridge", model=bridge_dir, device="cpu", max_new_tokens=TOKENS)


def test_flores_with_xbridge(xbridge, bridge_dir, tmp_path):
    scores = runner.run("flores", "xbridge", ["swh_Latn", "tha_Thai"], tmp_path, model=bridge_dir, limit=1,
                        batch_size=2, system_obj=xbridge)
    records = read_jsonl(tmp_path / "flores" / "xbridge" / "predictions.jsonl")
    assert len(records) == 6  # sw-en th-en en-sw en-th sw-th th-sw
    first = records[0]
    assert {"id", "input", "reference", "predictions", "src_lang", "tgt_lang"} <= set(first)
    assert set(first["predictions"]) == {first["tgt_lang"]} and isinstance(first["predictions"]["eng_Latn"], str)
    cells = {(r["task"], r["lang"], r["metric"]) for r in scores["scores"]}
    assert ("x-en", "sw", "BLEU") in cells and ("en-x", "th", "chrF++") in cells and ("x-y", "sw-th", "BLEU") in cells
    assert any("tok:char" in note for note in scores["notes"])  # the BLEU tokenizer used for Thai is reported
    assert any(note.startswith("COMET") for note in scores["notes"])
    saved = json.loads((tmp_path / "flores" / "xbridge" / "scores.json").read_text(encoding="utf-8"))
    assert saved["scores"] == scores["scores"]


class Interrupt(Exception):
    pass


class Flaky:
    """Wraps a system: counts generated examples, and dies after `fail_after` batches (a kill mid-run)."""

    def __init__(self, system, fail_after=None):
        self.system, self.fail_after, self.batches, self.generated = system, fail_after, 0, 0

    def _tick(self, texts):
        if self.fail_after is not None and self.batches == self.fail_after:
            raise Interrupt
        self.batches += 1
        self.generated += len(texts)

    def translate(self, texts, *args):
        self._tick(texts)
        return self.system.translate(texts, *args)

    def respond(self, texts, *args):
        self._tick(texts)
        return self.system.respond(texts, *args)


def test_mgsm_with_xbridge_resumes_after_interruption(xbridge, bridge_dir, tmp_path):
    args = dict(benchmark="mgsm", system="xbridge", langs=["swh_Latn", "eng_Latn"], output_dir=tmp_path,
                model=bridge_dir, limit=3, batch_size=2)
    flaky = Flaky(xbridge, fail_after=3)  # batches: sw [2, 1], en [2, 1]
    flaky.__class__ = type("FlakyXBridge", (Flaky, type(xbridge)), {})  # keeps the system's declared abilities
    with pytest.raises(Interrupt):
        runner.run(**args, system_obj=flaky)
    path = tmp_path / "mgsm" / "xbridge" / "predictions.jsonl"
    assert len(read_jsonl(path)) == 5  # the three finished batches survived the kill
    with path.open("a", encoding="utf-8") as f:
        f.write('{"id": "eng_Latn:2", "inp')  # and a line cut mid-write is recomputed, not fatal
    again = Flaky(xbridge)
    again.__class__ = flaky.__class__
    scores = runner.run(**args, system_obj=again)
    assert again.generated == 1  # only the missing example: eng_Latn:2
    records = list(runner.read_predictions(path).values())  # the cut line skipped, as the runner reads it
    expected = [f"{lang}:{i}" for lang in ("swh_Latn", "eng_Latn") for i in range(3)]
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(expected) + 1  # each once, + the cut line
    assert sorted(r["id"] for r in records) == sorted(expected)
    sw = next(r for r in records if r["id"] == "swh_Latn:0")
    assert set(sw["predictions"]) == {"eng_Latn", "swh_Latn"} and sw["reference"] == "18"
    tasks = {(r["task"], r["lang"]) for r in scores["scores"]}
    assert tasks == {("answer-en", "sw"), ("answer-x", "sw"), ("answer-en", "en")}
    # resuming with another model is refused rather than mixing two systems' predictions
    with pytest.raises(ValueError, match="other settings"):
        runner.run(**{**args, "model": "another/model"}, system_obj=again)


class Oracle(System):
    """A perfect system: the scores must then be the metrics' maxima, which checks the scoring path itself."""

    def __init__(self, references):
        super().__init__()
        self.references = references

    def _translate(self, texts, src_lang, tgt_lang):
        return [self.references[t] for t in texts]

    def _respond(self, texts, src_lang, out_langs, kind):
        return {lang: [f"The answer is {self.references[t]}." for t in texts] for lang in out_langs}


def test_scoring_of_perfect_outputs(tmp_path, monkeypatch):
    from eval import data

    monkeypatch.setattr(runner, "system_class", lambda name: Oracle)
    units = data.load("flores", ["swh_Latn"], limit=3, directions=["x-en"]) + data.load("mgsm", ["swh_Latn"], limit=3)
    refs = {ex["input"]: ex["reference"] for unit in units for ex in unit.examples}
    flores = runner.run("flores", "oracle", ["swh_Latn"], tmp_path, limit=3, directions=["x-en"],
                        system_obj=Oracle(refs))
    assert {r["metric"]: round(r["value"]) for r in flores["scores"]} == {"BLEU": 100, "chrF++": 100}
    mgsm = runner.run("mgsm", "oracle", ["swh_Latn"], tmp_path, limit=3, system_obj=Oracle(refs))
    assert [r["value"] for r in mgsm["scores"]] == [100.0, 100.0]


def test_batching_does_not_change_predictions(xbridge, bridge_dir, tmp_path):
    """Left/right padding inside a batch must not leak into the outputs: batch of 3 == one at a time."""
    outputs = {}
    for batch_size in (3, 1):
        runner.run("mgsm", "xbridge", ["tha_Thai"], tmp_path / str(batch_size), model=bridge_dir, limit=3,
                   batch_size=batch_size, system_obj=xbridge)
        records = read_jsonl(tmp_path / str(batch_size) / "mgsm" / "xbridge" / "predictions.jsonl")
        outputs[batch_size] = {r["id"]: r["predictions"] for r in records}
    assert outputs[3] == outputs[1]
    assert len({p["eng_Latn"] for p in outputs[1].values()}) > 1  # not one constant output (vacuous equality)


def test_encoder_only_refuses_other_languages_through_the_interface(bridge_dir):
    from eval.systems import UnsupportedTask

    system = load_system("xbridge-encoder-only", model=bridge_dir, device="cpu", max_new_tokens=TOKENS)
    assert len(system.answer_english(["Swali?", "Jibu?"], "swh_Latn")) == 2
    with pytest.raises(UnsupportedTask, match="writes English only.*swh_Latn"):
        system.answer_in(["Swali?"], "swh_Latn", "swh_Latn")
    with pytest.raises(UnsupportedTask, match="writes English only"):
        system.translate(["Hello"], "eng_Latn", "tha_Thai")
    nmt = load_system("nmt", model=bridge_dir, device="cpu", max_new_tokens=TOKENS)
    with pytest.raises(UnsupportedTask, match="only translates"):
        nmt.answer_english(["Swali?"], "swh_Latn")


def test_msvamp_tatoeba_with_xbridge(xbridge, bridge_dir, tmp_path):
    msvamp = runner.run("msvamp", "xbridge", ["tha_Thai"], tmp_path, model=bridge_dir, limit=2, system_obj=xbridge)
    assert {(r["task"], r["metric"]) for r in msvamp["scores"]} == {("answer-en", "accuracy"), ("answer-x", "accuracy")}
    tatoeba = runner.run("tatoeba", "xbridge", ["zho_Hans"], tmp_path, model=bridge_dir, limit=2, system_obj=xbridge)
    assert {r["task"] for r in tatoeba["scores"]} == {"x-en", "en-x"}
    assert any("tok:zh" in note for note in tatoeba["notes"])


def test_xlsum_official_format_with_xbridge(xbridge, bridge_dir, tmp_path):
    pytest.importorskip("multilingual_rouge", reason="pip install multilingual-rouge unidic-lite (eval extra)")
    from test_eval_data import write_xlsum

    write_xlsum(tmp_path, "swahili")
    xlsum = runner.run("xlsum", "xbridge", ["swh_Latn"], tmp_path / "out", model=bridge_dir, source=str(tmp_path),
                       limit=2, system_obj=xbridge)
    (row,) = xlsum["scores"]
    assert (row["task"], row["metric"], row["n"]) == ("summary", "ROUGE-L", 2) and 0 <= row["value"] <= 100


def test_baselines_run_from_the_bridge_checkpoint(bridge_dir, tiny_bases, tmp_path):
    """direct / translate-test / nmt / encoder-only / sft (LoRA adapter), each on the task they support."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_bases["llm"]),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(adapter)
    common = dict(langs=["swh_Latn"], output_dir=tmp_path / "out", limit=2, batch_size=2)
    for benchmark, system, model in [
        ("mgsm", "direct", bridge_dir), ("mgsm", "translate-test", bridge_dir), ("mgsm", "sft", str(adapter)),
        ("mgsm", "xbridge-encoder-only", bridge_dir), ("flores", "nmt", bridge_dir),
        ("flores", "xbridge-encoder-only", bridge_dir),
    ]:
        system_obj = load_system(system, model=model, device="cpu", max_new_tokens=TOKENS)
        scores = runner.run(benchmark, system, model=model, system_obj=system_obj, **common)
        tasks = {r["task"] for r in scores["scores"]}
        if system == "xbridge-encoder-only":
            # English only: the in-language answer / en->x are not produced, and the notes say so
            assert tasks == ({"answer-en"} if benchmark == "mgsm" else {"x-en"})
            assert benchmark == "flores" or any("writes English only" in n for n in scores["notes"])
        else:
            assert tasks == ({"answer-en", "answer-x"} if benchmark == "mgsm" else {"x-en", "en-x"})
    assert load_system("translate-test", model=bridge_dir, device="cpu").nmt.model.config.d_model == 32


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mgsm", "--system", "nmt"], "only translates"),
        (["flores", "--system", "xbridge-encoder-only", "--directions", "en-x"], "writes English only"),
        (["xlsum", "--system", "xbridge-encoder-only", "--data", "/nonexistent"], "writes English only"),
        (["mgsm", "--system", "xbridge", "--langs", "sw,klingon"], "unknown language 'klingon'"),
        (["flores", "--system", "direct", "--directions", "sideways"], "valid directions"),
    ],
)
def test_cli_refuses_bad_requests_before_loading(argv, message, tmp_path, capsys):
    # --model points nowhere: the error must come from the request check, not from loading a model
    argv = [*argv[:1], *argv[1:], "--model", str(tmp_path / "none"), "--output_dir", str(tmp_path)]
    if "--langs" not in argv:
        argv += ["--langs", "sw"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_report_table_and_plots(tmp_path):
    def save(system, rows):
        folder = tmp_path / "runs" / "mgsm" / system
        folder.mkdir(parents=True)
        scores = {"benchmark": "mgsm", "system": system, "model": "m", "notes": ["a note"],
                  "scores": [dict(task="answer-en", lang=lang, metric="accuracy", value=v, n=20) for lang, v in rows]}
        (folder / "scores.json").write_text(json.dumps(scores), encoding="utf-8")

    save("xbridge", [("sw", 10.0), ("th", 20.0), ("de", 60.0)])
    save("direct", [("sw", 0.0), ("de", 30.0)])
    out = tmp_path / "report" / "table.md"
    assert main(["report", str(tmp_path / "runs"), "--output", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| system | de | sw | th | avg | low-res avg |" in text
    assert "| xbridge | 60.0 | 10.0 | 20.0 | 30.0 | 15.0 |" in text
    assert "| direct | 30.0 | 0.0 | – | 15.0 | 0.0 |" in text
    assert "- a note" in text
    png = out.with_name("table_mgsm_answer_en_accuracy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="no scores.json"):
        report.build_report([tmp_path / "report"], tmp_path / "x.md")

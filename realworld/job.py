"""The real job, `python -m realworld run` (or plain `python -m realworld`): XBridge's stage 1 on real weights.

The bridge composes the Firefox Translations Portuguese NMT (`bases.BRIDGE_NMT`: the pt->en student's encoder, the
en->pt student's decoder) with SmolLM2-135M-Instruct, trains stage 1 with three seeds and scores it on FLORES-200
devtest in both directions, the paper's Table 1, beside the NMT alone and the LLM alone (1-shot).

Stage-1 data, the one-language analogue of the paper's x-en-y triples: with one language besides English there is
no third language y, so every real pair (Tatoeba eng-por, NTREX-128 with its Brazilian reference; FLORES is held
out) gives two records, (pt, en, pt) and (en, en, pt): the encoder reads the Portuguese or the English side, the LLM
writes the English, the decoder writes the Portuguese from the LLM's states. The paper builds y with NLLB from the
English; here y is the human Portuguese of the same pair, which the en->pt decoder would be asked to produce anyway,
and the English input records are what the en->x direction of Table 1 reads (the paper's en-x evaluation also
feeds English through the NMT encoder). The pt->en encoder reads English: its SentencePiece vocabulary is joint,
and on 64 FLORES English sentences it copies them (chrF++ ~90), so their content survives its states.

Jobs (`miniworld.jobs.run_jobs`: one thread each, kept results in results/realworld/kept/, reused on re-runs):
stage 1 per seed (`python -m train stage1`, exactly the user's command), the bridge's FLORES outputs per seed, the
NMT alone, the LLM alone, the costs. The report (summary.json, README.md, table1.png) is made from the kept results.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from train.machine import machine

from . import bases

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
RESULTS = ROOT / "results" / "realworld"
SHIPPED = ROOT / "realworld" / "checkpoints" / "xbridge-smollm2-135m-firefox-pt"
LLM = "smollm2-135m-instruct"
PT, EN = "por_Latn", "eng_Latn"
DIRECTIONS = {f"{PT}-{EN}": (PT, EN), f"{EN}-{PT}": (EN, PT)}  # Table 1's two columns: x->en, en->x


@dataclass(frozen=True)
class Stage1Recipe:
    """Stage 1 on 2 CPU cores. The paper's lr 2e-5 x 3 epochs of 3.6M triples is for 8B models; a few hundred steps
    at batch 8 is what fits here (one step ~3 s on one thread), so the small mapping layers get a high lr."""

    steps: int = 300
    batch: int = 8
    lr: float = 1e-3  # the CI test's rate: the loss falls x0.6-0.7 in 4 updates on every seed
    warmup: int = 20
    max_tokens: int = 64  # source, answer and target cut at 64 tokens (Tatoeba: ~10; NTREX: ~35)
    seeds: tuple[int, ...] = (0, 1, 2)
    # The random start of the paper read nothing of its source in 300 steps (chrF++ 11.5, the LLM's loss the same
    # given another row's source: realworld/probe.py); the linear warm start (train/warm_start.py) reads it at step 0.
    enc_map_init: str = "english_lstsq"


RECIPE = Stage1Recipe()
# The CPU kernels of the real job's jobs ({}: each library's native choice). Its committed kept results were computed
# before the kernels were pinned (train/machine.py), on an AMD EPYC with AVX-512: they are reused until the job is
# re-run under the pinned kernels (about 130 min wall on 2 cores).
KERNELS: dict[str, str] = {}
EVAL_SENTENCES = None  # FLORES devtest sentences scored: all 1012 (`--limit N`: the first N, a quick look)
GENERATION_BATCH = 32
ONE_SHOT = 0  # the NTREX pair that is the LLM-alone prompt's example (not a FLORES sentence)


# ------------------------------------------------------------------------------------------------------- data
def flores(lang: str, limit: int | None = None) -> list[str]:
    lines = (DATA / "flores200_devtest" / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()
    return lines[:limit] if limit else lines


def _pairs(pt_file: Path, en_file: Path) -> list[tuple[str, str]]:
    pt, en = (f.read_text(encoding="utf-8").splitlines() for f in (pt_file, en_file))
    return [(p.strip(), e.strip()) for p, e in zip(pt, en, strict=True) if p.strip() and e.strip()]


def ntrex_pairs() -> list[tuple[str, str]]:
    """NTREX-128 (Portuguese: the Brazilian reference, as FLORES' por_Latn is Brazilian; English: the source)."""
    return _pairs(DATA / "ntrex128" / "newstest2019-ref.por-BR.txt", DATA / "ntrex128" / "newstest2019-src.eng.txt")


def real_pairs() -> list[tuple[str, str]]:
    """(Portuguese, English) training pairs: Tatoeba eng-por then NTREX-128, in file order."""
    tatoeba = DATA / "tatoeba_test_v2021-08-07" / "eng-por"
    return _pairs(tatoeba / "tatoeba-test-v2021-08-07.por", tatoeba / "tatoeba-test-v2021-08-07.eng") + ntrex_pairs()


def write_stage1_data(out: Path) -> Path:
    """The stage-1 records (module docstring) as one JSONL file in a fixed shuffled order; a data folder
    (`runs.mark_data_done`), so the jobs that read it are keyed on its checksum."""
    from miniworld.runs import is_done, mark_data_done, write_jsonl

    if is_done(out):
        return out
    held_out = set(flores(PT)) | set(flores(EN))
    records = []
    for pt, en in real_pairs():
        if pt in held_out or en in held_out:
            continue
        for src_text, src_lang in ((pt, PT), (en, EN)):
            records.append(dict(src_text=src_text, src_lang=src_lang, en_text=en, tgt_text=pt, tgt_lang=PT))
    random.Random(0).shuffle(records)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "stage1.jsonl", records)
    mark_data_done(out, {"records": len(records)})
    return out


# ------------------------------------------------------------------------------------------------------- jobs
def bases_record() -> dict:
    """What identifies the converted bases (wheel checksums and converter code), for the jobs' keys: the cache
    folder itself differs between machines and is resolved inside each job."""
    return {name: {k: v for k, v in json.loads((bases.converted_dir(name) / "provenance.json").read_text()).items()
                   if k in ("wheel sha256", "converter")}
            for name in (bases.BRIDGE_NMT, LLM, "firefox-pten-tiny", "firefox-enpt-tiny")}


def stage1_flags(data: str, out: str, seed: int, recipe: dict) -> list[str]:
    r = Stage1Recipe(**recipe)
    return ["--nmt_name_or_path", str(bases.ensure_converted(bases.BRIDGE_NMT)),
            "--llm_name_or_path", str(bases.ensure_converted(LLM)), "--trust_remote_code", "true",
            "--nmt_source_lang", f"{PT},{EN}", "--nmt_target_lang", PT, "--ot_vocabulary", "target",
            "--train_file", str(Path(data) / "stage1.jsonl"), "--output_dir", out, "--max_steps", str(r.steps),
            "--seed", str(seed), "--per_device_train_batch_size", str(r.batch), "--total_batch_size", str(r.batch),
            "--learning_rate", str(r.lr), "--warmup_steps", str(r.warmup), "--lr_scheduler_type", "cosine",
            "--bf16", "false", "--use_cpu", "true", "--base_dtype", "float32", "--save_strategy", "no",
            "--logging_steps", str(max(1, r.steps // 20)), "--report_to", "none", "--dataloader_num_workers", "0",
            "--disable_tqdm", "true",
            *[arg for side in ("source", "answer", "target") for arg in (f"--max_{side}_tokens", str(r.max_tokens))],
            *warm_start_flags(r)]


def warm_start_flags(r: Stage1Recipe) -> list[str]:
    """`--enc_map_init`, and the mapping width the linear warm start needs (2 x the LLM's hidden size)."""
    if r.enc_map_init == "random":
        return []
    hidden = json.loads((bases.ensure_converted(LLM) / "config.json").read_text())["hidden_size"]
    return ["--enc_map_init", r.enc_map_init, "--enc_map_hidden_size", str(2 * hidden)]


def train_stage1(data: str, out: str, seed: int, recipe: dict, _bases: dict) -> str:
    """A job: stage 1 of one seed through `python -m train stage1` (skipped when `out` holds it finished)."""
    from miniworld.bridge import train

    return train(out, ["train", "stage1"], stage1_flags(data, out, seed, recipe))


def _batches(lengths: list[int], size: int):
    """Indices in batches of `size`, by length (padding costs little), in a fixed order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[s:s + size] for s in range(0, len(order), size)]


def load_bridge(folder: str | Path = SHIPPED, **load_kwargs):
    """(model, processor) of a bridge trained here (the shipped one by default), its bases from the cache
    (fetched and converted first when needed): the bases are passed by folder, as any machine's cache differs.
    `load_kwargs` go to `from_pretrained` (e.g. `llm_quantization="int8"`)."""
    import torch
    from transformers import AutoModel

    from processing_xbridge import XBridgeProcessor

    nmt, llm = bases.ensure_converted(bases.BRIDGE_NMT), bases.ensure_converted(LLM)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32,
                                      nmt_name_or_path=str(nmt), llm_name_or_path=str(llm), **load_kwargs)
    return model.eval(), XBridgeProcessor.from_pretrained(folder)


def bridge_translate(model, processor, texts: list[str], src: str, tgt: str) -> list[str]:
    """Greedy: the LLM writes the English (at most 2.5 x source tokens + 8); for Portuguese the NMT decoder then
    writes it from the LLM's states (at most 2.5 x the English tokens + 8)."""
    import torch

    lengths = [len(ids) for ids in processor(texts, src_lang=src, prompt=False)["input_ids"].tolist()]
    out: list[str | None] = [None] * len(texts)
    with torch.inference_mode():
        for idx in _batches(lengths, GENERATION_BATCH):
            batch = processor([texts[i] for i in idx], src_lang=src, prompt=False)
            limit = math.ceil(2.5 * int(batch["attention_mask"].sum(1).max())) + 8
            ids = model.generate(**batch, tgt_lang=tgt, do_sample=False, num_beams=1, max_new_tokens=limit)
            texts_out = processor.batch_decode(ids, skip_special_tokens=True, from_llm=tgt == EN)
            for i, text in zip(idx, texts_out):
                out[i] = text.strip()
    return out


def eval_bridge(seed: int, limit: int | None, _bases: dict, trained: str) -> dict:
    """A job: the stage-1 bridge of one seed on FLORES devtest, both directions (its outputs, and stage 1's
    logged losses)."""
    from miniworld.bridge import loss_history

    model, processor = load_bridge(trained)
    outputs = {key: bridge_translate(model, processor, flores(src, limit), src, tgt) for key, (src, tgt) in DIRECTIONS.items()}
    return {"outputs": outputs, "losses": loss_history(Path(trained)), "seed": seed}


def eval_nmt(limit: int | None, _bases: dict) -> dict:
    """A job: the NMT alone: the pt->en student for x->en, the en->pt student for en->x (greedy, as `verify`)."""
    from . import verify

    out = {}
    for key, (src, tgt) in DIRECTIONS.items():
        tok, model = bases.load_nmt("pten" if src == PT else "enpt")
        out[key] = [t.strip() for t in verify.translate_float(tok, model, flores(src, limit))]
    return {"outputs": out}


LANG_NAMES = {PT: "Portuguese", EN: "English"}


def one_shot_prompt(text: str, src: str, tgt: str, example: dict) -> str:
    """The LLM alone, 1-shot as MMT-LLM prompts a base LLM: one example pair (`example`: {lang: text}), then the
    source."""
    s, t = LANG_NAMES[src], LANG_NAMES[tgt]
    return f"{s}: {example[src]}\n{t}: {example[tgt]}\n\n{s}: {text}\n{t}:"


def llm_translate(tok, model, texts: list[str], src: str, tgt: str) -> list[str]:
    """Greedy continuation of the 1-shot prompt up to the end of the line (a newline token ends it)."""
    import torch

    pt, en = ntrex_pairs()[ONE_SHOT]
    prompts = [one_shot_prompt(t, src, tgt, {PT: pt, EN: en}) for t in texts]
    enc = [tok(p)["input_ids"] for p in prompts]
    stops = sorted({*tok("\n")["input_ids"], tok.eos_token_id})
    tok.padding_side = "left"
    out: list[str | None] = [None] * len(texts)
    src_lengths = [len(tok(t)["input_ids"]) for t in texts]
    with torch.inference_mode():
        for idx in _batches(src_lengths, GENERATION_BATCH):
            batch = tok.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt")
            limit = math.ceil(2.5 * max(src_lengths[i] for i in idx)) + 8
            ids = model.generate(**batch, do_sample=False, num_beams=1, max_new_tokens=limit, eos_token_id=stops,
                                 pad_token_id=tok.pad_token_id)
            for i, text in zip(idx, tok.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)):
                out[i] = text.split("\n")[0].strip()
    return out


def eval_llm(limit: int | None, _bases: dict) -> dict:
    """A job: the LLM alone, 1-shot, reading or writing Portuguese itself."""
    tok, model = bases.load_llm(LLM)
    return {"outputs": {key: llm_translate(tok, model, flores(src, limit), src, tgt) for key, (src, tgt) in DIRECTIONS.items()}}


def measure_costs(_bases: dict, trained: str, n: int = 64, new_tokens: int = 32) -> dict:
    """A job: seconds at these real shapes, one thread. Generation: n FLORES Portuguese sentences, batches of
    GENERATION_BATCH, exactly `new_tokens` English tokens each (min = max, so every system writes the same amount):
    the LLM alone on the English source (the reference speed), XBridge on the Portuguese (its encoder, then the LLM),
    translate-test (the pt->en NMT, then the LLM on its English). Training: stage 1's tokens/s from its log."""
    import torch

    from . import verify

    model, processor = load_bridge(trained)
    tok, llm = bases.load_llm(LLM)
    nmt_tok, nmt = bases.load_nmt("pten")
    pt, en = flores(PT, n), flores(EN, n)
    fixed = dict(do_sample=False, num_beams=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    tok.padding_side = "left"

    def llm_alone(texts):
        for s in range(0, len(texts), GENERATION_BATCH):
            batch = tok(texts[s:s + GENERATION_BATCH], return_tensors="pt", padding=True)
            llm.generate(**batch, pad_token_id=tok.pad_token_id, **fixed)

    def xbridge():
        for s in range(0, n, GENERATION_BATCH):
            model.generate(**processor(pt[s:s + GENERATION_BATCH], src_lang=PT, prompt=False), **fixed)

    def translate_test():
        llm_alone(verify.translate_float(nmt_tok, nmt, pt, batch_size=GENERATION_BATCH))

    seconds = {}
    with torch.inference_mode():
        llm_alone(en[:GENERATION_BATCH])  # warm-up
        for name, fn in (("llm-alone", lambda: llm_alone(en)), ("xbridge", xbridge), ("translate-test", translate_test)):
            t0 = time.perf_counter()
            fn()
            seconds[name] = round(time.perf_counter() - t0, 2)
    state = json.loads((Path(trained) / "trainer_state.json").read_text())
    return {"generate_seconds": seconds, "sentences": n, "new_tokens": new_tokens,
            "speed_vs_llm_alone": {k: round(seconds["llm-alone"] / v, 3) for k, v in seconds.items()},
            "train": train_throughput(trained, state, processor), "machine": machine()}


def train_throughput(trained: str, state: dict, processor, recipe: Stage1Recipe = RECIPE, sample: int = 2000) -> dict:
    """Stage-1 training speed: steps, wall seconds and tokens/s, the tokens read per record (NMT source + LLM answer
    + NMT target, cut as the trainer cuts them, no padding) taken as their mean over the first `sample` records of
    the data (the trainer draws records in its own seeded order)."""
    rows = [json.loads(line) for line in (Path(trained).parent / "data" / "stage1.jsonl").read_text(
        encoding="utf-8").splitlines()[:sample]]
    nmt, llm, cap = processor.nmt_tokenizer, processor.llm_tokenizer, recipe.max_tokens
    per_record = sum(min(cap, len(nmt(r["src_text"])["input_ids"])) + min(cap, len(llm(r["en_text"])["input_ids"]))
                     + min(cap, len(nmt(text_target=r["tgt_text"])["input_ids"])) for r in rows) / len(rows)
    runtime = next(e["train_runtime"] for e in state["log_history"] if "train_runtime" in e)
    steps = state["global_step"]
    return {"steps": steps, "batch": recipe.batch, "seconds": round(runtime, 1), "seconds_per_step": round(runtime / steps, 2),
            "tokens_per_record": round(per_record, 1), "tokens_per_second": round(steps * recipe.batch * per_record / runtime, 1)}


def jobs(out: Path, recipe: Stage1Recipe = RECIPE, limit: int | None = EVAL_SENTENCES, kept: Path = RESULTS / "kept"):
    """The job list (`limit`: the first N FLORES sentences only, for a quick look; the report is then not the
    committed one)."""
    from miniworld.jobs import Job

    data = str(write_stage1_data(out / "data"))
    ident = bases_record()
    rec = {k: v for k, v in asdict(recipe).items() if k != "seeds"}
    out_jobs = [Job("nmt", eval_nmt, (limit, ident), cost=2.0, cache=str(kept / "nmt.json.gz")),
                Job("llm", eval_llm, (limit, ident), cost=8.0, cache=str(kept / "llm.json.gz"))]
    for seed in recipe.seeds:
        folder = str(out / f"stage1-s{seed}")
        out_jobs.append(Job(f"stage1/s{seed}", train_stage1, (data, folder, seed, rec, ident), cost=recipe.steps * 2.5 / 60))
        out_jobs.append(Job(f"xbridge/s{seed}", eval_bridge, (seed, limit, ident), after=(f"stage1/s{seed}",), cost=10.0,
                            cache=str(kept / f"xbridge-s{seed}.json.gz")))
    return out_jobs


def cost_job(out: Path, recipe: Stage1Recipe, kept: Path):
    """The timing job: run on its own, after the others (nothing else computes while it measures)."""
    from miniworld.jobs import Job

    first = recipe.seeds[0]
    folder = str(out / f"stage1-s{first}")
    train = Job(f"stage1/s{first}", train_stage1, (str(out / "data"), folder, first,
                                                    {k: v for k, v in asdict(recipe).items() if k != "seeds"},
                                                    bases_record()))
    return [train, Job("costs", measure_costs, (bases_record(),), after=(train.name,), cache=str(kept / "costs.json.gz"))]


def run(out: str | Path = ROOT / "runs" / "realworld", workers: int | None = None, recipe: Stage1Recipe = RECIPE,
        results: Path = RESULTS, limit: int | None = EVAL_SENTENCES) -> dict:
    """The whole job: the bases fetched and converted (once), the jobs, the report; returns the summary."""
    from miniworld.jobs import run_jobs

    from . import report

    for name in (bases.BRIDGE_NMT, LLM):
        bases.ensure_converted(name, log=print)
    out = Path(out)
    t0 = time.time()
    job_seconds: dict[str, float] = {}
    done = run_jobs(jobs(out, recipe, limit, results / "kept"), workers=workers, desc="realworld", seconds=job_seconds,
                    kernels=KERNELS)
    done.update(run_jobs(cost_job(out, recipe, results / "kept"), workers=1, desc="costs", seconds=job_seconds,
                         kernels=KERNELS))
    summary = report.write(done, recipe, results)
    trained = out / f"stage1-s{recipe.seeds[0]}"
    if trained.exists():  # the committed report ships its bridge; any other run puts it beside its report
        report.ship_bridge(trained, summary, SHIPPED if results == RESULTS else results / "bridge")
    info_file, wall = results / "run_info.json", round(time.time() - t0, 1)
    earlier = json.loads(info_file.read_text()) if info_file.exists() else {}
    if wall > 0.1 * earlier.get("wall_seconds", 0):  # a re-run that reused the kept results keeps the working run's times
        info_file.write_text(json.dumps({"wall_seconds": wall, "machine": machine(), "workers": workers,
                                         "job_kernels": KERNELS or "native", "job_seconds": job_seconds}, indent=1) + "\n")
    return summary

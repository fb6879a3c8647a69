"""Gradio Space: ask an XBridge checkpoint a question in one language, get answers in several others.

The checkpoint is a Hub id or a local folder, from `--model`, the `XBRIDGE_MODEL` environment variable, or the
mini-world bridge shipped with the package (`miniworld/checkpoints/bridge`, served right after install). Everything is loaded through the Auto classes with
`trust_remote_code=True`, so the Space needs only the checkpoint, not this repository's code.

Run: `python -m space [--model PATH_OR_ID] [--port N]` or `python space/app.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from pathlib import Path

import gradio as gr

try:  # `python -m space` imports this as a package module; a Space runs app.py as a plain script
    from . import languages
except ImportError:
    import languages
try:  # the bundle's constant wherever the package is importable (a checkout, an install)
    from configuration_xbridge import ENGLISH
except ImportError:  # a Space deployed alone holds only this folder; its bundle comes with the checkpoint
    ENGLISH = "eng_Latn"

ROOT = Path(__file__).resolve().parents[1]
# The shipped mini-world bridge (`xbridge-miniworld/bridge`; its bases lie beside it), found from any folder.
DEFAULT_MODEL = ROOT / "miniworld" / "checkpoints" / "bridge"
DATA = ROOT / "data"
MAX_TARGETS = 4  # output slots on the page; also the most target languages one request may ask for
MAX_INPUT_CHARS = int(os.environ.get("XBRIDGE_MAX_INPUT_CHARS", 2000))

TASKS = {  # preset -> instruction put before the text in the LLM prompt (None: the text alone)
    "Free instruction": None,
    "Step-by-step math": 'Solve the following math problem step by step. End with "The answer is N".',
    "Translate": "Translate the following text into English.",
    "Summarise": "Summarize the following text in one or two sentences.",
}


# Named checkpoints of this repository: `--model realworld` is the stage-1 bridge on real weights (realworld/job.py),
# whose bases come from the realworld cache (`python -m realworld fetch && python -m realworld convert`).
PRESETS = {"miniworld": DEFAULT_MODEL, "realworld": ROOT / "realworld" / "checkpoints" / "xbridge-smollm2-135m-firefox-pt"}


def model_id_from(cli_value: str | None = None) -> str:
    chosen = cli_value or os.environ.get("XBRIDGE_MODEL")
    if chosen:
        return str(PRESETS.get(chosen, chosen))
    return str(DEFAULT_MODEL)


def local_bases(model_id: str) -> dict:
    """{"nmt_name_or_path": folder, ...} for a bridge whose config names bases converted by `realworld` (their
    names are not Hub ids: the folders are this machine's cache, fetched and converted on first use)."""
    config_file = Path(model_id) / "config.json"
    try:
        from realworld import bases
    except ImportError:  # a Space outside this repository: its bases are Hub ids
        return {}
    if not config_file.exists():
        return {}
    config = json.loads(config_file.read_text(encoding="utf-8"))
    known = {name for group in bases.CONVERTED.values() for name in group}
    return {key: str(bases.ensure_converted(config[key])) for key in ("nmt_name_or_path", "llm_name_or_path")
            if config.get(key) in known}


def looks_local(model_id: str) -> bool:
    """A folder path rather than a Hub id (`org/name`): absolute, relative with ./, or more than one slash."""
    return Path(model_id).exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1


def missing_checkpoint_help(model_id: str) -> str | None:
    """Markdown that says how to get a checkpoint, or None when `model_id` can be tried."""
    if not looks_local(model_id) or (Path(model_id).expanduser() / "config.json").exists():
        return None
    default = Path(model_id).resolve() == DEFAULT_MODEL.resolve()
    build = (
        "The default checkpoint is the mini-world bridge shipped with the package, and this install lacks it. "
        "Install from a full checkout (`pip install -e .`), or train and ship one from the repository root "
        "(CPU, minutes):\n\n```bash\npython -m miniworld && python -m miniworld publish --what bridge\n```\n\n"
        "then restart the app. " if default else ""
    )
    return (
        f"### No XBridge checkpoint at `{model_id}`\n\n{build}Or point the app at any XBridge checkpoint, "
        "a Hub id or a local folder:\n\n```bash\npython -m space --model ORG/NAME_OR_FOLDER\n"
        "XBRIDGE_MODEL=ORG/NAME_OR_FOLDER python space/app.py\n```"
    )


class Bridge:
    """One checkpoint: the processor at once (the page needs its languages), the model on first use, once."""

    def __init__(self, model_id: str):
        from transformers import AutoConfig, AutoProcessor

        self.model_id = model_id
        self._model = None
        self.bases = local_bases(model_id)
        # A stage-1 bridge was trained on translation pairs without any prompt: it is asked the same way.
        self.prompted = getattr(AutoConfig.from_pretrained(model_id, trust_remote_code=True), "stage", 0) != 1
        # One generation at a time: the model captures LLM states with hooks during generate(), so two
        # concurrent calls on the same model would mix their captures. The queue limit says the same.
        self._lock = threading.Lock()
        try:
            self.processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=True)
        except (OSError, ValueError, TypeError):
            self.processor = self._processor_from_bases()
        self.lang_codes = sorted(self.processor.lang_codes)

    def _processor_from_bases(self):
        """A checkpoint saved without its processor: rebuild it from the two base tokenizers the config names."""
        from transformers import AutoConfig
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        config = AutoConfig.from_pretrained(self.model_id, trust_remote_code=True)
        cls = get_class_from_dynamic_module(config.auto_map["AutoProcessor"], self.model_id)
        return cls.from_bases(config.nmt_name_or_path, config.llm_name_or_path)

    @property
    def device(self) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import torch
                    from transformers import AutoModel

                    # bf16 halves memory and is fast on GPUs; CPUs are slow and inexact in bf16, so fp32 there.
                    dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
                    model = AutoModel.from_pretrained(self.model_id, trust_remote_code=True, dtype=dtype, **self.bases)
                    self._model = model.to(self.device).eval()
        return self._model

    # ------------------------------------------------------------------ checks (messages say what to change)
    def check_lang(self, value, what: str) -> str:
        code = languages.resolve(value, self.lang_codes)
        if code is None:
            close = languages.suggestions(value, self.lang_codes)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise gr.Error(f"Unknown {what} {value!r}.{hint} Pick one of the {len(self.lang_codes)} languages "
                           "in the list (you can type to search).")
        return code

    def check_request(self, text, src_lang, tgt_langs):
        text = (text or "").strip()
        if not text:
            raise gr.Error("The input is empty: type a question or a text in the source language.")
        if len(text) > MAX_INPUT_CHARS:
            raise gr.Error(f"The input is too long ({len(text)} characters): shorten it to at most "
                           f"{MAX_INPUT_CHARS} characters.")
        src = self.check_lang(src_lang, "source language")
        n_tokens = len(self.processor.nmt_tokenizer(text)["input_ids"])
        if n_tokens > self.processor.max_source_length:
            raise gr.Error(f"The input is too long ({n_tokens} tokens): shorten it to at most "
                           f"{self.processor.max_source_length} tokens (about {MAX_INPUT_CHARS // 2} characters).")
        if isinstance(tgt_langs, str):
            tgt_langs = [tgt_langs]
        targets = list(dict.fromkeys(self.check_lang(t, "target language") for t in tgt_langs or []))
        if not targets:
            raise gr.Error("No target language: choose at least one in 'Answer in'.")
        if len(targets) > MAX_TARGETS:
            raise gr.Error(f"{len(targets)} target languages chosen: choose at most {MAX_TARGETS}.")
        return text, src, targets

    # ------------------------------------------------------------------ generation
    def generation_kwargs(self, max_new_tokens, num_beams, do_sample, temperature) -> dict:
        kwargs = dict(max_new_tokens=int(max_new_tokens), num_beams=int(num_beams), do_sample=bool(do_sample))
        if do_sample:  # temperature is only valid (and only meaningful) when sampling
            kwargs["temperature"] = float(temperature)
        return kwargs

    def stream(self, text, src_lang, tgt_langs, instruction, **gen_kwargs):
        """Yield (english_so_far, {lang: text} or None, timings): English tokens as the LLM writes them
        (greedy/sampling; beam search cannot stream), then the final answers in every target language."""
        from transformers import TextIteratorStreamer

        # The clock starts before the lazy load, so the first request's time says what a user waited for.
        start, loading = time.perf_counter(), self._model is None
        model, processor = self.model, self.processor
        batch = processor([text], src_lang=src_lang, instruction=instruction or None, prompt=self.prompted).to(model.device)
        foreign = [lang for lang in tgt_langs if lang != ENGLISH]
        streamer = None
        if gen_kwargs.get("num_beams", 1) == 1:
            streamer = TextIteratorStreamer(processor.llm_tokenizer, skip_prompt=True, skip_special_tokens=True)
            gen_kwargs["llm_streamer"] = streamer
        result, timings = {}, {"start": start, "load": time.perf_counter() - start if loading else None}

        def run():
            try:
                result["out"] = model.generate(**batch, tgt_lang=foreign or ENGLISH, return_dict_in_generate=True, **gen_kwargs)
            except Exception as error:  # noqa: BLE001 - shown to the user below, not swallowed
                result["error"] = error
            finally:
                if streamer is not None:
                    streamer.end()  # unblock the reader whatever happened (end() twice is harmless)

        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            english = ""
            for piece in streamer or []:
                if piece:
                    timings.setdefault("first", time.perf_counter())
                    english += piece
                    yield english, None, timings
            worker.join()
        if "error" in result:
            raise gr.Error(f"Generation failed: {result['error']}")
        out = result["out"]
        timings["end"] = time.perf_counter()
        english = processor.batch_decode(out.llm_sequences, skip_special_tokens=True, from_llm=True)[0].strip()
        answers = {}
        if foreign:
            sequences = out.sequences if isinstance(out.sequences, dict) else {foreign[0]: out.sequences}
            answers = {lang: processor.batch_decode(ids, skip_special_tokens=True)[0].strip() for lang, ids in sequences.items()}
        timings.setdefault("first", timings["end"])
        yield english, {lang: english if lang == ENGLISH else answers[lang] for lang in tgt_langs}, timings


def timing_text(timings: dict, device: str, done: bool) -> str:
    first = timings["first"] - timings["start"]
    where = device + (f", incl. {timings['load']:.1f} s loading the model" if timings["load"] is not None else "")
    if not done:
        return f"Writing the English answer… first output after {first:.2f} s ({where})"
    total = timings["end"] - timings["start"]
    return f"First output after {first:.2f} s · total {total:.2f} s ({where})"


# ---------------------------------------------------------------------- examples
MGSM_FILES = {"bn": "ben_Beng", "de": "deu_Latn", "es": "spa_Latn", "fr": "fra_Latn", "ja": "jpn_Jpan", "ru": "rus_Cyrl",
              "sw": "swh_Latn", "te": "tel_Telu", "th": "tha_Thai", "zh": "zho_Hans", "en": ENGLISH}


def example_sources() -> list[tuple[str, Path, Path]]:
    """(kind, file, language code) candidates: the vendored MGSM / FLORES, the shipped mini-world bridge's own
    examples and any mini-world test sets under runs/miniworld (same formats, MGSM files named by short code)."""
    found = [("math", p, MGSM_FILES[p.stem.split("_", 1)[1]]) for p in sorted((DATA / "mgsm").glob("mgsm_*.tsv"))
             if p.stem.split("_", 1)[1] in MGSM_FILES]
    found += [("text", p, p.name.split(".")[0]) for p in sorted((DATA / "flores200_devtest").glob("*.devtest"))]
    for test in [*sorted((ROOT / "runs" / "miniworld").glob("**/test")), DEFAULT_MODEL / "examples"]:
        texts = sorted(test.glob("flores/*.devtest"))
        found += [("text", p, p.name.split(".")[0]) for p in texts]
        # MGSM files are named by short code (mgsm_qaa.tsv); the FLORES names give the full codes
        full = {"en": ENGLISH} | {p.name.split("_")[0]: p.name.split(".")[0] for p in texts}
        found += [("math", p, full[p.stem.removeprefix("mgsm_")]) for p in sorted(test.glob("mgsm/mgsm_*.tsv"))
                  if p.stem.removeprefix("mgsm_") in full]
    return found


# Example languages in this order when the checkpoint knows them: varied scripts and resource levels first.
PREFERRED = ["swh_Latn", "zho_Hans", "fra_Latn", "ben_Beng", "rus_Cyrl", "tha_Thai", "deu_Latn", "tel_Telu", "spa_Latn", "jpn_Jpan"]


def pick_examples(lang_codes, per_kind: int = 4) -> list[list]:
    """A few examples in languages the checkpoint knows: MGSM questions for step-by-step math, then FLORES
    sentences to translate, in other languages where possible (MGSM and FLORES are parallel, so each example
    takes another row). Each answers in its own language and one other."""
    known = sorted(lang_codes)
    others = [c for c in known if c != ENGLISH]
    rank = {c: i for i, c in enumerate(PREFERRED)}
    sources = sorted(example_sources(), key=lambda s: (s[2] == ENGLISH, rank.get(s[2], len(rank)), s[2]))
    picked = []
    for kind in ("math", "text"):
        used = {e[1] for e in picked}
        candidates = [s for s in sources if s[0] == kind and s[2] in known]
        candidates.sort(key=lambda s: s[2] in used)  # stable: languages not shown yet come first
        langs = []
        for _, path, code in candidates:
            if len(langs) == per_kind or code in langs:
                continue
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if not lines:
                continue
            text = lines[(3 * len(picked) + 1) % len(lines)].split("\t")[0]
            pool = [c for c in others if c != code] or [ENGLISH]
            other = pool[3 * len(picked) % len(pool)]
            # the mini-world bridge was trained on bare problems: its own examples carry no instruction
            task = "Translate" if kind == "text" else "Step-by-step math" if path.is_relative_to(DATA) else "Free instruction"
            picked.append([text, code, [code, other], task])
            langs.append(code)
    return picked


# ---------------------------------------------------------------------- page
def launch_local(demo: gr.Blocks) -> str:
    """Start `demo` in the background on a free 127.0.0.1 port (the measure and screenshot tools); returns its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return url


def build_demo(model_id: str | None = None) -> gr.Blocks:
    model_id = model_id_from(model_id)
    help_text = missing_checkpoint_help(model_id)
    if help_text is not None:
        with gr.Blocks(title="XBridge") as demo:
            gr.Markdown("# XBridge\n\n" + help_text)
        return demo
    bridge = Bridge(model_id)
    choices = languages.choices(bridge.lang_codes)
    default_src = next((c for c in ("swh_Latn", "fra_Latn", "por_Latn") if c in bridge.lang_codes), bridge.lang_codes[0])
    default_tgts = [default_src] + ([ENGLISH] if ENGLISH in bridge.lang_codes and default_src != ENGLISH else [])

    def task_instruction(task):
        return TASKS.get(task) or ""

    def slot_props(tgt_langs) -> list[dict]:
        """One visible output box per chosen target language, labelled with its name; the rest hidden."""
        codes = [languages.resolve(t, bridge.lang_codes) or str(t) for t in (tgt_langs or [])][:MAX_TARGETS]
        shown = [dict(label=languages.display_name(c), visible=True) for c in codes]
        return shown + [dict(label="", visible=False)] * (MAX_TARGETS - len(codes))

    def answer_slots(tgt_langs):
        # Emptied too: old answers do not belong to the new choice of languages.
        return [gr.update(value="", **props) for props in slot_props(tgt_langs)]

    def generate(text, src_lang, tgt_langs, task, instruction, max_new_tokens, num_beams, do_sample, temperature):
        """Yields (English, answer per target language in the order given, "" for unused slots, time taken)."""
        text, src, targets = bridge.check_request(text, src_lang, tgt_langs)
        instruction = (instruction or "").strip() or TASKS.get(task)
        kwargs = bridge.generation_kwargs(max_new_tokens, num_beams, do_sample, temperature)
        for english, answers, timings in bridge.stream(text, src, targets, instruction, **kwargs):
            done = answers is not None
            slots = [answers[t] if done else "" for t in targets] + [""] * (MAX_TARGETS - len(targets))
            yield [english, *slots, timing_text(timings, bridge.device, done)]

    with gr.Blocks(title="XBridge") as demo:
        gr.Markdown(
            f"# XBridge\nAsk in any language the translation model knows; a frozen English LLM reasons, and the "
            f"translation model's decoder answers in the languages you choose.\n\nCheckpoint: `{model_id}` · "
            f"{len(bridge.lang_codes)} languages"
        )
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label="Input", lines=4, placeholder="A question or a text, in the source language",
                                  elem_id="input-text")
                with gr.Row():
                    # allow_custom_value: a typed or API-sent value reaches our own check, whose message
                    # suggests close names, instead of Gradio's dump of every valid code.
                    src_lang = gr.Dropdown(choices, value=default_src, label="Source language", filterable=True,
                                           allow_custom_value=True, elem_id="src-lang")
                    tgt_langs = gr.Dropdown(choices, value=default_tgts, multiselect=True, max_choices=MAX_TARGETS,
                                            label=f"Answer in (up to {MAX_TARGETS})", allow_custom_value=True,
                                            elem_id="tgt-langs")
                task = gr.Radio(list(TASKS), value="Free instruction", label="Task")
                instruction = gr.Textbox(label="Instruction (before the input in the LLM prompt; empty: none)", lines=1)
                with gr.Accordion("Generation settings", open=False):
                    max_new_tokens = gr.Slider(8, 512, value=128, step=8, label="Max new tokens (each phase)",
                                               elem_id="max-new-tokens")
                    num_beams = gr.Slider(1, 5, value=1, step=1, label="Beams (1: greedy or sampling, streams the English)")
                    do_sample = gr.Checkbox(value=False, label="Sample")
                    temperature = gr.Slider(0.1, 1.5, value=0.7, step=0.05, label="Temperature (when sampling)")
                run = gr.Button("Answer", variant="primary", elem_id="run")
            with gr.Column(scale=3):
                # Built as "Answer i" so the API names its outputs answer_1..answer_4 (Gradio names them by
                # label); the page load then labels them with the chosen languages.
                outputs = [gr.Textbox(label=f"Answer {i + 1}", lines=3, interactive=False, elem_id=f"answer-{i}",
                                      buttons=["copy"], visible=slot["visible"])
                           for i, slot in enumerate(slot_props(default_tgts))]
                with gr.Accordion("The LLM's English intermediate", open=False):
                    english = gr.Textbox(label="English", show_label=False, lines=4, interactive=False,
                                         elem_id="english")
                timing = gr.Markdown(label="Time taken", elem_id="timing")
        examples = pick_examples(bridge.lang_codes)
        if examples:
            gr.Examples(examples, inputs=[text, src_lang, tgt_langs, task], label="Examples (MGSM, FLORES)",
                        cache_examples=False, elem_id="examples")
        task.change(task_instruction, task, instruction, api_name="task_instruction")
        tgt_langs.change(answer_slots, tgt_langs, outputs, api_name="answer_slots")
        demo.load(answer_slots, tgt_langs, outputs, api_name="answer_slots_on_load")
        inputs = [text, src_lang, tgt_langs, task, instruction, max_new_tokens, num_beams, do_sample, temperature]
        event_outputs = [english, *outputs, timing]
        run.click(generate, inputs, event_outputs, api_name="generate")
        text.submit(generate, inputs, event_outputs, api_name="generate_on_submit")
    demo.bridge = bridge  # for tools that need the checkpoint's languages (space/measure.py)
    # One generation at a time (see Bridge._lock); others wait in a bounded queue.
    return demo.queue(default_concurrency_limit=1, max_size=int(os.environ.get("XBRIDGE_QUEUE_SIZE", 16)))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m space", description="XBridge Gradio Space")
    parser.add_argument("--model", help="Hub id or local folder of an XBridge checkpoint, or a checkpoint of this "
                                        f"repository: {', '.join(PRESETS)} (default: $XBRIDGE_MODEL, else the shipped "
                                        f"{DEFAULT_MODEL.relative_to(ROOT)})")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    args = parser.parse_args(argv)
    build_demo(args.model).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()

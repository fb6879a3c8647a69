"""`python -m train sft --config train/configs/sft.yaml --llm_name_or_path ... --train_file ...`: the SFT baseline.

LoRA (peft) on the LLM alone, trained with TRL's `SFTTrainer` on the same task records as stages 2-3: the prompt
holds the question in its own language (same template as XBridge, or the LLM's chat template with
`--use_chat_template`), the completion is `answer_en` (or `answer_tgt` with `--sft_target answer_tgt` for
multilingual responses; `--in_language_tasks summarize`: those tasks' records answer in their own language, as
XL-Sum's summaries do); the loss covers the completion only. How it was prompted is saved beside the adapter
(`PROMPT_FILE`), so the eval harness asks it the same way.
"""

import json
import logging
import sys
from pathlib import Path
from dataclasses import dataclass, field

from transformers import AutoTokenizer, HfArgumentParser, set_seed

from processing_xbridge import ALPACA_TEMPLATE, chat_prompt, prompt_query  # the bridge's own prompts

from .data import load_records, validate
from .run import _config_path, _yaml_to_argv

logger = logging.getLogger("train")

PROMPT_FILE = "sft_prompt.json"  # {"use_chat_template": bool, "prompt_template": str}, read by eval's `sft` system


@dataclass
class SFTArguments:
    config: str | None = field(default=None, metadata={"help": "YAML file of defaults for any argument"})
    llm_name_or_path: str | None = field(default=None, metadata={"help": "the LLM (Hub id or folder)"})
    train_file: str | None = field(default=None, metadata={"help": "task records, JSONL"})
    dataset_name: str | None = field(default=None, metadata={"help": "task records, a datasets source / Hub id"})
    dataset_config: str | None = field(default=None)
    dataset_split: str = field(default="train")
    sft_target: str = field(default="answer_en", metadata={"help": "answer_en or answer_tgt"})
    instruction: str | None = field(default=None, metadata={"help": "instruction when a record has none"})
    prompt_template: str = field(default=ALPACA_TEMPLATE, metadata={"help": "template with {query}"})
    use_chat_template: bool = field(default=False, metadata={
        "help": "prompt with the LLM's chat template (an instruct LLM) instead of prompt_template"})
    in_language_tasks: str = field(default="", metadata={
        "help": "comma-separated `task` values whose completion is answer_tgt (e.g. summarize)"})
    lora_r: int = field(default=16)
    lora_alpha: int = field(default=32)
    lora_dropout: float = field(default=0.05)
    lora_target_modules: str = field(default="all-linear")


def main(argv: list[str], callbacks=None):
    from peft import LoraConfig  # noqa: PLC0415
    from trl import SFTConfig, SFTTrainer  # noqa: PLC0415

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = HfArgumentParser((SFTArguments, SFTConfig), prog="python -m train sft", description=__doc__)
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        sys.exit(0)
    config = _config_path(argv)
    sargs, targs = parser.parse_args_into_dataclasses(args=(_yaml_to_argv(config, "sft") if config else []) + argv)
    if not sargs.llm_name_or_path:
        raise ValueError("sft needs --llm_name_or_path")
    if sargs.sft_target not in ("answer_en", "answer_tgt"):
        raise ValueError(f"--sft_target must be answer_en or answer_tgt, got {sargs.sft_target!r}")
    set_seed(targs.seed)
    tokenizer = AutoTokenizer.from_pretrained(sargs.llm_name_or_path)
    ds = load_records(sargs.train_file, sargs.dataset_name, sargs.dataset_config, sargs.dataset_split)
    in_language = {t for t in sargs.in_language_tasks.split(",") if t}
    if sargs.use_chat_template and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"--use_chat_template: {sargs.llm_name_or_path} has no chat template; drop the flag to use "
                         f"--prompt_template")
    kind = "stage3" if sargs.sft_target == "answer_tgt" or in_language else "sft"
    # No NLLB here: language codes are only checked for their NLLB shape.
    codes = {r["src_lang"] for r in ds} | ({r["tgt_lang"] for r in ds} if kind == "stage3" else set())
    validate(ds, kind, [c for c in codes if len(c) == 8 and c[3] == "_"], sargs.train_file or sargs.dataset_name)

    if in_language and "task" not in ds.column_names:
        raise ValueError(f"--in_language_tasks {sargs.in_language_tasks}: the records have no `task` field")

    def to_prompt_completion(r):
        instruction = r.get("instruction") or sargs.instruction
        if sargs.use_chat_template:  # the prompt eval's `sft` system (and every chat system there) builds
            prompt = chat_prompt(tokenizer, r["question"], instruction)
        else:
            prompt = sargs.prompt_template.format(query=prompt_query(r["question"], instruction))
        target = "answer_tgt" if r.get("task") in in_language else sargs.sft_target
        return {"prompt": prompt, "completion": " " + r[target] + (tokenizer.eos_token or "")}

    ds = ds.map(to_prompt_completion, remove_columns=ds.column_names)
    peft_config = LoraConfig(r=sargs.lora_r, lora_alpha=sargs.lora_alpha, lora_dropout=sargs.lora_dropout,
                             target_modules=sargs.lora_target_modules, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=sargs.llm_name_or_path, args=targs, train_dataset=ds, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=targs.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_state()  # trainer_state.json: the loss history beside the adapter
    Path(targs.output_dir, PROMPT_FILE).write_text(json.dumps(dict(
        use_chat_template=sargs.use_chat_template, prompt_template=sargs.prompt_template), indent=1) + "\n")
    if targs.push_to_hub:
        trainer.push_to_hub(commit_message=f"SFT (LoRA) baseline: {trainer.state.global_step} steps")
    return trainer

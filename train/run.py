"""`python -m train {stage1,stage2,stage3,encoder-only} --config <yaml> [--key value ...]`: train one stage.

The YAML holds defaults for both the XBridge arguments below and any `transformers.TrainingArguments` field;
command-line flags override it (`--max_steps 10 --output_dir runs/x`).
"""

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field

import yaml
from transformers import HfArgumentParser, TrainingArguments, set_seed

from .data import add_lengths, load_records, prepare
from .ot import build_ot_loss
from .trainer import STAGES, XBridgeCollator, XBridgeTrainer, prepare_bridge_dtypes

logger = logging.getLogger("train")


@dataclass
class XBridgeArguments:
    """XBridge-specific arguments (everything else is a `TrainingArguments` field)."""

    config: str | None = field(default=None, metadata={"help": "YAML file of defaults for any argument"})
    nmt_name_or_path: str | None = field(default=None, metadata={
        "help": "stage 1 / encoder-only stage 1: NLLB checkpoint (Hub id or folder), e.g. facebook/nllb-200-1.3B"})
    llm_name_or_path: str | None = field(default=None, metadata={
        "help": "stage 1 / encoder-only stage 1: LLM checkpoint, e.g. meta-llama/Meta-Llama-3-8B"})
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "stages 2-3: the previous stage's output folder or Hub repo (a bridge-only checkpoint)"})
    encoder_stage: int = field(default=1, metadata={"help": "encoder-only: 1 (translation pairs) or 2 (task data)"})
    nmt_source_lang: str | None = field(default=None, metadata={
        "help": "stage 1, a bilingual NMT (no language tokens): the language its encoder reads, e.g. por_Latn "
                "(several, comma-separated, for a joint vocabulary: por_Latn,eng_Latn)"})
    nmt_target_lang: str | None = field(default=None, metadata={
        "help": "stage 1, a bilingual NMT: the one language its decoder writes (saved in the bridge config)"})
    ot_vocabulary: str | None = field(default=None, metadata={
        "help": "stage 1: the NMT tokenizer side that encodes the English of the OT term: source (NLLB) or target "
                "(an NMT composed from two directions)"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "allow bases that bring their own code (e.g. the converted Marian SSRU NMT of realworld/)"})
    train_file: str | None = field(default=None, metadata={"help": "JSONL file, folder of shards or glob"})
    dataset_name: str | None = field(default=None, metadata={"help": "a datasets source / Hub id"})
    dataset_config: str | None = field(default=None, metadata={"help": "the dataset's config name"})
    dataset_split: str = field(default="train")
    max_train_samples: int | None = field(default=None, metadata={"help": "keep only the first N records"})
    ot_backend: str = field(default="relaxed", metadata={
        "help": "relaxed (the released row-minimum OT), sinkhorn (entropic OT via POT) or sinkhorn_torch"})
    ot_reg: float = field(default=0.05, metadata={"help": "sinkhorn: entropic regularisation"})
    ot_y_mass: str = field(default="norm", metadata={"help": "sinkhorn: mass on the LLM side, norm or uniform"})
    lambda_llm: float | None = field(default=None, metadata={"help": "weight of the LLM CE (default: the stage's)"})
    lambda_dec: float | None = field(default=None, metadata={"help": "weight of the decoder CE (default: 1.0)"})
    lambda_ot: float | None = field(default=None, metadata={"help": "weight of the OT term (default: 6.0)"})
    encoder_fusion: str | None = field(default=None, metadata={
        "help": "stage 1 only (saved in the bridge config): last (paper), global_softmax or token_softmax"})
    lambda_align: float | None = field(default=None, metadata={
        "help": "optional AlignX-style InfoNCE term (stage 1; 0 in later stages unless given)"})
    lambda_lang: float | None = field(default=None, metadata={
        "help": "optional 'same language?' term (stage 1; must be > 0 when the bridge is built to have its head)"})
    align_layer: int | None = field(default=None, metadata={"help": "LLM layer of the alignment terms"})
    base_dtype: str = field(default="bfloat16", metadata={
        "help": "dtype of the frozen bases (bfloat16, float32, auto); trainable weights are always fp32"})
    llm_quantization: str = field(default="none", metadata={
        "help": "load the frozen LLM quantised: none, int8 (bitsandbytes on CUDA, torchao weight-only on CPU), nf4 "
                "(bitsandbytes 4-bit, CUDA); the saved bridge is the same either way"})
    nmt_quantization: str = field(default="none", metadata={
        "help": "the same for the frozen NMT (its decoder cross-attention, a bridge weight, stays in float)"})
    total_batch_size: int | None = field(default=None, metadata={
        "help": "effective batch (the paper: 128): sets gradient_accumulation_steps from the per-device batch "
                "and the number of processes"})
    instruction: str | None = field(default=None, metadata={
        "help": "stages 2-3: task instruction put in the prompt when a record has none"})
    prompt_template: str | None = field(default=None, metadata={
        "help": "plain prompt template with {query} (default: the processor's Alpaca template)"})
    use_chat_template: bool = field(default=False, metadata={
        "help": "wrap the prompt with the LLM's chat template (instruct LLMs)"})
    source_in_prompt: bool = field(default=True, metadata={
        "help": "stages 2-3: also put the raw source text in the LLM prompt, as the released code does (false: "
                "the LLM reads the source only through the encoder map, with an English instruction)"})
    enc_map_hidden_size: int | None = field(default=None, metadata={
        "help": "stage 1 (saved in the bridge config): inner width of the encoder-side mapping (default: the LLM's "
                "hidden size; the linear warm start needs twice it)"})
    enc_map_init: str = field(default="random", metadata={
        "help": "stage 1: random (the paper) or english_lstsq: the least-squares linear map from the NMT encoder's "
                "states of the records' English to the LLM's embeddings of the same English (train/warm_start.py)"})
    enc_map_init_records: int = field(default=4000, metadata={"help": "english_lstsq: records whose English it fits on"})
    max_source_tokens: int = field(default=256)
    max_answer_tokens: int = field(default=512)
    max_target_tokens: int = field(default=512)
    pad_to_multiple_of: int = field(default=8)


COMMAND_SECTIONS = ("stage1", "stage2", "stage3", "encoder-only", "encoder-only-stage1", "encoder-only-stage2", "sft")


def _yaml_to_argv(path: str, section: str | None = None) -> list[str]:
    """YAML -> argv. Top-level keys apply to every command; a recipe may add per-command sections
    (`stage1: {...}`, `stage2: {...}`, `sft: {...}`), whose keys override the top level for that command."""
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values")
    merged = {k: v for k, v in values.items() if k not in COMMAND_SECTIONS}
    if section in values:
        if not isinstance(values[section], dict):
            raise ValueError(f"{path}: section {section!r} must be a mapping")
        merged.update(values[section])
    argv = []
    for key, value in merged.items():
        if value is None:
            continue
        if isinstance(value, list):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def _config_path(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def parse_args(command: str, argv: list[str]):
    parser = HfArgumentParser((XBridgeArguments, TrainingArguments), prog=f"python -m train {command}",
                              description=__doc__)
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        sys.exit(0)
    config = _config_path(argv)
    section = command
    if command == "encoder-only":  # the recipe section names the encoder-only stage
        stage = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--encoder_stage"), None)
        section = f"encoder-only-stage{stage}" if stage else command
    full = (_yaml_to_argv(config, section) if config else []) + argv  # later flags win: the command line overrides
    full += _bf16_fallback(parser, full)
    xargs, targs = parser.parse_args_into_dataclasses(args=full)
    return xargs, targs


def _bf16_fallback(parser, argv: list[str]) -> list[str]:
    """The recipes ask for bf16 (the paper's). Where no accelerator offers it (a CPU-only machine, a pre-Ampere
    GPU), TrainingArguments would refuse to start ("Your setup doesn't support bf16/gpu"): train in fp32 instead
    (bf16 autocast off; bf16 bases loaded in float32) and say so once. `--use_cpu true --bf16 true` keeps CPU bf16
    (TrainingArguments allows it) for CPUs that are fast at it."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available  # noqa: PLC0415

    ns, _ = parser.parse_known_args(argv)  # the raw values, before TrainingArguments validates them
    if not (ns.bf16 or ns.bf16_full_eval) or ns.use_cpu or is_torch_bf16_gpu_available() or is_torch_xla_available():
        return []
    extra = ["--bf16", "false", "--bf16_full_eval", "false"]
    if ns.base_dtype == "bfloat16":
        extra += ["--base_dtype", "float32"]
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0:
        logger.warning("bf16 is not available on this machine (no GPU with bf16): training in fp32 instead of the "
                       "recipe's bf16 (bf16 autocast off%s). Pass --use_cpu true --bf16 true to keep bf16 on the "
                       "CPU.", ", bases in float32" if ns.base_dtype == "bfloat16" else "")
    return extra


def _stage_key(command: str, xargs) -> str:
    if command == "encoder-only":
        if xargs.encoder_stage not in (1, 2):
            raise ValueError(f"--encoder_stage must be 1 or 2, got {xargs.encoder_stage}")
        return f"encoder-only-stage{xargs.encoder_stage}"
    return command


def stage_lambdas(stage_key: str, xargs) -> list[float]:
    """(llm, dec, ot) loss weights: the stage's own (trainer.STAGES), each overridden by its --lambda_* flag."""
    preset = STAGES[stage_key]["lambdas"]
    return [preset[i] if v is None else v for i, v in enumerate((xargs.lambda_llm, xargs.lambda_dec, xargs.lambda_ot))]


def build_model_and_processor(stage_key: str, xargs):
    import torch  # noqa: PLC0415

    from modeling_xbridge import XBridgeForConditionalGeneration  # noqa: PLC0415
    from processing_xbridge import XBridgeProcessor  # noqa: PLC0415

    dtype = {"auto": "auto", "bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}.get(
        xargs.base_dtype)
    if dtype is None:
        raise ValueError(f"--base_dtype {xargs.base_dtype!r}: use bfloat16, float32, float16 or auto")
    preset = STAGES[stage_key]
    lambdas = stage_lambdas(stage_key, xargs)
    quantization = {"llm_quantization": xargs.llm_quantization, "nmt_quantization": xargs.nmt_quantization}
    if preset["from_bases"]:
        if xargs.model_name_or_path and not (xargs.nmt_name_or_path or xargs.llm_name_or_path):
            model = XBridgeForConditionalGeneration.from_pretrained(xargs.model_name_or_path, dtype=dtype, **quantization)
            processor = XBridgeProcessor.from_pretrained(xargs.model_name_or_path)
        else:
            if not (xargs.nmt_name_or_path and xargs.llm_name_or_path):
                raise ValueError(f"{stage_key} starts from the two bases: give --nmt_name_or_path and "
                                 "--llm_name_or_path")
            options = {k: getattr(xargs, k) for k in ("encoder_fusion", "lambda_align", "lambda_lang", "align_layer",
                                                      "nmt_source_lang", "nmt_target_lang", "enc_map_hidden_size")
                       if getattr(xargs, k) is not None}
            languages = {k: getattr(xargs, k) for k in ("nmt_source_lang", "nmt_target_lang", "ot_vocabulary")
                         if getattr(xargs, k) is not None}
            model = XBridgeForConditionalGeneration.from_bases(xargs.nmt_name_or_path, xargs.llm_name_or_path,
                                                               dtype=dtype, trust_remote_code=xargs.trust_remote_code,
                                                               **quantization, **options)
            processor = XBridgeProcessor.from_bases(xargs.nmt_name_or_path, xargs.llm_name_or_path,
                                                    trust_remote_code=xargs.trust_remote_code, **languages)
    else:
        if not xargs.model_name_or_path:
            raise ValueError(f"{stage_key} continues a trained bridge: give --model_name_or_path (the previous "
                             "stage's output folder or Hub repo)")
        model = XBridgeForConditionalGeneration.from_pretrained(xargs.model_name_or_path, dtype=dtype,
                                                                trust_remote_code=xargs.trust_remote_code, **quantization)
        processor = XBridgeProcessor.from_pretrained(xargs.model_name_or_path)
    model.config.lambda_llm, model.config.lambda_dec, model.config.lambda_ot = lambdas
    if not preset["from_bases"]:
        if xargs.encoder_fusion and xargs.encoder_fusion != getattr(model.config, "encoder_fusion", "last"):
            raise ValueError(f"--encoder_fusion {xargs.encoder_fusion!r}: the bridge was built with "
                             f"{model.config.encoder_fusion!r} in stage 1 and cannot change afterwards")
        # The optional alignment terms belong to stage 1: off in later stages unless asked for.
        for name in ("lambda_align", "lambda_lang"):
            if hasattr(model.config, name):
                setattr(model.config, name, getattr(xargs, name) or 0.0)
    prepare_bridge_dtypes(model)
    trainable = model.set_stage(preset["model_stage"])
    model.config.stage = preset["model_stage"] if stage_key.startswith("stage") else int(stage_key[-1])
    if preset["targets"]:
        kwargs = {"reg": xargs.ot_reg, "y_mass": xargs.ot_y_mass} if xargs.ot_backend != "relaxed" else {}
        model.set_ot_loss(build_ot_loss(xargs.ot_backend, **kwargs))
    processor.max_source_length = xargs.max_source_tokens + 2  # + language code and </s>
    processor.max_answer_length = xargs.max_answer_tokens + 1  # + EOS
    processor.max_target_length = xargs.max_target_tokens + 2
    processor.use_chat_template = xargs.use_chat_template
    processor.source_in_prompt = xargs.source_in_prompt
    if xargs.prompt_template:
        processor.prompt_template = xargs.prompt_template
    return model, processor, trainable


def warm_start(stage_key: str, xargs, model, processor, ds) -> None:
    """`--enc_map_init`: the mapping's start in a stage that builds the bridge from its bases."""
    if xargs.enc_map_init == "random":
        return
    if xargs.enc_map_init != "english_lstsq":
        raise ValueError(f"--enc_map_init {xargs.enc_map_init!r}: use random (the paper) or english_lstsq")
    if not (STAGES[stage_key]["from_bases"] and xargs.nmt_name_or_path) or "en_text" not in ds.column_names:
        raise ValueError(f"--enc_map_init english_lstsq starts a new bridge from English records (stage 1, "
                         f"encoder-only stage 1); {stage_key} continues a trained one")
    from .warm_start import warm_start_enc_map  # noqa: PLC0415

    texts = list(ds.select(range(min(xargs.enc_map_init_records, len(ds))))["en_text"])
    stats = warm_start_enc_map(model, processor, texts)
    logger.info("enc_map warm start (english_lstsq): %s", stats)


def _set_accumulation(xargs, targs) -> None:
    if not xargs.total_batch_size:
        return
    per_step = targs.per_device_train_batch_size * max(targs.world_size, 1)
    if xargs.total_batch_size % per_step:
        raise ValueError(f"--total_batch_size {xargs.total_batch_size} is not a multiple of per-device batch "
                         f"{targs.per_device_train_batch_size} x {targs.world_size} processes")
    targs.gradient_accumulation_steps = xargs.total_batch_size // per_step
    logger.info("total batch %d = %d per device x %d processes x %d accumulation steps", xargs.total_batch_size,
                targs.per_device_train_batch_size, targs.world_size, targs.gradient_accumulation_steps)


def main(command: str, argv: list[str], callbacks=None):
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    xargs, targs = parse_args(command, argv)
    stage_key = _stage_key(command, xargs)
    _set_accumulation(xargs, targs)
    targs.remove_unused_columns = False  # the collator needs the raw text fields
    set_seed(targs.seed)
    model, processor, trainable = build_model_and_processor(stage_key, xargs)
    n_train = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    logger.info("%s: training %d tensors (%.2fM parameters): %s", stage_key, len(trainable), n_train / 1e6,
                sorted({n.split(".")[0] for n in trainable}))

    preset = STAGES[stage_key]
    source = xargs.train_file or xargs.dataset_name
    with targs.main_process_first(desc="loading data"):
        ds = load_records(xargs.train_file, xargs.dataset_name, xargs.dataset_config, xargs.dataset_split)
        if xargs.max_train_samples:
            ds = ds.select(range(min(xargs.max_train_samples, len(ds))))
        ds = prepare(ds, preset["record_kind"], model.config.lang_codes, processor.nmt_tokenizer,
                     processor.llm_tokenizer, name=source, max_source_tokens=xargs.max_source_tokens,
                     max_answer_tokens=xargs.max_answer_tokens, max_target_tokens=xargs.max_target_tokens)
        if targs.train_sampling_strategy == "group_by_length":
            ds = add_lengths(ds, preset["source"], preset["answers"], processor.nmt_tokenizer,
                             processor.llm_tokenizer, column=targs.length_column_name)
    if "_source" in ds.column_names:
        ds = ds.remove_columns("_source")
    warm_start(stage_key, xargs, model, processor, ds)
    collator = XBridgeCollator(processor, stage_key, xargs.instruction, xargs.pad_to_multiple_of)
    card = {"training_data": f"{source} ({len(ds)} records, {preset['record_kind']} format)",
            "metrics": {"trainer": f"python -m train {command}", "OT backend": xargs.ot_backend
                        if preset["targets"] else "-"}}
    trainer = XBridgeTrainer(model=model, args=targs, train_dataset=ds, data_collator=collator,
                             processor=processor, callbacks=callbacks, card_info=card)
    result = trainer.train(resume_from_checkpoint=targs.resume_from_checkpoint)
    trainer.save_model()  # bridge-only weights, config, processor, remote code, model card
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    if trainer.is_world_process_zero():
        trainer.create_model_card()
    if targs.push_to_hub:
        trainer.push_to_hub(commit_message=f"XBridge {stage_key}: {trainer.state.global_step} steps")
    if not all(math.isfinite(v) for v in trainer._last_logged.values()):
        raise RuntimeError(f"non-finite losses at the end of training: {trainer._last_logged}")
    return trainer

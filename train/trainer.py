"""Stage presets, the per-stage collator and `XBridgeTrainer` (a `transformers.Trainer` with per-term logging).

The model computes every loss term itself (`XBridgeOutput.loss_llm / loss_dec / loss_ot` and their weighted sum
`loss`); the trainer only logs the terms and makes the Trainer treat the loss correctly.
"""

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler
from transformers import Trainer
from transformers.trainer_pt_utils import get_length_grouped_indices

# What each trainer feeds the model and which weights it trains. `set_stage` is the model's one declared place
# for trainable parameters; the encoder-only baseline (MindMerger design) trains stage 2's set in both of its
# stages, on translation pairs first and task data second, with the LLM loss only.
# lambdas: (llm, dec, ot), the one place of the stages' loss weights (the recipes' YAML does not repeat them;
# --lambda_* flags override them). The LLM term with weight 0 is skipped by the model (no full-vocabulary logits);
# decoder and OT terms with weight 0 are still computed and logged, but add nothing to the loss.
# from_bases: the stage builds a new bridge from the two bases (the others go on from a trained bridge).
STAGES = {
    "stage1": dict(model_stage=1, record_kind="stage1", prompt=False, answers="en_text", targets="tgt_text",
                   source="src_text", lambdas=(1.0, 1.0, 6.0), from_bases=True),
    "stage2": dict(model_stage=2, record_kind="stage2", prompt=True, answers="answer_en", targets=None,
                   source="question", lambdas=(1.0, 0.0, 0.0), from_bases=False),
    "stage3": dict(model_stage=3, record_kind="stage3", prompt=True, answers="answer_en", targets="answer_tgt",
                   source="question", lambdas=(0.0, 1.0, 6.0), from_bases=False),
    "encoder-only-stage1": dict(model_stage=2, record_kind="encoder-only-stage1", prompt=False, answers="en_text",
                                targets=None, source="src_text", lambdas=(1.0, 0.0, 0.0), from_bases=True),
    "encoder-only-stage2": dict(model_stage=2, record_kind="encoder-only", prompt=True, answers="answer_en",
                                targets=None, source="question", lambdas=(1.0, 0.0, 0.0), from_bases=False),
    # Two ablations of the recipe (`python -m miniworld.variants`; `python -m train` has no command for them):
    # stages 2 and 3 merged (task data with the prompt, stage 1's trainable set, all three losses at once); and the
    # released stage-1 command's defect (the decoder side frozen: CE_dec and OT computed, training nothing of it).
    "stage23": dict(model_stage=1, record_kind="stage3", prompt=True, answers="answer_en", targets="answer_tgt",
                    source="question", lambdas=(1.0, 1.0, 6.0), from_bases=False),
    "stage1-defect": dict(model_stage=2, record_kind="stage1", prompt=False, answers="en_text", targets="tgt_text",
                          source="src_text", lambdas=(1.0, 1.0, 6.0), from_bases=True),
}

# Which side each tensor is padded on and with what (the processor pads to the batch's longest; the collator
# merges language groups and rounds lengths up to a multiple of 8 for tensor cores).
_LEFT_PADDED = {"prompt_ids", "prompt_attention_mask"}
_NOT_A_SEQUENCE = {"decoder_lang_ids"}  # (B, 1): the target-language tag of a T5 / Marian NMT, never padded


def _pad_values(processor) -> dict:
    nmt_pad, llm_pad = processor.nmt_tokenizer.pad_token_id, processor.llm_tokenizer.pad_token_id
    return {"input_ids": nmt_pad, "attention_mask": 0, "prompt_ids": llm_pad, "prompt_attention_mask": 0,
            "answer_ids": llm_pad, "answer_attention_mask": 0, "labels": -100, "ot_target_ids": nmt_pad,
            "ot_target_attention_mask": 0, "decoder_lang_ids": nmt_pad}


@dataclass
class XBridgeCollator:
    """Records -> the model's tensors for one stage, through the processor (so training and inference tokenise
    alike). The processor takes one source and one target language per call, so a mixed batch is processed per
    (src_lang, tgt_lang, instruction) group and merged back in record order."""

    processor: object
    stage: str
    default_instruction: str | None = None
    pad_to_multiple_of: int = 8

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; valid: {sorted(STAGES)}")
        self.preset = STAGES[self.stage]
        self.pad_values = _pad_values(self.processor)

    def _group(self, records):
        p = self.preset
        return {
            "texts": [r[p["source"]] for r in records],
            "src_lang": records[0]["src_lang"],
            "instruction": (records[0].get("instruction") or self.default_instruction) if p["prompt"] else None,
            "prompt": p["prompt"],
            "answers": [r[p["answers"]] for r in records],
            "targets": [r[p["targets"]] for r in records] if p["targets"] else None,
            "tgt_lang": records[0]["tgt_lang"] if p["targets"] else None,
            "ot_targets": p["targets"] is not None,  # OT accompanies the decoder loss (stages 1 and 3)
        }

    def __call__(self, records: list[dict]) -> dict:
        p = self.preset
        groups = defaultdict(list)
        for i, r in enumerate(records):
            key = (r["src_lang"], r.get("tgt_lang") if p["targets"] else None,
                   (r.get("instruction") or self.default_instruction) if p["prompt"] else None)
            groups[key].append(i)
        parts, order = [], []
        for idx in groups.values():
            parts.append(self.processor(**self._group([records[i] for i in idx]), return_tensors="pt"))
            order += idx
        batch = {}
        for key in parts[0].keys():
            longest = max(part[key].shape[1] for part in parts)
            m = None if key in _NOT_A_SEQUENCE else self.pad_to_multiple_of
            length = (longest + m - 1) // m * m if m else longest
            padded = []
            for part in parts:
                t = part[key]
                pad = (length - t.shape[1], 0) if key in _LEFT_PADDED else (0, length - t.shape[1])
                padded.append(torch.nn.functional.pad(t, pad, value=self.pad_values[key]))
            merged = torch.cat(padded)
            batch[key] = merged[torch.argsort(torch.tensor(order))]  # back to record order
        return batch


class LengthGroupedBatchSampler(Sampler):
    """Indices in micro-batches of similar length (source + answer tokens), the micro-batches in random order,
    drawn from the seed and the epoch only.

    Why not transformers' own `LengthGroupedSampler` (what `train_sampling_strategy="group_by_length"` builds):
    - the Trainer gives it no generator, so its order comes from the global torch RNG at the start of each
      epoch. A run resumed in epoch e starts from the checkpoint's RNG state (or from the seed), not from the state
      the uninterrupted run had when epoch e began: the data order, hence the weights, would differ after a
      resume. Here the order is a function of (seed, epoch) and `set_epoch` (called by the Trainer) sets the epoch;
    - within a mega-batch it yields the micro-batches from the longest to the shortest, so step length and loss
      scale drift together through the mega-batch. The grouping is transformers' `get_length_grouped_indices`;
      the order of the micro-batches is then shuffled (the longest first, so an out-of-memory shows at step 1;
      a short last micro-batch stays last, so the DataLoader's chunks keep matching the groups).
    """

    def __init__(self, lengths, batch_size: int, group_size: int | None = None, seed: int = 0,
                 mega_batch_mult: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.group_size = group_size or batch_size  # transformers groups per optimizer step (batch x accumulation)
        self.seed = seed
        self.mega_batch_mult = mega_batch_mult  # None: transformers' default, min(50, len // (4 x group_size))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = get_length_grouped_indices(self.lengths, self.group_size, self.mega_batch_mult, generator=g)
        bs = self.batch_size
        # Micro-batches of `bs` consecutive indices (the DataLoader cuts the stream the same way).
        batches = [order[i:i + bs] for i in range(0, len(order), bs)]
        last = batches.pop() if batches and len(batches[-1]) < bs else []
        first = []
        if batches:
            first = batches.pop(max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b])))
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        batches = [first] + shuffled + [last]
        return iter([i for b in batches for i in b])


class XBridgeTrainer(Trainer):
    """`Trainer` for XBridge stages.

    - logs `ce_llm`, `ce_dec`, `ot` (unweighted terms, averaged over the steps since the last log and over
      processes) next to the weighted `loss`, the way TRL trainers accumulate metrics;
    - the model's loss is a mean per micro-batch that knows nothing of `num_items_in_batch`. The Trainer would
      otherwise infer from `forward(**kwargs)` that the model normalises by it ("accepts loss kwargs"), skip the
      division by the accumulation steps and multiply by the number of processes: both are switched off here;
    - optimises only parameters with `requires_grad` (the stage's, set by `model.set_stage`), which is what
      `Trainer.create_optimizer` keeps;
    - writes the bundle's remote-code files and the model card into every folder that is pushed, intermediate
      pushes included (the stock `_push_from_checkpoint` copies only config and weights).
    """

    loss_is_scaled_for_ga = False
    # Log names of the loss terms; any other `loss_<name>` the model returns is logged as `<name>`.
    TERM_NAMES = {"loss_llm": "ce_llm", "loss_dec": "ce_dec", "loss_ot": "ot"}

    def __init__(self, *args, processor=None, card_info: dict | None = None, **kwargs):
        # The processor is not passed as `processing_class`: Trainer.train() would call `align_special_tokens`,
        # which reads `processing_class.tokenizer` (XBridgeProcessor has two tokenizers, none named so) and would
        # rewrite the composite config's special tokens. It is saved next to every checkpoint in `_save` instead.
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.model_accepts_loss_kwargs = False
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._last_logged = {}
        self.card_info = card_info or {}

    def _get_train_sampler(self, train_dataset=None):
        # group_by_length: the deterministic sampler above instead of transformers' (resume-safe, shuffled groups).
        ds = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or ds is None:
            return super()._get_train_sampler(train_dataset)
        name = self.args.length_column_name
        if name not in getattr(ds, "column_names", ()):
            raise ValueError(f"train_sampling_strategy='group_by_length' needs a {name!r} column of record lengths "
                             f"(train.data.add_lengths adds it); the data has {getattr(ds, 'column_names', None)}")
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthGroupedBatchSampler(ds[name], self.args.train_batch_size,
                                         self.args.train_batch_size * self.args.gradient_accumulation_steps, seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        mode = "train" if model.training else "eval"
        present = [(self.TERM_NAMES.get(k, k[len("loss_"):]), v) for k, v in outputs.items()
                   if k.startswith("loss_") and v is not None]
        if present:
            values = torch.stack([v.detach().float() for _, v in present])
            values = self.accelerator.gather_for_metrics(values.unsqueeze(0)).mean(0)  # mean over processes
            for (name, _), value in zip(present, values.tolist()):
                self._metrics[mode][name].append(value)
        if outputs.loss is None:
            raise ValueError("the model returned no loss: every loss term is absent or has weight 0 "
                             f"(lambda_llm={self.model.config.lambda_llm}, lambda_dec={self.model.config.lambda_dec}, "
                             f"lambda_ot={self.model.config.lambda_ot}); check the stage's data fields")
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict, start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        logs.update(metrics)
        if "loss" in logs:
            self._last_logged.update({k: v for k, v in logs.items() if k == "loss" or k in metrics})
        super().log(logs, start_time)
        self._metrics[mode].clear()

    # ------------------------------------------------------------------ saving and Hub folders
    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)  # model.save_pretrained: bridge-only weights, config, remote code
        if self.processor is not None and self.args.should_save:
            self.processor.save_pretrained(output_dir or self.args.output_dir)

    def write_bundle(self, folder: str) -> None:
        """The three remote-code files, the processor and the model card: every pushed revision loads with
        trust_remote_code."""
        if self.processor is not None:
            self.processor.save_pretrained(folder)
        from hub_xbridge import write_bundle, write_model_card  # noqa: PLC0415  (the bundle: repo root or installed)

        write_bundle(folder)
        model = self.accelerator.unwrap_model(self.model)
        metrics = {**self.card_info.get("metrics", {}), **{f"final {k}": v for k, v in self._last_logged.items()},
                   "steps": self.state.global_step}
        model.card_info = {**self.card_info, "metrics": metrics}
        write_model_card(model, folder)

    def create_model_card(self, *args, **kwargs):
        # Replaces the generic Trainer card with the bridge's own (stage, data, final losses, usage).
        if self.is_world_process_zero():
            self.write_bundle(self.args.output_dir)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if self.is_world_process_zero():
            self.write_bundle(self.args.output_dir)
            self.write_bundle(checkpoint_folder)
        super()._push_from_checkpoint(checkpoint_folder)


def prepare_bridge_dtypes(model) -> None:
    """Frozen bases may be bf16; what trains stays fp32 (mapping layers here, cross-attention in `set_stage`)."""
    model.enc_map.float()
    model.dec_map.float()
    model.boundary.data = model.boundary.data.float()

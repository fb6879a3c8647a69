"""XBridge: a frozen NLLB-200 translation model and a frozen English-centric LLM joined by small mapping layers.

    NLLB encoder(x) -> enc_map -> LLM inputs_embeds = [bos, mapped source, boundary, prompt, answer]
    LLM hidden_states[llm_layer] at the positions that predict the answer -> dec_map -> NLLB decoder cross-attention

Part of the flat Hub bundle: only torch and transformers are imported, so `trust_remote_code` loading needs
nothing else. Training-only code (OT solvers, trainers) lives in `train/` and plugs in through `set_ot_loss`.
"""

import json
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, M2M100ForConditionalGeneration, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput, cached_file, logging

try:  # relative imports for the Hub bundle; plain imports when the project root is on sys.path
    from .configuration_xbridge import XBridgeConfig, is_lang_code
    from .processing_xbridge import XBridgeProcessor  # noqa: F401  (so transformers copies all three bundle files)
except ImportError:
    from configuration_xbridge import XBridgeConfig, is_lang_code
    from processing_xbridge import XBridgeProcessor  # noqa: F401

logger = logging.get_logger(__name__)

BRIDGE_WEIGHTS_NAME = "model.safetensors"
ENGLISH = "eng_Latn"


@dataclass
class XBridgeOutput(ModelOutput):
    """Output of `XBridgeForConditionalGeneration.forward`: the weighted total and each loss term, for logging."""

    loss: torch.FloatTensor | None = None
    loss_llm: torch.FloatTensor | None = None
    loss_dec: torch.FloatTensor | None = None
    loss_ot: torch.FloatTensor | None = None
    loss_align: torch.FloatTensor | None = None  # optional AlignX-style InfoNCE (stage 1)
    loss_lang: torch.FloatTensor | None = None  # optional "same language?" matching loss (stage 1)
    llm_logits: torch.FloatTensor | None = None  # (B, La, V_llm): logits predicting the answer tokens
    decoder_logits: torch.FloatTensor | None = None  # (B, Ly, V_nmt)
    decoder_memory: torch.FloatTensor | None = None  # (B, La, d_nmt): mapped LLM states the decoder reads
    decoder_memory_mask: torch.LongTensor | None = None  # (B, La)
    ot_target_states: torch.FloatTensor | None = None  # (B, Lx, d_nmt): NLLB encoding of the English answer
    ot_target_mask: torch.LongTensor | None = None  # (B, Lx)


@dataclass
class XBridgeGenerateOutput(ModelOutput):
    """`generate(..., return_dict_in_generate=True)`: target ids and the English intermediate."""

    sequences: torch.LongTensor | dict | None = None  # NMT ids (B, T) or {lang: ids}; LLM ids for English
    llm_sequences: torch.LongTensor | None = None  # (B, Ta): the LLM's English answer
    decoder_memory: torch.FloatTensor | None = None  # (B, Ta, d_nmt)
    decoder_memory_mask: torch.LongTensor | None = None  # (B, Ta)


class MappingBlock(nn.Module):
    """RMSNorm -> Linear -> SiLU -> Linear, the paper's mapping block."""

    def __init__(self, d_in: int, d_mid: int, d_out: int):
        super().__init__()
        self.norm = nn.RMSNorm(d_in, eps=1e-6)
        self.up = nn.Linear(d_in, d_mid)
        self.down = nn.Linear(d_mid, d_out)

    def forward(self, x):  # (..., d_in) -> (..., d_out)
        return self.down(F.silu(self.up(self.norm(x))))


class EncoderFusion(nn.Module):
    """Combine all NLLB encoder layers (embeddings included) instead of the last one (multi-layer fusion paper).

    `global_softmax`: one learned weight per layer, softmax-normalised, shared by all tokens.
    `token_softmax`: per token, its stack of layer outputs + a learned layer-position embedding, with a CLS
    vector in front, through a one-layer transformer; Linear(d, L) on the CLS output -> softmax -> that token's
    layer weights. Padding tokens are never computed.
    """

    def __init__(self, mode: str, num_states: int, d: int, num_heads: int):
        super().__init__()
        self.mode = mode
        if mode == "global_softmax":
            self.layer_logits = nn.Parameter(torch.zeros(num_states))  # uniform mix at init
        else:
            self.position = nn.Parameter(torch.zeros(num_states, d))
            self.cls = nn.Parameter(torch.zeros(d))
            self.mixer = nn.TransformerEncoderLayer(d, num_heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True)
            self.to_weights = nn.Linear(d, num_states)

    def layer_weights(self, stack, mask):
        """(B, L, S) weights over the S layer states of every token (rows of padding tokens are zeros)."""
        B, L, S, d = stack.shape
        if self.mode == "global_softmax":
            return self.layer_logits.softmax(-1).expand(B, L, S)
        keep = mask.bool()
        tokens = stack[keep] + self.position  # (N, S, d): only real tokens
        tokens = torch.cat([self.cls.expand(tokens.shape[0], 1, d), tokens], dim=1)  # (N, 1 + S, d)
        weights = self.to_weights(self.mixer(tokens)[:, 0]).softmax(-1)  # (N, S)
        out = stack.new_zeros(B, L, S)
        out[keep] = weights.to(out.dtype)
        return out

    def forward(self, hidden_states, mask):  # S x (B, L, d) -> (B, L, d)
        stack = torch.stack(hidden_states, dim=2)  # (B, L, S, d)
        weights = self.layer_weights(stack, mask)  # (B, L, S)
        return (weights.unsqueeze(-1) * stack).sum(2)


def mean_pool(states, mask):  # (B, L, d), (B, L) -> (B, d)
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


def _contiguous_input(module, args):
    return (args[0].contiguous(), *args[1:])


def _cast_floats(value, dtype):
    if torch.is_tensor(value) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast_floats(v, dtype) for v in value)
    return value


def run_in_fp32(module: nn.Module, io_dtype: torch.dtype) -> None:
    """Keep a trainable piece of a bf16 base in fp32: weights fp32, activations cast in and back out.

    Hand-written because `_keep_in_fp32_modules` only applies at load time and to whole classes, while the
    pieces that train (the decoder cross-attention) change with the stage.
    """
    if getattr(module, "_xbridge_fp32", False):
        return
    module.float()
    module.register_forward_pre_hook(
        lambda m, args, kwargs: (_cast_floats(args, torch.float32), {k: _cast_floats(v, torch.float32) for k, v in kwargs.items()}),
        with_kwargs=True,
    )
    module.register_forward_hook(lambda m, args, out: _cast_floats(out, io_dtype))
    module._xbridge_fp32 = True


class XBridgePreTrainedModel(PreTrainedModel):
    config_class = XBridgeConfig
    base_model_prefix = "xbridge"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _no_split_modules = ["MappingBlock"]

    def _init_weights(self, module):
        # Only the bridge is initialised here; the bases bring their own weights or their own init.
        if isinstance(module, MappingBlock):
            module.up.reset_parameters()
            module.down.reset_parameters()
            module.norm.reset_parameters()
        elif isinstance(module, XBridgeForConditionalGeneration):
            nn.init.zeros_(module.boundary)


class XBridgeForConditionalGeneration(XBridgePreTrainedModel, GenerationMixin):
    # The loss is a mean per micro-batch that ignores `num_items_in_batch`: tell Trainers to scale it for
    # gradient accumulation themselves (otherwise `**kwargs` in forward() makes them assume it is pre-scaled).
    accepts_loss_kwargs = False
    # The one declared place for what trains at each stage (paper, Table "three stages"): name prefixes of
    # parameters. `cross_attention` expands to every NLLB decoder layer's encoder_attn and its layer norm.
    # The optional encoder fusion trains with the encoder-side mapping; the optional "same language?" head
    # trains in stage 1 with the alignment loss.
    STAGE_TRAINABLE = {
        1: ("enc_map", "boundary", "encoder_fusion", "lang_head", "dec_map", "cross_attention"),
        2: ("enc_map", "boundary", "encoder_fusion"),
        3: ("dec_map", "cross_attention"),
    }
    CROSS_ATTENTION_PARTS = ("encoder_attn.", "encoder_attn_layer_norm.")

    def __init__(self, config: XBridgeConfig, nmt: PreTrainedModel | None = None, llm: PreTrainedModel | None = None):
        super().__init__(config)
        self.nmt = nmt if nmt is not None else M2M100ForConditionalGeneration._from_config(config.nmt_config)
        self.llm = llm if llm is not None else AutoModelForCausalLM.from_config(config.llm_config)
        d_nmt, d_llm = config.nmt_hidden_size, config.llm_hidden_size
        self.enc_map = MappingBlock(d_nmt, config.enc_map_hidden_size, d_llm)
        self.boundary = nn.Parameter(torch.zeros(d_llm))
        d_mid = config.dec_map_hidden_size
        self.dec_map = nn.Sequential(MappingBlock(d_llm, d_mid, d_mid), MappingBlock(d_mid, d_mid, d_nmt))
        self.encoder_fusion = None
        if config.encoder_fusion != "last":
            nmt_cfg = config.nmt_config
            self.encoder_fusion = EncoderFusion(config.encoder_fusion, nmt_cfg.encoder_layers + 1, d_nmt, nmt_cfg.encoder_attention_heads)
        # "same language?" classifier over a pair of pooled sentence vectors [a, b, |a - b|, a * b]
        self.lang_head = nn.Linear(4 * d_llm, 1) if config.lambda_lang > 0 else None
        self._ot_loss_fn = None
        for block in (self.enc_map, *self.dec_map):
            self._init_weights(block)
        self.post_init()
        # Measured with torch 2.13 on CPU: a bf16 Linear whose weight does not require grad (our frozen heads) takes
        # a path ~500x slower on a non-contiguous input, such as the last-position slice generate() and
        # `logits_to_keep` hand the LM heads (22 s instead of 0.04 s for a 151936 x 896 head at batch 16).
        for head in (self.llm.get_output_embeddings(), self.nmt.get_output_embeddings()):
            head.register_forward_pre_hook(_contiguous_input)
        self.set_stage(None)

    # ------------------------------------------------------------------ what trains
    def _is_cross_attention(self, name: str) -> bool:
        return name.startswith("nmt.model.decoder.layers.") and any(p in name for p in self.CROSS_ATTENTION_PARTS)

    def _matches(self, name: str, prefixes) -> bool:
        return any(
            self._is_cross_attention(name) if p == "cross_attention" else name == p or name.startswith(p + ".")
            for p in prefixes
        )

    def is_bridge_parameter(self, name: str) -> bool:
        """True for every weight a bridge-only checkpoint stores (what any stage trains)."""
        return self._matches(name, set().union(*self.STAGE_TRAINABLE.values()))

    def set_stage(self, stage: int | None) -> list[str]:
        """Freeze everything, then unfreeze what `stage` trains (None: nothing). Returns the trainable names."""
        if stage is not None and stage not in self.STAGE_TRAINABLE:
            raise ValueError(f"stage={stage!r} is not one of {sorted(self.STAGE_TRAINABLE)}")
        prefixes = self.STAGE_TRAINABLE.get(stage, ())
        for name, param in self.named_parameters():
            param.requires_grad_(self._matches(name, prefixes))
        if "cross_attention" in prefixes:
            self.keep_cross_attention_fp32()
        return self.trainable_parameter_names()

    def keep_cross_attention_fp32(self) -> None:
        """Over bf16 bases, the decoder cross-attention (a bridge weight) stays fp32 for training and loading."""
        if self.nmt.dtype != torch.float32:
            for layer in self.nmt.model.decoder.layers:
                run_in_fp32(layer.encoder_attn, self.nmt.dtype)
                run_in_fp32(layer.encoder_attn_layer_norm, self.nmt.dtype)

    def trainable_parameter_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def train(self, mode: bool = True):
        # The frozen bases never train: keep them in eval mode (no dropout) whatever a Trainer asks.
        super().train(mode)
        self.nmt.eval()
        self.llm.eval()
        # transformers 5.x renamed the flag; read whichever this version has
        checkpointing = getattr(type(self.llm), "is_activation_checkpointing", None)
        checkpointing = self.llm.is_activation_checkpointing if checkpointing else self.llm.is_gradient_checkpointing
        if mode and checkpointing:
            # transformers checkpoints a layer only while its `training` flag is set. The LLM's decoder layers have
            # no dropout of their own (attention dropout reads the attention module's flag, which stays off), so
            # switching just those flags turns checkpointing on without turning dropout on.
            for module in self.llm.modules():
                if isinstance(module, GradientCheckpointingLayer):
                    module.training = True
        return self

    def set_ot_loss(self, fn) -> None:
        """Plug in the OT term: `fn(x, x_mask, y, y_mask) -> scalar` (lives in `train/`, outside the bundle)."""
        self._ot_loss_fn = fn

    def get_input_embeddings(self):
        return self.llm.get_input_embeddings()

    def get_output_embeddings(self):
        return self.nmt.get_output_embeddings()

    def get_encoder(self):
        return self.nmt.get_encoder()

    # ------------------------------------------------------------------ building blocks
    def encode_last(self, input_ids, attention_mask):
        """NLLB encoder's final states (frozen, no autograd) -> (B, Ls, d_nmt)."""
        with torch.no_grad():
            return self.nmt.model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_source(self, input_ids, attention_mask):
        """Source states for the LLM side: the last encoder layer, or all layers fused (`config.encoder_fusion`)."""
        if self.encoder_fusion is None:
            return self.encode_last(input_ids, attention_mask)
        with torch.no_grad():  # the encoder is frozen; only the fusion weights learn
            states = self.nmt.model.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        dtype = next(self.encoder_fusion.parameters()).dtype
        return self.encoder_fusion([h.to(dtype) for h in states], attention_mask)

    @staticmethod
    def _used_answer_columns(answer_ids, answer_mask):
        """Drop the answer columns that are padding in every row (e.g. a collator's round-up to a multiple of 8):
        (B, La) -> (B, La') with La' the longest answer of the batch."""
        if answer_ids is None or answer_mask is None:
            return answer_ids, answer_mask
        used = answer_mask.bool().any(0)  # (La,)
        if bool(used.all()):
            return answer_ids, answer_mask
        return answer_ids[:, used], answer_mask[:, used]

    def _llm_inputs(self, input_ids, attention_mask, prompt_ids, prompt_mask, answer_ids, answer_mask):
        """Build `[bos, enc_map(src), boundary, prompt, answer]` per row, left-padded as a whole.

        Returns inputs_embeds (B, L, d_llm), attention mask (B, L), answer targets (B, L) that hold the
        answer token at answer positions and -100 elsewhere, and a (B, L) mask of the source positions.
        L is the longest row: no column is padding in every row (the LLM computes nothing for them), and the
        answer part is cut to the longest answer (`_used_answer_columns`) before it is placed.
        """
        answer_ids, answer_mask = self._used_answer_columns(answer_ids, answer_mask)
        if input_ids is None or input_ids.shape[0] == 0:
            raise ValueError("empty batch: input_ids must hold at least one example")
        B, device = input_ids.shape[0], input_ids.device
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embed = self.llm.get_input_embeddings()
        dtype = embed.weight.dtype
        src = self.encode_source(input_ids, attention_mask)  # (B, Ls, d_nmt)
        src = self.enc_map(src.to(self.enc_map.up.weight.dtype)).to(dtype)  # (B, Ls, d_llm)

        def ones(n):
            return torch.ones(B, n, dtype=torch.long, device=device)

        def no_targets(mask):
            return torch.full(mask.shape, -100, dtype=torch.long, device=device)

        parts = []  # (embeds, mask, targets, is_source)
        bos = self.config.llm_config.bos_token_id
        if isinstance(bos, list):
            bos = bos[0]
        if bos is not None:
            bos_ids = torch.full((B, 1), bos, dtype=torch.long, device=device)
            parts.append((embed(bos_ids), ones(1), no_targets(ones(1)), 0 * ones(1)))
        parts.append((src, attention_mask, no_targets(attention_mask), attention_mask))
        parts.append((self.boundary.to(dtype).expand(B, 1, -1), ones(1), no_targets(ones(1)), 0 * ones(1)))
        if prompt_ids is not None and prompt_ids.shape[1] > 0:
            prompt_mask = torch.ones_like(prompt_ids) if prompt_mask is None else prompt_mask
            parts.append((embed(prompt_ids), prompt_mask, no_targets(prompt_mask), 0 * prompt_mask))
        if answer_ids is not None:
            answer_mask = torch.ones_like(answer_ids) if answer_mask is None else answer_mask
            parts.append((embed(answer_ids), answer_mask, answer_ids.masked_fill(answer_mask == 0, -100), 0 * answer_mask))
        embeds = torch.cat([p[0] for p in parts], dim=1)  # (B, L, d)
        mask, targets, is_source = (torch.cat([p[i] for p in parts], dim=1).long() for i in (1, 2, 3))  # (B, L) each
        # Squeeze out every part's padding: a stable sort on the mask moves padding to the left and keeps the
        # order of real positions, so each row is its unpadded sequence, left-padded (batch == one by one).
        # Each part was padded to its own longest row, so L is the sum of those; the columns left of the longest
        # row are then padding in every row and are dropped: the LLM's width is the longest row (B, L').
        width = int(mask.sum(1).max())
        order = torch.argsort(mask, dim=1, stable=True)[:, mask.shape[1] - width :]  # (B, L')
        embeds = embeds.gather(1, order.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
        return embeds, mask.gather(1, order), targets.gather(1, order), is_source.gather(1, order)

    def _capture_module(self, layer: int):
        """(module, use_input): where `hidden_states[layer]` can be read with a hook."""
        base = self.llm.base_model
        n_layers = len(base.layers)
        index = layer % (n_layers + 1)
        if index == 0:
            return base.layers[0], True  # embeddings = the first layer's input
        if index == n_layers:
            return base.norm, False  # the last entry of hidden_states is after the final norm
        return base.layers[index - 1], False

    @contextmanager
    def capture_llm_states(self, layer: int | None = None):
        """Collect `hidden_states[layer]` (default `config.llm_layer`) of every LLM forward in the block.

        A hook instead of `output_hidden_states=True`: generation then keeps one layer, not all of them.
        """
        module, use_input = self._capture_module(self.config.llm_layer if layer is None else layer)
        captured = []

        def keep(tensor):
            captured.append(tensor[0] if isinstance(tensor, tuple) else tensor)

        if use_input:
            handle = module.register_forward_pre_hook(
                lambda m, args, kwargs: keep(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
            )
        else:
            handle = module.register_forward_hook(lambda m, args, out: keep(out))
        try:
            yield captured
        finally:
            handle.remove()

    def map_to_memory(self, states):
        """Decoder-side mapping: (B, T, d_llm) LLM states -> (B, T, d_nmt) decoder memory."""
        return self.dec_map(states.to(self.dec_map[0].up.weight.dtype))

    def _enc_side_trains(self) -> bool:
        return torch.is_grad_enabled() and (self.boundary.requires_grad or self.enc_map.up.weight.requires_grad)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        prompt_ids=None,
        prompt_attention_mask=None,
        answer_ids=None,
        answer_attention_mask=None,
        labels=None,
        decoder_input_ids=None,
        ot_target_ids=None,
        ot_target_attention_mask=None,
        return_dict=True,
        **kwargs,
    ) -> XBridgeOutput:
        embeds, mask, targets, is_source = self._llm_inputs(
            input_ids, attention_mask, prompt_ids, prompt_attention_mask, answer_ids, answer_attention_mask
        )
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate derives them: left padding is skipped
        # Answer columns that are padding in every row are not in the LLM input: the logits and the decoder memory
        # cover the longest answer of the batch (B, La'), right-aligned as before.
        used_answer, _ = self._used_answer_columns(answer_ids, answer_attention_mask)
        n_answer = 0 if answer_ids is None else used_answer.shape[1]
        # Full-vocabulary logits over the answer only when the LLM term counts (not in stage 3).
        want_llm_loss = n_answer > 0 and self.config.lambda_llm != 0
        align = answer_ids is not None and (self.config.lambda_align > 0 or self.config.lambda_lang > 0)
        # Gradients flow through the frozen LLM only when the encoder side trains (stages 1-2).
        with (
            torch.set_grad_enabled(self._enc_side_trains()),
            self.capture_llm_states() as captured,
            self.capture_llm_states(self.align_layer) if align else nullcontext([]) as captured_align,
        ):
            llm_out = self.llm(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=False,
                logits_to_keep=n_answer + 1 if want_llm_loss else 1,
            )
        if labels is not None and answer_ids is None:
            raise ValueError("labels (decoder targets) need answer_ids: the decoder reads the LLM states of the answer")
        out = XBridgeOutput()
        if align:
            out.loss_align, out.loss_lang = self._alignment_losses(
                captured_align[0], is_source, input_ids[:, 0], answer_ids, answer_attention_mask
            )
        if answer_ids is None:
            out.llm_logits = llm_out.logits
            return out
        answer_targets = targets[:, -n_answer:]  # (B, La): answers are right-aligned after the packing
        if want_llm_loss:
            out.llm_logits = llm_out.logits[:, :-1]  # (B, La, V): position p predicts token p + 1
            out.loss_llm = F.cross_entropy(out.llm_logits.flatten(0, 1).float(), answer_targets.flatten(), ignore_index=-100)
        states = captured[0][:, -n_answer - 1 : -1]  # (B, La, d_llm): the positions that predict the answer
        out.decoder_memory = self.map_to_memory(states)  # (B, La, d_nmt)
        out.decoder_memory_mask = (answer_targets != -100).long()
        if labels is not None:
            if decoder_input_ids is None:
                decoder_input_ids = shift_right(labels, self.config.nmt_config.pad_token_id, self.decoder_start_id)
            dec = self.nmt.model.decoder(
                input_ids=decoder_input_ids,
                encoder_hidden_states=out.decoder_memory.to(self.nmt.dtype),
                encoder_attention_mask=out.decoder_memory_mask,
            ).last_hidden_state
            out.decoder_logits = self.nmt.lm_head(dec)  # (B, Ly, V_nmt)
            out.loss_dec = F.cross_entropy(out.decoder_logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        if ot_target_ids is not None:
            if ot_target_attention_mask is None:
                ot_target_attention_mask = torch.ones_like(ot_target_ids)
            out.ot_target_states = self.encode_last(ot_target_ids, ot_target_attention_mask)
            out.ot_target_mask = ot_target_attention_mask
            if self._ot_loss_fn is not None:
                out.loss_ot = self._ot_loss_fn(
                    out.ot_target_states.float(), ot_target_attention_mask, out.decoder_memory.float(), out.decoder_memory_mask
                )
        terms = [
            (self.config.lambda_llm, out.loss_llm),
            (self.config.lambda_dec, out.loss_dec),
            (self.config.lambda_ot, out.loss_ot),
            (self.config.lambda_align, out.loss_align),
            (self.config.lambda_lang, out.loss_lang),
        ]
        present = [w * term for w, term in terms if term is not None and w != 0]
        out.loss = torch.stack(present).sum() if present else None
        return out

    @property
    def align_layer(self) -> int:
        """LLM layer of the alignment loss (`config.align_layer`, default the middle layer, as AlignX)."""
        layer = self.config.align_layer
        return len(self.llm.base_model.layers) // 2 if layer is None else layer

    def _alignment_losses(self, states, is_source, src_lang_ids, english_ids, english_mask):
        """AlignX-style terms, adapted to a frozen LLM (stage 1).

        InfoNCE (cosine, temperature 0.1, in-batch negatives, both directions) between the mean-pooled LLM states
        of the mapped source x and those of the parallel English sentence alone, at `align_layer`; and a
        "same language?" classifier over pairs of pooled source vectors (the NLLB code leads every source row).
        """
        x = mean_pool(states.float(), is_source)  # (B, d): causal, so source positions never see the answer
        english_mask = torch.ones_like(english_ids) if english_mask is None else english_mask
        with torch.no_grad(), self.capture_llm_states(self.align_layer) as captured:
            self.llm.base_model(input_ids=english_ids, attention_mask=english_mask, use_cache=False)
        y = mean_pool(captured[0].float(), english_mask)  # (B, d): constant target
        loss_align = loss_lang = None
        if self.config.lambda_align > 0:
            logits = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T / 0.1  # (B, B)
            labels = torch.arange(x.shape[0], device=x.device)
            loss_align = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        if self.lang_head is not None and x.shape[0] > 1:
            i, j = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)  # all pairs
            a, b = x[i], x[j]
            pair = torch.cat([a, b, (a - b).abs(), a * b], dim=-1).to(self.lang_head.weight.dtype)
            same = (src_lang_ids[i] == src_lang_ids[j]).float()
            loss_lang = F.binary_cross_entropy_with_logits(self.lang_head(pair).squeeze(-1).float(), same)
        return loss_align, loss_lang

    @property
    def decoder_start_id(self) -> int:
        start = self.config.nmt_config.decoder_start_token_id
        return self.config.nmt_config.eos_token_id if start is None else start

    # ------------------------------------------------------------------ generation
    def _target_langs(self, tgt_lang):
        if tgt_lang is None:
            return None, False
        many = isinstance(tgt_lang, (list, tuple))
        langs = list(tgt_lang) if many else [tgt_lang]
        if not langs:
            raise ValueError("tgt_lang is an empty list: give at least one NLLB code, e.g. 'swh_Latn'")
        for lang in langs:
            if lang != ENGLISH:
                self.config.lang_id(lang, "tgt_lang")
        return langs, many

    @staticmethod
    def _split_generate_kwargs(kwargs):
        """Plain kwargs go to both phases; `llm_*` / `nmt_*` override one phase (SeamlessM4T convention)."""
        shared = {k: v for k, v in kwargs.items() if not k.startswith(("llm_", "nmt_"))}
        llm = {**shared, **{k[4:]: v for k, v in kwargs.items() if k.startswith("llm_")}}
        nmt = {**shared, **{k[4:]: v for k, v in kwargs.items() if k.startswith("nmt_")}}
        for phase in (llm, nmt):
            if "max_new_tokens" not in phase and "max_length" not in phase:
                phase["max_new_tokens"] = 256
        return llm, nmt

    def _llm_eos_ids(self, generation_kwargs) -> list[int]:
        eos = generation_kwargs.get("eos_token_id", self.llm.generation_config.eos_token_id)
        if eos is None:
            eos = self.config.llm_config.eos_token_id
        return [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]

    @torch.no_grad()
    def generate_english(self, input_ids, attention_mask=None, prompt_ids=None, prompt_attention_mask=None, **llm_kwargs):
        """Phase 1: the LLM answers in English; the `llm_layer` states are captured during the same call.

        Returns (English ids (B, T), decoder memory (B, T, d_nmt), memory mask (B, T)).
        """
        embeds, mask, _, _ = self._llm_inputs(input_ids, attention_mask, prompt_ids, prompt_attention_mask, None, None)
        eos_ids = self._llm_eos_ids(llm_kwargs)
        if llm_kwargs.get("pad_token_id") is None:
            pad = self.llm.generation_config.pad_token_id
            llm_kwargs["pad_token_id"] = pad if pad is not None else (eos_ids[0] if eos_ids else 0)
        llm_kwargs.pop("return_dict_in_generate", None)
        with self.capture_llm_states() as captured:
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, return_dict_in_generate=True, **llm_kwargs)
        sequences = out.sequences  # (B', T): only the new tokens, since the LLM got inputs_embeds
        T = sequences.shape[1]
        # Forward call t saw the input that predicts token t: the prompt's last position, then each new token.
        states = torch.cat([captured[0][:, -1:], *captured[1:T]], dim=1)  # (B' or B' x beams, T, d)
        beam_indices = getattr(out, "beam_indices", None)
        if beam_indices is not None:  # beam search: follow each returned sequence back through its beams
            steps = beam_indices[:, :T].clamp(min=0)  # (B', T); -1 marks steps after the end
            states = states[steps, torch.arange(T, device=steps.device)]
        # Valid up to and including the first EOS (EOS is a predicted token); padding after it is not.
        is_eos = torch.isin(sequences, torch.tensor(eos_ids, device=sequences.device)) if eos_ids else torch.zeros_like(sequences, dtype=torch.bool)
        memory_mask = ((is_eos.long().cumsum(-1) - is_eos.long()) == 0).long()
        return sequences, self.map_to_memory(states), memory_mask

    @torch.no_grad()
    def generate_target(self, memory, memory_mask, tgt_langs: list[str], **nmt_kwargs) -> dict:
        """Phase 2: the NLLB decoder writes each language from the same memory, all languages in one batch."""
        B, K = memory.shape[0], len(tgt_langs)
        lang_ids = torch.tensor([self.config.lang_id(lang) for lang in tgt_langs], device=memory.device)
        prefix = torch.stack([torch.full_like(lang_ids, self.decoder_start_id), lang_ids], dim=1)  # (K, 2)
        decoder_input_ids = prefix.repeat_interleave(B, dim=0)  # (K*B, 2): `</s> tgt_code`, like forced_bos
        out = self.nmt.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory.to(self.nmt.dtype).repeat(K, 1, 1)),
            attention_mask=memory_mask.repeat(K, 1),
            decoder_input_ids=decoder_input_ids,
            **nmt_kwargs,
        )
        sequences = out.sequences if isinstance(out, ModelOutput) else out
        return {lang: sequences[i * B : (i + 1) * B] for i, lang in enumerate(tgt_langs)}

    @torch.no_grad()
    def generate(
        self,
        input_ids=None,
        attention_mask=None,
        prompt_ids=None,
        prompt_attention_mask=None,
        tgt_lang=None,
        return_dict_in_generate: bool = False,
        **kwargs,
    ):
        """Answer in English with the LLM, then write `tgt_lang` with the NLLB decoder.

        `tgt_lang`: an NLLB code -> NMT ids (B, T); a list -> {code: ids}; None or "eng_Latn" -> the LLM's English ids.
        Plain kwargs (`max_new_tokens`, `num_beams`, `do_sample`, ...) apply to both phases; `llm_<kw>` /
        `nmt_<kw>` override one phase.
        """
        langs, many = self._target_langs(tgt_lang)
        for unused in ("answer_ids", "answer_attention_mask", "labels", "ot_target_ids", "ot_target_attention_mask"):
            kwargs.pop(unused, None)  # a training batch can be passed as is
        llm_kwargs, nmt_kwargs = self._split_generate_kwargs(kwargs)
        english, memory, memory_mask = self.generate_english(
            input_ids, attention_mask, prompt_ids, prompt_attention_mask, **llm_kwargs
        )
        foreign = [lang for lang in (langs or []) if lang != ENGLISH]
        if nmt_kwargs.get("num_return_sequences", 1) > 1:
            raise ValueError("nmt_num_return_sequences > 1 is not supported: the decoder returns one text per language")
        by_lang = self.generate_target(memory, memory_mask, foreign, **nmt_kwargs) if foreign else {}
        if ENGLISH in (langs or [ENGLISH]):
            by_lang[ENGLISH] = english
        sequences = {lang: by_lang[lang] for lang in (langs or [ENGLISH])} if many else by_lang[(langs or [ENGLISH])[0]]
        if return_dict_in_generate:
            return XBridgeGenerateOutput(
                sequences=sequences, llm_sequences=english, decoder_memory=memory, decoder_memory_mask=memory_mask
            )
        return sequences

    # ------------------------------------------------------------------ building, saving, loading
    @classmethod
    def from_bases(cls, nmt_name_or_path, llm_name_or_path, dtype=None, device_map=None, lang_code_to_id=None, **config_overrides):
        """A new bridge from two pretrained checkpoints (Hub ids or folders), bridge weights freshly initialised.

        `lang_code_to_id` defaults to every `xxx_Yyyy` special token of the NLLB tokenizer found next to the
        NLLB weights.
        """
        base_kwargs = {k: config_overrides.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only") if k in config_overrides}
        nmt = M2M100ForConditionalGeneration.from_pretrained(nmt_name_or_path, dtype=dtype, device_map=device_map, **base_kwargs)
        llm = AutoModelForCausalLM.from_pretrained(llm_name_or_path, dtype=dtype, device_map=device_map, **base_kwargs)
        if lang_code_to_id is None:
            lang_code_to_id = nllb_lang_codes(nmt_name_or_path, **base_kwargs)
        config = XBridgeConfig(
            nmt_config=nmt.config,
            llm_config=llm.config,
            nmt_name_or_path=nmt_name_or_path,
            llm_name_or_path=llm_name_or_path,
            lang_code_to_id=lang_code_to_id,
            **config_overrides,
        )
        return cls._around_bases(config, nmt, llm)

    @classmethod
    def _around_bases(cls, config, nmt, llm):
        # The composite config holds copies of the base configs; give the live models those copies back with
        # the attention backend they were actually loaded with, so both stay on the same backend.
        for live, copy in ((nmt, config.nmt_config), (llm, config.llm_config)):
            copy._attn_implementation = live.config._attn_implementation
            live.config = copy
        model = cls(config, nmt=nmt, llm=llm)
        bridge_device = llm.get_input_embeddings().weight.device
        model.enc_map.to(bridge_device)
        model.boundary.data = model.boundary.data.to(bridge_device)
        model.dec_map.to(nmt.model.decoder.embed_tokens.weight.device)
        return model

    def save_pretrained(self, save_directory, bridge_only: bool | None = None, **kwargs):
        """Bridge-only by default (mapping layers, boundary, decoder cross-attention: megabytes, not the bases)."""
        bridge_only = self.config.bridge_only if bridge_only is None else bridge_only
        if bridge_only and not (self.config.nmt_name_or_path and self.config.llm_name_or_path):
            raise ValueError("a bridge-only checkpoint needs config.nmt_name_or_path and config.llm_name_or_path; "
                             "build the model with from_bases(...) or save with bridge_only=False")
        previous = self.config.bridge_only, self.config.nmt_name_or_path, self.config.llm_name_or_path
        self.config.bridge_only = bridge_only
        # Local bases are written relative to the bridge's folder, so the bridge finds them wherever the tree moves
        # and from any working directory; Hub ids are written as they are.
        self.config.nmt_name_or_path = base_reference(self.config.nmt_name_or_path, save_directory)
        self.config.llm_name_or_path = base_reference(self.config.llm_name_or_path, save_directory)
        if bridge_only:
            state = kwargs.pop("state_dict", None) or self.state_dict()
            # The "same language?" head only serves the stage-1 loss: once that loss is off, it is not part of the bridge.
            drop_lang_head = self.config.lambda_lang == 0
            kwargs["state_dict"] = {
                k: v for k, v in state.items()
                if self.is_bridge_parameter(k) and not (drop_lang_head and k.startswith("lang_head."))
            }
        try:
            super().save_pretrained(save_directory, **kwargs)
            if kwargs.get("is_main_process", True):
                write_model_card(self, save_directory)
        finally:
            self.config.bridge_only, self.config.nmt_name_or_path, self.config.llm_name_or_path = previous

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Bridge-only checkpoints load the bases by name first, then the bridge; full ones load as usual."""
        config = kwargs.pop("config", None)
        hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only", "subfolder") if k in kwargs}
        if not isinstance(config, XBridgeConfig):
            config = XBridgeConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if not config.bridge_only:
            return super().from_pretrained(pretrained_model_name_or_path, *args, config=config, **kwargs)
        base_kwargs = {k: v for k, v in hub_kwargs.items() if k not in ("subfolder", "revision")}  # revision: the bridge's
        base_kwargs.update({k: kwargs[k] for k in ("device_map", "attn_implementation") if k in kwargs})
        base_kwargs["dtype"] = kwargs.get("dtype", kwargs.get("torch_dtype"))
        for key in ("nmt_name_or_path", "llm_name_or_path"):  # an explicit base wins over the saved reference
            name = kwargs.pop(key, None) or resolve_base(getattr(config, key), pretrained_model_name_or_path, key)
            setattr(config, key, name)
        nmt = M2M100ForConditionalGeneration.from_pretrained(config.nmt_name_or_path, **base_kwargs)
        llm = AutoModelForCausalLM.from_pretrained(config.llm_name_or_path, **base_kwargs)
        check_bases_match(config, nmt.config, llm.config)
        model = cls._around_bases(config, nmt, llm)
        weights = cached_file(pretrained_model_name_or_path, BRIDGE_WEIGHTS_NAME, **hub_kwargs)
        from safetensors.torch import load_file  # safetensors is a dependency of transformers

        state = load_file(weights)
        if model.lang_head is None:  # a training-only head saved by an older checkpoint; unused here
            state = {k: v for k, v in state.items() if not k.startswith("lang_head.")}
        unknown = [k for k in state if not model.is_bridge_parameter(k)]
        missing = [k for k, _ in model.named_parameters() if model.is_bridge_parameter(k) and k not in state]
        if unknown or missing:
            raise ValueError(f"bridge checkpoint {pretrained_model_name_or_path!r} does not fit this model: "
                             f"unexpected {unknown[:5]}, missing {missing[:5]}")
        model.keep_cross_attention_fp32()  # trained weights are not rounded to the bases' dtype
        own = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in state.items():
                own[name].copy_(tensor.to(own[name].dtype))
        model.eval()
        return model


def base_reference(name_or_path, save_directory):
    """How a bridge saved in `save_directory` refers to a base. A local folder beside the bridge (a sibling, as in
    `bridge/`, `nmt/`, `llm/`) is written relative to it (`../nmt`), so the three move together; a local folder
    elsewhere as an absolute path (a copy of the bridge, e.g. a pushed revision, still finds it); a Hub id as it is."""
    if name_or_path is None or not os.path.isdir(name_or_path):
        return name_or_path
    absolute = os.path.abspath(name_or_path)
    relative = os.path.relpath(absolute, os.path.abspath(save_directory))
    if relative.startswith(os.path.join("..", "..")):
        return absolute
    return relative if relative.startswith("..") else os.path.join(".", relative)


def resolve_base(name, bridge, key):
    """Where the base `name` saved in the bridge `bridge` lives: a path is read relative to the bridge's own
    folder (never the current directory), an absolute path as it is, anything else is a Hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name is None:
        raise ValueError(f"bridge {bridge!r} names no base in config.{key}: pass {key}=... to from_pretrained")
    tried = []
    if os.path.isabs(name):
        tried.append(name)
    elif os.path.isdir(str(bridge)):
        tried.append(os.path.normpath(os.path.join(str(bridge), name)))
    for path in tried:
        if os.path.isdir(path):
            return path
    is_path = os.path.isabs(name) or name.startswith(".") or name.count("/") > 1 or os.sep in name.replace("/", "")
    if not is_path:
        try:
            validate_repo_id(name)
            return name  # a Hub id: from_pretrained resolves it (cache, offline mode, revision) as usual
        except HFValidationError:
            pass
    raise OSError(
        f"the base {key}={name!r} of bridge {str(bridge)!r} was not found (tried {tried or [name]}); a local base is "
        f"looked up relative to the bridge's folder. Move the base there, or pass {key}='<folder or Hub id>' to "
        f"from_pretrained (and save again to store it)"
    )


def shift_right(labels, pad_id: int, start_id: int):
    """Decoder inputs from labels: `[start, labels[:-1]]` with -100 replaced by padding."""
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted == -100, pad_id)


def nllb_lang_codes(nmt_name_or_path, **hub_kwargs) -> dict:
    """Language code -> token id, read from the NLLB tokenizer files next to the weights (no tokenizer object)."""
    try:
        path = cached_file(nmt_name_or_path, "tokenizer.json", **hub_kwargs)
    except OSError:
        path = None
    if path is None:
        logger.warning(f"no tokenizer.json next to {nmt_name_or_path}: pass lang_code_to_id= to from_bases")
        return {}
    with open(path, encoding="utf-8") as f:
        added = json.load(f).get("added_tokens", [])
    return {t["content"]: t["id"] for t in added if is_lang_code(t["content"])}


def check_bases_match(config, nmt_config, llm_config):
    """A bridge only fits the bases it was trained on: compare the shapes that the bridge weights depend on."""
    pairs = [
        ("NMT d_model", config.nmt_config.d_model, nmt_config.d_model, config.nmt_name_or_path),
        ("NMT vocab_size", config.nmt_config.vocab_size, nmt_config.vocab_size, config.nmt_name_or_path),
        ("LLM hidden_size", config.llm_config.hidden_size, llm_config.hidden_size, config.llm_name_or_path),
        ("LLM vocab_size", config.llm_config.vocab_size, llm_config.vocab_size, config.llm_name_or_path),
        ("LLM num_hidden_layers", config.llm_config.num_hidden_layers, llm_config.num_hidden_layers, config.llm_name_or_path),
    ]
    for what, expected, found, name in pairs:
        if expected != found:
            raise ValueError(f"the bridge was built for a base with {what}={expected}, but {name!r} has {what}={found}")


def write_model_card(model, save_directory) -> None:
    """README.md for the Hub: bases, languages, stage, training data and metrics when known, usage."""
    config = model.config
    info = getattr(model, "card_info", None) or {}
    langs = sorted(config.lang_code_to_id)
    n_bridge = sum(p.numel() for n, p in model.named_parameters() if model.is_bridge_parameter(n))
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [xbridge, multilingual, nllb, custom_code]",
        "base_model:",
        f"- {config.nmt_name_or_path}",
        f"- {config.llm_name_or_path}",
        "---",
        "",
        "# XBridge bridge",
        "",
        f"Composes the translation model `{config.nmt_name_or_path}` with the LLM `{config.llm_name_or_path}` through "
        f"small trained mapping layers ({n_bridge / 1e6:.2f}M parameters). The bases stay frozen and are loaded by name.",
        "",
        f"- training stage: {config.stage or 'untrained'}",
        f"- languages ({len(langs)}): {', '.join(langs[:40])}{' ...' if len(langs) > 40 else ''}",
        f"- checkpoint: {'bridge only' if config.bridge_only else 'full (bases included)'}",
    ]
    if info.get("training_data"):
        lines.append(f"- training data: {info['training_data']}")
    if info.get("metrics"):
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in info["metrics"].items()]
    example_lang = next((code for code in langs if code != ENGLISH), ENGLISH)
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModel, AutoProcessor",
        "",
        'repo = "<this repo>"',
        "model = AutoModel.from_pretrained(repo, trust_remote_code=True)",
        "processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)",
        f'batch = processor(["..."], src_lang="{example_lang}", return_tensors="pt")',
        f'ids = model.generate(**batch, tgt_lang="{example_lang}", max_new_tokens=128)',
        "print(processor.batch_decode(ids, skip_special_tokens=True))",
        "```",
        "",
    ]
    with open(os.path.join(save_directory, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


# `register_for_auto_class` records one auto class per class; the config carries the full `auto_map` instead.
XBridgeConfig.register_for_auto_class()
XBridgeForConditionalGeneration.register_for_auto_class("AutoModel")

__all__ = ["XBridgeForConditionalGeneration", "XBridgePreTrainedModel", "XBridgeOutput", "XBridgeGenerateOutput"]

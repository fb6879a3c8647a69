"""XBridge: a frozen NLLB-200 translation model and a frozen English-centric LLM joined by small mapping layers.

    NLLB encoder(x) -> enc_map -> LLM inputs_embeds = [bos, mapped source, boundary, prompt, answer]
    LLM hidden_states[llm_layer] at the positions that predict the answer -> dec_map -> NLLB decoder cross-attention

Part of the flat Hub bundle: only torch and transformers are imported, so `trust_remote_code` loading needs
nothing else. Building around the bases, saving and loading live in `hub_xbridge.py` (`XBridgeHubMixin`);
training-only code (OT solvers, trainers) lives in `train/` and plugs in through `set_ot_loss`.
"""

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, GenerationMixin, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput

try:  # relative imports for the Hub bundle; plain imports when the project root is on sys.path
    from .configuration_xbridge import ENGLISH, XBridgeConfig
    from .hub_xbridge import XBridgeHubMixin
    # unused here, imported so that loading the model fetches every bundle file (`write_bundle` copies them all)
    from .processing_xbridge import XBridgeProcessor  # noqa: F401
except ImportError:
    from configuration_xbridge import ENGLISH, XBridgeConfig
    from hub_xbridge import XBridgeHubMixin
    from processing_xbridge import XBridgeProcessor  # noqa: F401


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


class LLMPass(NamedTuple):
    """What `forward` takes from its one LLM pass."""

    logits: torch.Tensor  # (B, logits_to_keep, V_llm): the last positions' logits
    answer_targets: torch.Tensor | None  # (B, La): answer token ids, -100 on padding (None: no answer given)
    answer_states: torch.Tensor | None  # (B, La, d_llm): hidden_states[llm_layer] at the positions predicting them
    align_states: torch.Tensor | None  # (B, L, d_llm): hidden_states[align_layer] (alignment losses only)
    is_source: torch.Tensor  # (B, L): 1 at the mapped source positions


def _cross_entropy(logits, targets):  # (B, L, V), (B, L) with -100 ignored -> mean over the counted tokens
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


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


class XBridgeForConditionalGeneration(XBridgeHubMixin, XBridgePreTrainedModel, GenerationMixin):
    # The loss is a mean per micro-batch that ignores `num_items_in_batch`: tell Trainers to scale it for
    # gradient accumulation themselves (otherwise `**kwargs` in forward() makes them assume it is pre-scaled).
    accepts_loss_kwargs = False
    # The one declared place for what trains at each stage (paper, Table "three stages"): name prefixes of
    # parameters. `cross_attention` expands to every NMT decoder layer's cross-attention and its layer norm.
    # The optional encoder fusion trains with the encoder-side mapping; the optional "same language?" head
    # trains in stage 1 with the alignment loss.
    STAGE_TRAINABLE = {
        1: ("enc_map", "boundary", "encoder_fusion", "lang_head", "dec_map", "cross_attention"),
        2: ("enc_map", "boundary", "encoder_fusion"),
        3: ("dec_map", "cross_attention"),
    }
    CROSS_ATTENTION_PARTS = ("encoder_attn", "encoder_attn_layer_norm")

    def __init__(self, config: XBridgeConfig, nmt: PreTrainedModel | None = None, llm: PreTrainedModel | None = None):
        super().__init__(config)
        # a full checkpoint: the NMT is built from its config (the Auto class maps NLLB's m2m_100 to its own class)
        self.nmt = nmt if nmt is not None else AutoModelForSeq2SeqLM.from_config(config.nmt_config)
        self.llm = llm if llm is not None else AutoModelForCausalLM.from_config(config.llm_config)
        d_nmt, d_llm = config.nmt_hidden_size, config.llm_hidden_size
        self.enc_map = MappingBlock(d_nmt, config.enc_map_hidden_size, d_llm)
        self.boundary = nn.Parameter(torch.zeros(d_llm))
        d_mid = config.dec_map_hidden_size
        self.dec_map = nn.Sequential(MappingBlock(d_llm, d_mid, d_mid), MappingBlock(d_mid, d_mid, d_nmt))
        self.encoder_fusion = None
        if config.encoder_fusion != "last":
            nmt_cfg = config.nmt_config
            # BART-style configs name the encoder's depth and heads; T5's has one depth and head count for both
            layers = getattr(nmt_cfg, "encoder_layers", None) or nmt_cfg.num_layers
            heads = getattr(nmt_cfg, "encoder_attention_heads", None) or nmt_cfg.num_heads
            self.encoder_fusion = EncoderFusion(config.encoder_fusion, layers + 1, d_nmt, heads)
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
        # the parameter-name prefixes of the decoder's cross-attention sublayers (`cross_attention_modules`)
        names = {module: name for name, module in self.named_modules()}
        self._cross_attention_prefixes = tuple(f"{names[m]}." for m in self.cross_attention_modules())
        self.set_stage(None)

    # ------------------------------------------------------------------ what trains
    def cross_attention_modules(self) -> list[nn.Module]:
        """The NMT decoder's cross-attention and its norm in every layer, whatever the family names them: BART-style
        decoders (NLLB, M2M100, mBART, Marian) `encoder_attn` + `encoder_attn_layer_norm`; T5 a `T5LayerCrossAttention`
        sublayer (its `EncDecAttention` and norm). The layers are the decoder's one ModuleList of its layer count."""
        decoder = self.nmt.get_decoder()
        layers = [m for m in decoder.children() if isinstance(m, nn.ModuleList) and len(m) > 0]
        if len(layers) != 1:
            raise ValueError(f"cannot find the decoder layers of {type(decoder).__name__}: expected one ModuleList "
                             f"directly under it, found {len(layers)}")
        found = []
        for layer in layers[0]:
            for name, module in layer.named_modules():
                if name.rsplit(".", 1)[-1] in self.CROSS_ATTENTION_PARTS or type(module).__name__.endswith("LayerCrossAttention"):
                    found.append(module)
        if not found:
            raise ValueError(f"no cross-attention found in the layers of {type(decoder).__name__} (looked for "
                             f"{self.CROSS_ATTENTION_PARTS} and *LayerCrossAttention sublayers)")
        return found

    def _is_cross_attention(self, name: str) -> bool:
        return name.startswith(self._cross_attention_prefixes)

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
            for module in self.cross_attention_modules():
                run_in_fp32(module, self.nmt.dtype)

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
    def encode_last(self, input_ids, attention_mask, encoder=None):
        """The NMT encoder's final states (frozen, no autograd) -> (B, Ls, d_nmt)."""
        with torch.no_grad():
            encoder = self.nmt.get_encoder() if encoder is None else encoder
            return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def memory_encoder(self):
        """The encoder whose output the NMT decoder was trained to read: OT's reference space. NLLB's one encoder;
        an NMT composed from two directions (an encoder that reads x, the decoder of a model that writes x from
        English) names its decoder's own encoder with `get_memory_encoder()`."""
        get = getattr(self.nmt, "get_memory_encoder", None)
        return self.nmt.get_encoder() if get is None else get()

    def encode_source(self, input_ids, attention_mask):
        """Source states for the LLM side: the last encoder layer, or all layers fused (`config.encoder_fusion`)."""
        if self.encoder_fusion is None:
            return self.encode_last(input_ids, attention_mask)
        with torch.no_grad():  # the encoder is frozen; only the fusion weights learn
            states = self.nmt.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
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
        L is the longest row: no column is padding in every row (the LLM computes nothing for them). `forward`
        hands in the answer already cut to its used columns (`_used_answer_columns`).
        """
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

    def llm_layers(self) -> nn.ModuleList:
        """The LLM's decoder layers, whatever its family names them (`layers`: Llama, Qwen, Gemma, ...; `h`: GPT-2):
        the ModuleList of `num_hidden_layers` blocks directly under its base model."""
        base, n = self.llm.base_model, self.config.llm_config.num_hidden_layers
        found = [m for m in base.children() if isinstance(m, nn.ModuleList) and len(m) == n]
        if len(found) != 1:
            raise ValueError(f"cannot find the {n} decoder layers of {type(base).__name__}: expected one ModuleList of "
                             f"{n} modules directly under it, found {len(found)}")
        return found[0]

    def _capture_module(self, layer: int):
        """(module, use_input): where `hidden_states[layer]` can be read with a hook."""
        layers = self.llm_layers()
        index = layer % (len(layers) + 1)
        if index == 0:
            return layers[0], True  # embeddings (+ learned positions, GPT-2) = the first layer's input
        if index == len(layers):
            # the last entry of hidden_states is after the final norm (`norm`, `ln_f`, ...): the base model's output
            return self.llm.base_model, False
        return layers[index - 1], False

    @contextmanager
    def capture_llm_states(self, layer: int | None = None):
        """Collect `hidden_states[layer]` (default `config.llm_layer`) of every LLM forward in the block.

        A hook instead of `output_hidden_states=True`: generation then keeps one layer, not all of them.
        """
        module, use_input = self._capture_module(self.config.llm_layer if layer is None else layer)
        captured = []

        def keep(tensor):
            captured.append(tensor[0] if isinstance(tensor, (tuple, ModelOutput)) else tensor)

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
        decoder_lang_ids=None,
        return_dict=True,
        **kwargs,
    ) -> XBridgeOutput:
        """The LLM pass, then each loss term the batch has targets for, then their weighted total."""
        if labels is not None and answer_ids is None:
            raise ValueError("labels (decoder targets) need answer_ids: the decoder reads the LLM states of the answer")
        # Answer columns that are padding in every row are dropped here, once: the LLM input, its logits and the
        # decoder memory cover the longest answer of the batch (B, La'), right-aligned.
        answer, answer_mask = self._used_answer_columns(answer_ids, answer_attention_mask)
        n_answer = 0 if answer is None else answer.shape[1]
        # Full-vocabulary logits over the answer only when the LLM term counts (not in stage 3).
        with_llm_loss = n_answer > 0 and self.config.lambda_llm != 0
        align = answer is not None and (self.config.lambda_align > 0 or self.config.lambda_lang > 0)
        llm = self._llm_pass(input_ids, attention_mask, prompt_ids, prompt_attention_mask, answer, answer_mask,
                             logits_to_keep=n_answer + 1 if with_llm_loss else 1, align=align)
        out = XBridgeOutput()
        if align:
            # The English runs alone as the batch padded it (all columns): cut, its last bits and the trained
            # results would move.
            out.loss_align, out.loss_lang = self._alignment_losses(
                llm.align_states, llm.is_source, input_ids[:, 0], answer_ids, answer_attention_mask
            )
        if answer is None:
            out.llm_logits = llm.logits
            return out
        if with_llm_loss:
            out.llm_logits = llm.logits[:, :-1]  # (B, La, V): position p predicts token p + 1
            out.loss_llm = _cross_entropy(out.llm_logits, llm.answer_targets)
        out.decoder_memory = self.map_to_memory(llm.answer_states)  # (B, La, d_nmt)
        out.decoder_memory_mask = (llm.answer_targets != -100).long()
        if labels is not None:
            memory, memory_mask = self.with_language_memory(out.decoder_memory, out.decoder_memory_mask, decoder_lang_ids)
            out.decoder_logits, out.loss_dec = self._decoder_loss(memory, memory_mask, labels, decoder_input_ids)
        if ot_target_ids is not None:
            out.ot_target_states, out.ot_target_mask, out.loss_ot = self._ot_term(
                ot_target_ids, ot_target_attention_mask, out.decoder_memory, out.decoder_memory_mask
            )
        out.loss = self._weighted_total(out)
        return out

    def _llm_pass(self, input_ids, attention_mask, prompt_ids, prompt_mask, answer_ids, answer_mask, logits_to_keep, align):
        """One LLM forward over `[bos, mapped source, boundary, prompt, answer]`, the `llm_layer` states (and with
        `align` the `align_layer` states) captured on the way. Gradients flow through the frozen LLM only when the
        encoder side trains (stages 1-2)."""
        embeds, mask, targets, is_source = self._llm_inputs(
            input_ids, attention_mask, prompt_ids, prompt_mask, answer_ids, answer_mask
        )
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate derives them: left padding is skipped
        with (
            torch.set_grad_enabled(self._enc_side_trains()),
            self.capture_llm_states() as captured,
            self.capture_llm_states(self.align_layer) if align else nullcontext([]) as captured_align,
        ):
            logits = self.llm(
                inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False,
                logits_to_keep=logits_to_keep,
            ).logits
        n = None if answer_ids is None else answer_ids.shape[1]
        return LLMPass(
            logits=logits,
            answer_targets=None if n is None else targets[:, -n:],  # answers are right-aligned after the packing
            answer_states=None if n is None else captured[0][:, -n - 1 : -1],  # the positions predicting them
            align_states=captured_align[0] if align else None,
            is_source=is_source,
        )

    def with_language_memory(self, memory, memory_mask, decoder_lang_ids):
        """For an NMT whose decoder reads the target language from its encoder (T5 / MADLAD, Marian `>>por<<`;
        `languages_xbridge`): the frozen encoder's states of `[tag, </s>]` before the mapped memory, so the decoder
        finds the language where it learned to look. Other families carry the tag in the decoder input: unchanged."""
        if self.config.language_control.target != "memory" or self.config.nmt_target_lang is not None:
            return memory, memory_mask
        if decoder_lang_ids is None:
            raise ValueError(f"this {self.config.nmt_family} NMT's decoder reads the target language from its "
                             "encoder: pass decoder_lang_ids (B, 1), the tag ids the processor returns with targets=")
        eos = torch.full_like(decoder_lang_ids, self.config.nmt_config.eos_token_id)
        tags = torch.cat([decoder_lang_ids, eos], dim=1)  # (B, 2)
        with torch.no_grad():
            states = self.memory_encoder()(input_ids=tags, attention_mask=torch.ones_like(tags)).last_hidden_state
        return torch.cat([states.to(memory.dtype), memory], dim=1), torch.cat([torch.ones_like(tags), memory_mask], dim=1)

    def _decoder_loss(self, memory, memory_mask, labels, decoder_input_ids=None):
        """The NMT's decoder reading the memory, teacher-forced on `labels`: (logits (B, Ly, V_nmt), cross-entropy).
        Through the NMT's own forward with the memory as its encoder output, so whatever its head adds (Marian's
        final logits bias) is there; NLLB computes exactly its decoder and LM head."""
        if decoder_input_ids is None:
            decoder_input_ids = shift_right(labels, self.config.nmt_config.pad_token_id, self.decoder_start_id)
        logits = self.nmt(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory.to(self.nmt.dtype)),
            attention_mask=memory_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        ).logits
        return logits, _cross_entropy(logits, labels)

    def _ot_term(self, ot_target_ids, ot_target_mask, memory, memory_mask):
        """OT's x side, the English answer through the decoder's own encoder (`memory_encoder`), and its OT distance
        to the decoder memory when a loss is plugged in (`set_ot_loss`; else None): (states (B, Lx, d_nmt), mask
        (B, Lx), loss)."""
        if ot_target_mask is None:
            ot_target_mask = torch.ones_like(ot_target_ids)
        states = self.encode_last(ot_target_ids, ot_target_mask, self.memory_encoder())
        loss = None
        if self._ot_loss_fn is not None:
            loss = self._ot_loss_fn(states.float(), ot_target_mask, memory.float(), memory_mask)
        return states, ot_target_mask, loss

    def _weighted_total(self, out: XBridgeOutput):
        """The sum of `lambda_<term> * loss_<term>` over the terms present with a weight other than 0 (None: none)."""
        terms = [
            (self.config.lambda_llm, out.loss_llm),
            (self.config.lambda_dec, out.loss_dec),
            (self.config.lambda_ot, out.loss_ot),
            (self.config.lambda_align, out.loss_align),
            (self.config.lambda_lang, out.loss_lang),
        ]
        present = [w * term for w, term in terms if term is not None and w != 0]
        return torch.stack(present).sum() if present else None

    @property
    def align_layer(self) -> int:
        """LLM layer of the alignment loss (`config.align_layer`, default the middle layer, as AlignX)."""
        layer = self.config.align_layer
        return self.config.llm_config.num_hidden_layers // 2 if layer is None else layer

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
        """Phase 2: the NMT decoder writes each language from the same memory, all languages in one batch."""
        B, K = memory.shape[0], len(tgt_langs)
        codes = [self.config.lang_id(lang) for lang in tgt_langs]  # None: a bilingual NMT's implied language
        in_decoder = self.config.language_control.target == "decoder"
        prefix = torch.tensor([[self.decoder_start_id] + ([code] if in_decoder and code is not None else [])
                               for code in codes], device=memory.device)  # (K, 2): `</s> tgt_code`, like forced_bos
        decoder_input_ids = prefix.repeat_interleave(B, dim=0)
        memory, memory_mask = memory.repeat(K, 1, 1), memory_mask.repeat(K, 1)
        if not in_decoder and codes[0] is not None:  # T5, Marian: the tag's encoder states lead the memory
            tags = torch.tensor(codes, device=memory.device).repeat_interleave(B).unsqueeze(1)
            memory, memory_mask = self.with_language_memory(memory, memory_mask, tags)
        out = self.nmt.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory.to(self.nmt.dtype)),
            attention_mask=memory_mask,
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

def shift_right(labels, pad_id: int, start_id: int):
    """Decoder inputs from labels: `[start, labels[:-1]]` with -100 replaced by padding."""
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted == -100, pad_id)



# `register_for_auto_class` records one auto class per class; the config carries the full `auto_map` instead.
XBridgeConfig.register_for_auto_class()
XBridgeForConditionalGeneration.register_for_auto_class("AutoModel")

__all__ = ["XBridgeForConditionalGeneration", "XBridgePreTrainedModel", "XBridgeOutput", "XBridgeGenerateOutput"]

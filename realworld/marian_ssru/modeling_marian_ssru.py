"""A Marian transformer whose decoder replaces self-attention with an SSRU cell (Bergamot "tiny" students).

Hub remote code: only torch + transformers imports, flat, same-folder relative imports.

    x -> MarianEncoder (stock transformers module: 6 post-norm layers, Marian's own sinusoid table)
      -> decoder, per layer (Marian "dan" post-processing: add, then layer norm):
            h = LN(h + relu(SSRU(h)))            SSRU: f_t = sigmoid(x_t W_f + b_f)
            h = LN(h + CrossAttn(h, memory))           c_t = f_t * c_{t-1} + (1 - f_t) * x_t W
            h = LN(h + W2 relu(W1 h + b1) + b2)        out_t = relu(c_t)
      -> logits = h E^T + b   (E: the one embedding matrix shared by encoder, decoder and output; b: output bias)

Decoding starts from a zero input vector (Marian shifts the target right with zeros), represented here by
the `<pad>` id whose embedding row is zero; its output bias is a large negative number so it is never produced.
The generation cache is transformers' `EncoderDecoderCache`: the cross-attention part holds the memory's
keys/values as usual, the self-attention part holds each decoder layer's SSRU cell states (B, 1, T, d) in the
slot a self-attention layer would keep its keys, so `get_seq_length()` is the number of decoded positions
and beam search reorders it with the stock `reorder_cache`.
"""

import math

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.models.marian.modeling_marian import MarianAttention, MarianEncoder, MarianSinusoidalPositionalEmbedding

from .configuration_marian_ssru import MarianSSRUConfig

PAD_LOGIT_BIAS = -1.0e4  # finite in fp16 too; the model's real logits stay within about +-50


def marian_sinusoids(num_positions: int, dim: int) -> torch.Tensor:
    """Marian's positional table (num_positions, dim): sin in the first half, cos in the second, timescales
    10000^(-i / (dim/2 - 1)), computed in float32 as Marian does. transformers' `MarianSinusoidalPositionalEmbedding`
    uses 10000^(-2i / dim), a slightly different table, hence this function."""
    half = dim // 2
    increment = torch.tensor(math.log(10000.0), dtype=torch.float32) / (half - 1)
    timescales = torch.exp(torch.arange(half, dtype=torch.float32) * -increment)  # (half,)
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * timescales[None, :]  # (P, half)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:  # Marian models have even widths; keep odd ones well-defined
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=-1)
    return table


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


class MarianSSRUCell(nn.Module):
    """Simpler Simple Recurrent Unit (Kim et al. 2019), Marian's `ssru` cell: returns the cell states c (B, T, d)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.W = nn.Linear(d_model, d_model, bias=False)
        self.Wf = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        candidate = self.W(x)  # (B, T, d)
        forget = torch.sigmoid(self.Wf(x))  # (B, T, d)
        carry_in = (1.0 - forget) * candidate
        c = torch.zeros_like(x[:, 0]) if state is None else state.to(x.dtype)  # (B, d)
        states = []
        # a Python loop over time: the decoder is 2 layers and a step is O(B d); a parallel scan would not pay
        for t in range(x.shape[1]):
            c = forget[:, t] * c + carry_in[:, t]
            states.append(c)
        return torch.stack(states, dim=1)  # (B, T, d)


class MarianSSRUDecoderLayer(nn.Module):
    def __init__(self, config: MarianSSRUConfig, layer_idx: int):
        super().__init__()
        d = config.d_model
        self.layer_idx = layer_idx
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout
        self.rnn = MarianSSRUCell(d)
        self.rnn_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        # transformers' own attention module, so cross-attention (and its cache) is the stock computation
        self.encoder_attn = MarianAttention(d, config.decoder_attention_heads, dropout=config.attention_dropout,
                                            is_decoder=True, config=config, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.activation_fn = nn.functional.relu if config.activation_function == "relu" else _activation(config)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, hidden_states, encoder_hidden_states=None, encoder_attention_mask=None, cache=None, **kwargs):
        state_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else None
        previous = None
        if state_cache is not None and state_cache.get_seq_length(self.layer_idx) > 0:
            previous = state_cache.layers[self.layer_idx].keys[:, 0, -1]  # (B, d): c_{t-1}
        states = self.rnn(hidden_states, previous)  # (B, T, d)
        if state_cache is not None:
            stored = states.unsqueeze(1)  # (B, 1, T, d), the shape of one head's keys
            state_cache.update(stored, stored, self.layer_idx)
        residual = hidden_states
        hidden_states = nn.functional.dropout(torch.relu(states), p=self.dropout, training=self.training)
        hidden_states = self.rnn_layer_norm(residual + hidden_states)

        if encoder_hidden_states is not None:
            residual = hidden_states
            hidden_states, _ = self.encoder_attn(hidden_states, key_value_states=encoder_hidden_states,
                                                 attention_mask=encoder_attention_mask, cache=cache, **kwargs)
            hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
            hidden_states = self.encoder_attn_layer_norm(residual + hidden_states)

        residual = hidden_states
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        hidden_states = self.fc2(hidden_states)
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        return self.final_layer_norm(residual + hidden_states)


def _activation(config):
    from transformers.activations import ACT2FN

    return ACT2FN[config.activation_function]


class MarianSSRUPreTrainedModel(PreTrainedModel):
    config_class = MarianSSRUConfig
    config: MarianSSRUConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _no_split_modules = ["MarianEncoderLayer", "MarianSSRUDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.init_std
        if isinstance(module, MarianSinusoidalPositionalEmbedding):
            module.weight.copy_(marian_sinusoids(*module.weight.shape))
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()


class MarianSSRUDecoder(MarianSSRUPreTrainedModel):
    """SSRU decoder. Reads `encoder_hidden_states` from anywhere (a MarianEncoder's output or any (B, S, d_model)
    memory) with `encoder_attention_mask` (B, S), 1 = attend."""

    def __init__(self, config: MarianSSRUConfig, embed_tokens: nn.Embedding | None = None):
        super().__init__(config)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = embed_tokens or nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.embed_positions = MarianSinusoidalPositionalEmbedding(config.max_position_embeddings, config.d_model)
        self.layers = nn.ModuleList([MarianSSRUDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        # `attention_mask` (the decoder's own padding) is accepted and unused: the SSRU recurrence is causal,
        # so right padding never reaches a real position; left-padded decoder inputs are not supported.
        cache = cache if cache is not None else past_key_values
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of decoder input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        inputs_embeds = inputs_embeds * self.embed_scale
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise TypeError(f"the SSRU decoder needs an EncoderDecoderCache, got {type(cache).__name__}")
        past = cache.get_seq_length() if cache is not None else 0
        seq_len = inputs_embeds.shape[1]
        if past + seq_len > self.config.max_position_embeddings:
            raise ValueError(f"decoder position {past + seq_len} exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings} (the stored sinusoid table)")
        positions = self.embed_positions(inputs_embeds.shape[:2], past)  # (T, d)
        hidden_states = inputs_embeds + positions
        hidden_states = nn.functional.dropout(hidden_states, p=self.config.dropout, training=self.training)

        if encoder_hidden_states is not None:
            encoder_attention_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
            )
        for layer in self.layers:
            hidden_states = layer(hidden_states, encoder_hidden_states, encoder_attention_mask, cache=cache)
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, cache=cache)


def _marian_encoder(config: MarianSSRUConfig, embed_tokens: nn.Embedding) -> MarianEncoder:
    """The stock encoder, built from this config (it reads the MarianConfig field names we share), with Marian's
    sinusoid table and layer-norm epsilon, reading `embed_tokens`."""
    encoder = MarianEncoder(config)
    with torch.no_grad():  # MarianEncoder initialises transformers' own table, not Marian's
        encoder.embed_positions.weight.copy_(marian_sinusoids(*encoder.embed_positions.weight.shape))
    for module in encoder.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = config.layer_norm_eps  # Marian's epsilon, not PyTorch's default
    encoder.embed_tokens = embed_tokens
    return encoder


class MarianSSRUModel(MarianSSRUPreTrainedModel):
    """Encoder + SSRU decoder. `config.share_encoder_decoder_embeddings=False` (an NMT composed from two directions):
    `shared` is the encoder's (source) embedding, the decoder has its own target embedding; `config.memory_encoder`
    adds `memory_encoder`, an encoder in the target vocabulary (the one the decoder was trained to read)."""

    def __init__(self, config: MarianSSRUConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = _marian_encoder(config, self.shared)
        self._tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight"}
        if config.share_encoder_decoder_embeddings:
            self.decoder = MarianSSRUDecoder(config, self.shared)
            self._tied_weights_keys["decoder.embed_tokens.weight"] = "shared.weight"
        else:
            target = nn.Embedding(config.decoder_vocab_size, config.d_model, config.pad_token_id)
            self.decoder = MarianSSRUDecoder(config, target)
        if config.memory_encoder:
            self.memory_encoder = _marian_encoder(config, self.decoder.embed_tokens)
            self._tied_weights_keys["memory_encoder.embed_tokens.weight"] = (
                "shared.weight" if config.share_encoder_decoder_embeddings else "decoder.embed_tokens.weight")
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = value
        if self.config.share_encoder_decoder_embeddings:
            self.decoder.embed_tokens = value

    def get_encoder(self, *args, **kwargs):
        return self.encoder

    def get_memory_encoder(self):
        """The encoder whose states the decoder was trained to read (`memory_encoder` if the model has one)."""
        return getattr(self, "memory_encoder", self.encoder)

    def get_decoder(self):
        return self.decoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache=None, inputs_embeds=None, decoder_inputs_embeds=None, use_cache=None,
                past_key_values=None, **kwargs) -> Seq2SeqModelOutput:
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state, encoder_attention_mask=attention_mask,
            cache=cache if cache is not None else past_key_values, inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state, cache=decoder_outputs.cache,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
        )


class MarianSSRUForConditionalGeneration(MarianSSRUPreTrainedModel, GenerationMixin):
    def __init__(self, config: MarianSSRUConfig):
        super().__init__(config)
        self.model = MarianSSRUModel(config)
        # weight tied to the (target) embeddings; the bias is Marian's output bias (`decoder_ff_logit_out_b`)
        self.lm_head = nn.Linear(config.d_model, config.decoder_vocab_size, bias=True)
        self._tied_weights_keys = {
            "lm_head.weight": "model.decoder.embed_tokens.weight" if not config.share_encoder_decoder_embeddings
            else "model.shared.weight",
            **{f"model.{k}": f"model.{v}" for k, v in self.model._tied_weights_keys.items()},
        }
        self.post_init()

    def get_input_embeddings(self):
        return self.model.shared

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def get_encoder(self, *args, **kwargs):
        return self.model.encoder

    def get_memory_encoder(self):
        """The encoder whose states the decoder was trained to read: in an NMT composed from two directions, the
        decoder's own direction's encoder (target vocabulary); otherwise `get_encoder()`."""
        return self.model.get_memory_encoder()

    def get_decoder(self):
        return self.model.decoder

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""`encoder_outputs` may be any memory (B, S, d_model) with `attention_mask` (B, S) as its mask;
        `labels` (B, T) with -100 on padding give a mean token cross-entropy `loss`."""
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
        outputs = self.model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
            cache=cache if cache is not None else past_key_values, inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                               labels.to(logits.device).reshape(-1), ignore_index=-100)
        return Seq2SeqLMOutput(loss=loss, logits=logits, cache=outputs.cache,
                               encoder_last_hidden_state=outputs.encoder_last_hidden_state)


__all__ = ["MarianSSRUPreTrainedModel", "MarianSSRUModel", "MarianSSRUDecoder", "MarianSSRUForConditionalGeneration",
           "marian_sinusoids"]

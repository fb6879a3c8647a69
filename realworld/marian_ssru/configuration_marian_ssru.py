"""Configuration of a Marian transformer with an SSRU decoder (the Bergamot / Firefox Translations "tiny" students).

Hub remote code: only transformers is imported, so `trust_remote_code` loading needs nothing else.
"""

from transformers import PreTrainedConfig

AUTO_MAP = {
    "AutoConfig": "configuration_marian_ssru.MarianSSRUConfig",
    "AutoModel": "modeling_marian_ssru.MarianSSRUModel",
    "AutoModelForSeq2SeqLM": "modeling_marian_ssru.MarianSSRUForConditionalGeneration",
}


class MarianSSRUConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MarianSSRUForConditionalGeneration`]. The encoder fields are those of
    transformers' `MarianConfig` (the encoder *is* a stock `MarianEncoder` built from this config).

    Args:
        vocab_size (`int`): the source vocabulary (shared with the target unless `share_encoder_decoder_embeddings`
            is False), including the `<pad>` row added by the converter.
        decoder_vocab_size (`int`, *optional*): the target vocabulary (decoder embeddings and `lm_head`); defaults
            to `vocab_size`. Same name and meaning as in transformers' `MarianConfig`.
        share_encoder_decoder_embeddings (`bool`): one embedding matrix for encoder, decoder and output (a
            per-direction student); False for an NMT composed from two directions (`realworld.compose_marian`):
            the encoder keeps its own vocabulary, the decoder and `lm_head` share the target one.
        memory_encoder (`bool`): the model also holds a second encoder, in the target vocabulary: the one the
            decoder was trained to read (`get_memory_encoder()`); not used by `forward`/`generate`.
        d_model (`int`): model width (256 for the tiny students).
        encoder_layers, encoder_attention_heads, encoder_ffn_dim: the transformer encoder.
        decoder_layers, decoder_attention_heads, decoder_ffn_dim: the decoder (SSRU cell, cross-attention, FFN).
        activation_function (`str`): FFN activation (Marian `transformer-ffn-activation`).
        max_position_embeddings (`int`): rows of the stored sinusoid tables (Marian computes them on the fly).
        layer_norm_eps (`float`): Marian's layer-norm epsilon (1e-9; PyTorch's default 1e-5 is not Marian's).
        scale_embedding (`bool`): embeddings are multiplied by sqrt(d_model) before the positions are added.
        source_lang, target_lang (`str`): ISO 639-1 codes, informational.
    """

    model_type = "marian_ssru"
    # `num_hidden_layers` sizes the generation cache, which holds the decoder's SSRU states
    attribute_map = {"hidden_size": "d_model", "num_attention_heads": "decoder_attention_heads",
                     "num_hidden_layers": "decoder_layers"}

    def __init__(
        self,
        vocab_size: int = 32001,
        decoder_vocab_size: int | None = None,
        share_encoder_decoder_embeddings: bool = True,
        memory_encoder: bool = False,
        d_model: int = 256,
        encoder_layers: int = 6,
        encoder_attention_heads: int = 8,
        encoder_ffn_dim: int = 1536,
        decoder_layers: int = 2,
        decoder_attention_heads: int = 8,
        decoder_ffn_dim: int = 1536,
        activation_function: str = "relu",
        max_position_embeddings: int = 1024,
        layer_norm_eps: float = 1e-9,
        scale_embedding: bool = True,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        encoder_layerdrop: float = 0.0,
        init_std: float = 0.02,
        source_lang: str | None = None,
        target_lang: str | None = None,
        pad_token_id: int = 32000,
        eos_token_id: int = 0,
        decoder_start_token_id: int = 32000,
        use_cache: bool = True,
        **kwargs,
    ):
        self.vocab_size = int(vocab_size)
        self.decoder_vocab_size = self.vocab_size if decoder_vocab_size is None else int(decoder_vocab_size)
        self.share_encoder_decoder_embeddings = bool(share_encoder_decoder_embeddings)
        self.memory_encoder = bool(memory_encoder)
        if self.share_encoder_decoder_embeddings and self.decoder_vocab_size != self.vocab_size:
            raise ValueError(f"decoder_vocab_size={self.decoder_vocab_size} != vocab_size={self.vocab_size} needs "
                             "share_encoder_decoder_embeddings=False")
        self.d_model = int(d_model)
        self.encoder_layers = int(encoder_layers)
        self.encoder_attention_heads = int(encoder_attention_heads)
        self.encoder_ffn_dim = int(encoder_ffn_dim)
        self.decoder_layers = int(decoder_layers)
        self.decoder_attention_heads = int(decoder_attention_heads)
        self.decoder_ffn_dim = int(decoder_ffn_dim)
        self.activation_function = activation_function
        self.max_position_embeddings = int(max_position_embeddings)
        self.layer_norm_eps = float(layer_norm_eps)
        self.scale_embedding = bool(scale_embedding)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.activation_dropout = float(activation_dropout)
        self.encoder_layerdrop = float(encoder_layerdrop)
        self.init_std = float(init_std)
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.use_cache = bool(use_cache)
        for name in ("d_model", "encoder_attention_heads", "decoder_attention_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        for heads in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, heads):
                raise ValueError(f"d_model={self.d_model} is not divisible by {heads}={getattr(self, heads)}")
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        kwargs.setdefault("is_encoder_decoder", True)
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                         decoder_start_token_id=decoder_start_token_id, **kwargs)


__all__ = ["MarianSSRUConfig"]

"""A warm start of the encoder-side mapping (`python -m train stage1 --enc_map_init english_lstsq`).

The paper starts `enc_map` at random and lets stage 1 find the map from the NMT encoder's states into the LLM's input
space; with millions of records it does. On a small budget it does not: on the real bases (realworld/probe.py) the
randomly started bridge reads nothing of its source after 600 steps (the LLM's loss on the English is the same
given the right source or another row's), while a linear map fitted in a minute already does at step 0.

The fit: English texts (stage 1's English answers) go through the NMT encoder, exactly as the bridge reads a source,
and each source piece's state (RMS-normalised, as the mapping block's RMSNorm does at its start) is paired with the
mean input embedding of the LLM tokens that overlap it in characters. Ridge least squares gives W (d_nmt x d_llm),
which the mapping block computes exactly: with inner width 2 * d_llm, up = [W; -W] and down = [I, -I] give
silu(Wx) - silu(-Wx) = Wx. Hand-written: no library fits a map between two tokenizations of one text.
"""

from __future__ import annotations

import torch

PIECE_MARK = "\u2581"  # SentencePiece's word-start mark (NLLB, M2M100, mBART, T5, Marian)


def char_spans(text: str, pieces: list[str]) -> list[tuple[int, int] | None]:
    """The character span of each SentencePiece piece in `text`, found left to right (None: not found verbatim,
    e.g. an unknown piece or one that normalisation changed)."""
    spans, pos = [], 0
    for piece in pieces:
        core = piece.replace(PIECE_MARK, " ").strip()
        start = text.find(core, pos) if core else -1
        if start < 0:
            spans.append(None)
            continue
        pos = start + len(core)
        spans.append((start, pos))
    return spans


def _piece_positions(tokenizer, text: str, ids: list[int]) -> tuple[list[str], int]:
    """The source pieces of `text` that the encoder's ids hold (all, unless the source was cut) and where they
    start there (after a language code, if any)."""
    pieces = tokenizer.tokenize(text)
    piece_ids = tokenizer.convert_tokens_to_ids(pieces)
    for start in range(min(3, len(ids))):
        for n in {min(len(piece_ids), len(ids) - start), min(len(piece_ids), len(ids) - start - 1)}:  # cut: EOS kept
            if n > 0 and ids[start:start + n] == piece_ids[:n]:
                return pieces[:n], start
    raise ValueError(f"the NMT tokenizer's pieces of {text[:60]!r} are not in its encoded ids: cannot align them")


def aligned_states(model, processor, texts: list[str], src_lang: str = "eng_Latn", batch_size: int = 64):
    """(X, Y): the normalised encoder state of every aligned source piece of `texts` and the mean LLM input embedding
    of the LLM tokens overlapping it."""
    llm_tok, nmt_tok = processor.llm_tokenizer, processor.nmt_tokenizer
    if not getattr(llm_tok, "is_fast", False):
        raise ValueError("the warm start aligns characters through the LLM tokenizer's offsets: it needs a fast tokenizer")
    # The embedding module, not its weight rows: Gemma's scales its rows by sqrt(hidden) (transformers 5 does it in
    # the module), and the mapped source must land where the LLM's own token embeddings are.
    embed = model.llm.get_input_embeddings()
    xs, ys = [], []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            chunk = texts[s:s + batch_size]
            batch = processor(chunk, src_lang=src_lang, prompt=False)
            states = model.encode_source(batch["input_ids"], batch["attention_mask"]).float()
            states = states * torch.rsqrt(states.pow(2).mean(-1, keepdim=True) + model.enc_map.norm.eps)
            llm = llm_tok(chunk, return_offsets_mapping=True, add_special_tokens=False)
            for row, text in enumerate(chunk):
                ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
                pieces, start = _piece_positions(nmt_tok, text, ids)
                offsets, llm_ids = llm["offset_mapping"][row], llm["input_ids"][row]
                for i, span in enumerate(char_spans(text, pieces)):
                    if span is None:
                        continue
                    over = [llm_ids[j] for j, (a, b) in enumerate(offsets) if a < span[1] and b > span[0]]
                    if over:
                        xs.append(states[row, start + i])
                        ys.append(embed(torch.tensor(over)).float().mean(0))
    if not xs:
        raise ValueError("no source piece could be aligned with the LLM's tokens: the warm start needs English texts")
    return torch.stack(xs), torch.stack(ys)


def fit_linear(x: torch.Tensor, y: torch.Tensor, ridge: float = 1.0) -> torch.Tensor:
    """argmin_W |xW - y|^2 + ridge |W|^2, in float64."""
    x64, y64 = x.double(), y.double()
    gram = x64.T @ x64 + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, x64.T @ y64).float()


def set_linear(block, weight: torch.Tensor) -> None:
    """Make a MappingBlock (RMSNorm -> up -> SiLU -> down) compute norm(x) @ weight exactly."""
    d_in, d_out = weight.shape
    if block.up.out_features != 2 * d_out:
        raise ValueError(f"the linear warm start needs the mapping's inner width to be 2 x the LLM hidden size "
                         f"({2 * d_out}); it is {block.up.out_features}: pass --enc_map_hidden_size {2 * d_out}")
    with torch.no_grad():
        block.norm.weight.fill_(1.0)
        block.up.weight.copy_(torch.cat([weight.T, -weight.T]))
        block.up.bias.zero_()
        block.down.weight.copy_(torch.cat([torch.eye(d_out), -torch.eye(d_out)], dim=1))
        block.down.bias.zero_()


def warm_start_enc_map(model, processor, texts: list[str], ridge: float = 1.0) -> dict:
    """Fit and set the encoder-side mapping (module docstring); returns what the fit saw and its R^2 on the last
    fifth of the pairs, fitted on the first four fifths (the weights set are fitted on all of them)."""
    x, y = aligned_states(model, processor, texts)
    cut = max(1, int(0.8 * len(x)))
    held_w = fit_linear(x[:cut], y[:cut], ridge)
    rest = y[cut:] if cut < len(x) else y
    pred = (x[cut:] if cut < len(x) else x) @ held_w
    r2 = 1 - float((pred - rest).pow(2).sum() / (rest - y[:cut].mean(0)).pow(2).sum())
    set_linear(model.enc_map, fit_linear(x, y, ridge))
    return {"texts": len(texts), "aligned_pieces": len(x), "held_out_r2": round(r2, 4)}


__all__ = ["aligned_states", "char_spans", "fit_linear", "set_linear", "warm_start_enc_map"]

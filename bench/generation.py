"""Generation benchmarks: XBridge vs its parts alone, Translate-Test, the re-run reference, and K languages.

Every system gets the same inputs and is forced to the same output lengths (min_new_tokens == max_new_tokens,
greedy), so the comparisons measure work, not how early a random model happens to stop.
"""

import torch
from transformers.modeling_outputs import BaseModelOutput

from .common import ENGLISH, LANGS, llm_tokens, nmt_sentence, timeit_many


def make_batch(model, batch: int, src_len: int, prompt_len: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    input_ids = nmt_sentence(model, batch, src_len, LANGS[0], g)
    prompt_ids = llm_tokens(model, batch, prompt_len, g)
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                prompt_ids=prompt_ids, prompt_attention_mask=torch.ones_like(prompt_ids))


def _greedy(n: int) -> dict:
    return dict(min_new_tokens=n, max_new_tokens=n, do_sample=False, num_beams=1)


def _llm_pad(model) -> int:
    pad = model.llm.generation_config.pad_token_id
    return pad if pad is not None else 0


def xbridge_call(model, batch, langs, n_en: int, n_tgt: int):
    """One XBridge generate call; `langs` a code or a list of codes."""
    kw = {f"llm_{k}": v for k, v in _greedy(n_en).items()} | {f"nmt_{k}": v for k, v in _greedy(n_tgt).items()}
    return lambda: model.generate(**batch, tgt_lang=langs, **kw)


def parts_alone(model, batch, lang: str, n_en: int, n_tgt: int) -> dict:
    """The three base-model calls XBridge is made of, each run alone on inputs prepared outside the timing."""
    with torch.no_grad():
        embeds, mask = model._llm_inputs(batch["input_ids"], batch["attention_mask"], batch["prompt_ids"],
                                         batch["prompt_attention_mask"], None, None)[:2]
        # the memory the decoder reads
        out = model.generate(**batch, tgt_lang=lang, return_dict_in_generate=True,
                             **{f"llm_{k}": v for k, v in _greedy(n_en).items()},
                             **{f"nmt_{k}": v for k, v in _greedy(n_tgt).items()})
    memory, memory_mask = out.decoder_memory, out.decoder_memory_mask
    B = memory.shape[0]
    prefix = torch.tensor([[model.decoder_start_id, model.config.lang_id(lang)]]).repeat(B, 1)

    @torch.no_grad()
    def encoder():
        return model.nmt.model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def llm():
        return model.llm.generate(inputs_embeds=embeds, attention_mask=mask, pad_token_id=_llm_pad(model), **_greedy(n_en))

    def decoder():
        return model.nmt.generate(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=memory_mask,
                                  decoder_input_ids=prefix, **_greedy(n_tgt))

    assert llm().shape[1] == n_en and decoder().shape[1] == n_tgt + 2, "forced lengths not honoured"
    return {"nllb_encoder": encoder, "llm_generate": llm, "nllb_decoder_generate": decoder}


def translate_test(model, batch, lang: str, n_en: int, n_tgt: int, seed: int = 1):
    """The cascade: NLLB x->en, the LLM on prompt + English source, NLLB en->y. Same token counts as XBridge:
    the English source as long as the source, n_en English answer tokens, n_tgt target tokens."""
    g = torch.Generator().manual_seed(seed)
    B, src_len = batch["input_ids"].shape
    eng, tgt = model.config.lang_id(ENGLISH), model.config.lang_id(lang)
    bos = model.config.llm_config.bos_token_id
    # The English texts each later step reads (random ids of the lengths the previous step produced).
    llm_input = torch.cat([torch.full((B, 1), bos), batch["prompt_ids"], llm_tokens(model, B, src_len, g)], dim=1)
    answer_nmt = nmt_sentence(model, B, n_en + 2, ENGLISH, g)

    def run():
        # forced_bos writes the language code as the first new token, hence +1 to match XBridge's prefix.
        model.nmt.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           forced_bos_token_id=eng, **_greedy(src_len - 1))
        model.llm.generate(input_ids=llm_input, attention_mask=torch.ones_like(llm_input), pad_token_id=_llm_pad(model),
                           **_greedy(n_en))
        model.nmt.generate(input_ids=answer_nmt, attention_mask=torch.ones_like(answer_nmt), forced_bos_token_id=tgt,
                           **_greedy(n_tgt + 1))

    return run


def rerun_reference(model, batch, lang: str, n_en: int, n_tgt: int):
    """The obvious implementation: generate the English answer, then run the LLM again over prompt + answer
    with `output_hidden_states=True` to get the layer the decoder reads (logits only for the last position,
    so the baseline is not inflated by a full-vocabulary projection)."""
    layer = model.config.llm_layer
    embed = model.llm.get_input_embeddings()

    @torch.no_grad()
    def run():
        embeds, mask = model._llm_inputs(batch["input_ids"], batch["attention_mask"], batch["prompt_ids"],
                                         batch["prompt_attention_mask"], None, None)[:2]
        english = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, pad_token_id=_llm_pad(model),
                                     **_greedy(n_en))
        full = torch.cat([embeds, embed(english)], dim=1)
        full_mask = torch.cat([mask, torch.ones_like(english)], dim=1)
        hidden = model.llm(inputs_embeds=full, attention_mask=full_mask, output_hidden_states=True,
                           logits_to_keep=1).hidden_states[layer]
        memory = model.map_to_memory(hidden[:, -n_en - 1 : -1])
        return model.generate_target(memory, torch.ones_like(english), [lang], **_greedy(n_tgt))

    return run


def run_generation(model, scale: str, batch_sizes, lengths: dict, repeats: int, ks, log=print) -> dict:
    """All generation comparisons at one scale. Times are medians in seconds."""
    src_len, prompt_len, n_en, n_tgt = (lengths[k] for k in ("src", "prompt", "english", "target"))
    lang = LANGS[0]
    results = {"lengths": lengths, "batches": {}}
    for B in batch_sizes:
        batch = make_batch(model, B, src_len, prompt_len)
        xb = xbridge_call(model, batch, lang, n_en, n_tgt)
        assert xb().shape == (B, n_tgt + 2), "XBridge did not produce the forced target length"
        parts = parts_alone(model, batch, lang, n_en, n_tgt)
        t = timeit_many({"xbridge": xb, **parts, "translate_test": translate_test(model, batch, lang, n_en, n_tgt),
                         "rerun_reference": rerun_reference(model, batch, lang, n_en, n_tgt)}, repeats)
        row = {"xbridge": t["xbridge"], "parts": {k: t[k] for k in parts}}
        row["parts_sum_s"] = sum(p["median_s"] for p in row["parts"].values())
        row["overhead"] = row["xbridge"]["median_s"] / row["parts_sum_s"] - 1
        row["translate_test"] = t["translate_test"]
        row["ratio_vs_translate_test"] = row["xbridge"]["median_s"] / row["translate_test"]["median_s"]
        row["rerun_reference"] = t["rerun_reference"]
        row["saving_vs_rerun"] = 1 - row["xbridge"]["median_s"] / row["rerun_reference"]["median_s"]
        results["batches"][f"B={B}"] = row
        log(f"  [{scale}] B={B}: xbridge {row['xbridge']['median_s']:.3f}s, parts {row['parts_sum_s']:.3f}s "
            f"(overhead {row['overhead']:+.1%}), translate-test {row['translate_test']['median_s']:.3f}s "
            f"(x{row['ratio_vs_translate_test']:.2f}), rerun {row['rerun_reference']['median_s']:.3f}s "
            f"(saving {row['saving_vs_rerun']:.1%})")
    # K target languages: one call (the decoder batches the K languages) vs K separate calls. The K separate
    # calls are K identical single-language pipelines, so they cost K x one single-language call, timed here
    # in the same round-robin as the K-language call (measuring all K of them would only repeat it K times).
    batch = make_batch(model, ks["batch"], src_len, prompt_len)
    curve = []
    for K in ks["values"]:
        langs = LANGS[:K]
        t = timeit_many({"one": xbridge_call(model, batch, langs, n_en, n_tgt),
                         "single": xbridge_call(model, batch, langs[-1], n_en, n_tgt)}, ks["repeats"], ks["warmup"])
        one, separate = t["one"]["median_s"], K * t["single"]["median_s"]
        curve.append({"K": K, "one_call_s": one, "separate_calls_s": separate, "speedup": separate / one,
                      "single_call_s": t["single"]["median_s"]})
        log(f"  [{scale}] K={K}: one call {one:.3f}s, {K} calls {separate:.3f}s")
    results["k_languages"] = {"batch": ks["batch"], "curve": curve}
    return results

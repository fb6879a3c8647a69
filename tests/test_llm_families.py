"""The causal-LM families beside Qwen2, Llama and GPT-2 (test_model.py) that the bridge composes (issue 32): Qwen3,
Mistral, Gemma 2, Gemma 3, Phi-3, OLMo 2 and Cohere, each a tiny random model of the stock class. Per family: the
bridge's LLM logits and the captured decoder memory are the stock model's own on the same input embeddings, and a
batch (left-padded) equals one by one. Gemma's scaled embeddings are where the warm start aims."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from tiny_bases import OTHER_LLMS, build_tiny_llm, seeded_bridge

QUESTIONS = ["Juma ana machungwa 3 na ananunua 4 zaidi.", "Mama alipika wali na maharage jana jioni kwa familia yote."]


@pytest.fixture(scope="module")
def llms(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm-families")
    return {arch: str(build_tiny_llm(root / arch, arch)) for arch in OTHER_LLMS}


@pytest.mark.parametrize("arch", sorted(OTHER_LLMS))
def test_a_causal_lm_family_composes(llms, tiny_bases, arch):
    stock = AutoModelForCausalLM.from_pretrained(llms[arch]).eval()
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], llms[arch])
    model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], llms[arch])).eval()
    batch = processor(QUESTIONS[:1], src_lang="swh_Latn", answers=["7"])
    out = model(**batch)
    embeds, _, _, _ = model._llm_inputs(batch["input_ids"], None, batch["prompt_ids"], None, batch["answer_ids"], None)
    with torch.no_grad():
        ref = stock(inputs_embeds=embeds, output_hidden_states=True)
    n = batch["answer_ids"].shape[1]
    torch.testing.assert_close(out.llm_logits[0, -n:], ref.logits[0, -n - 1 : -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.decoder_memory[0], model.map_to_memory(ref.hidden_states[-2][0, -n - 1 : -1]),
                               rtol=1e-4, atol=1e-4)
    questions = processor(QUESTIONS, src_lang="swh_Latn")
    together = model.generate(**questions, tgt_lang=["swh_Latn", "eng_Latn"], max_new_tokens=5, do_sample=False)
    for i, question in enumerate(QUESTIONS):
        alone = model.generate(**processor([question], src_lang="swh_Latn"), tgt_lang=["swh_Latn", "eng_Latn"],
                               max_new_tokens=5, do_sample=False)
        for lang, ids in alone.items():
            assert together[lang][i, : ids.shape[1]].tolist() == ids[0].tolist(), (arch, lang)


def test_the_warm_start_aims_at_gemmas_scaled_embeddings(llms, tiny_bases):
    """Gemma's embedding module multiplies its rows by sqrt(hidden): the warm start's targets are what the module
    gives (the LLM's actual input embeddings), not the raw rows."""
    from train.warm_start import aligned_states

    model = XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], llms["gemma3"])
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], llms["gemma3"])
    _, y = aligned_states(model, processor, ["The cat sleeps."])
    rows = model.llm.get_input_embeddings().weight
    scale = model.config.llm_config.hidden_size ** 0.5
    first = processor.llm_tokenizer("The", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(y[0], rows[first].float().mean(0) * scale, rtol=1e-5, atol=1e-5)

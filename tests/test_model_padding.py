"""The LLM never computes a column that is padding in every row (training forward and generation prefill), and
dropping those columns changes no number."""

import pytest
import torch

from train.trainer import XBridgeCollator

SOURCES = ["Habari.", "Ninapenda kusoma vitabu vingi sana kila siku asubuhi na jioni pamoja na rafiki zangu.",
           "Mama yangu ana ng'ombe tatu."]
ANSWERS = ["The answer is 5 because three cows and two goats make five animals in all.", "Yes.", "Three cows."]
TARGETS = ["Jibu ni 5.", "Ndiyo.", "Ng'ombe watatu na mbuzi wawili."]


class LLMInputs:
    """Records the attention mask of every call into the LLM (training forward, each generation step)."""

    def __init__(self, llm):
        self.masks = []
        self.handle = llm.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs):
        self.masks.append(kwargs["attention_mask"].clone())

    def close(self):
        self.handle.remove()


def _records(stage):
    if stage == "stage1":
        return [{"src_text": s, "src_lang": "swh_Latn", "en_text": a, "tgt_text": t, "tgt_lang": "swh_Latn"}
                for s, a, t in zip(SOURCES, ANSWERS, TARGETS)]
    return [{"question": s, "src_lang": "swh_Latn", "answer_en": a, "answer_tgt": t, "tgt_lang": "swh_Latn",
             "instruction": "Answer the question." if i != 1 else "Answer the question in a few words, please."}
            for i, (s, a, t) in enumerate(zip(SOURCES, ANSWERS, TARGETS))]


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_training_forward_sees_no_all_padding_column(tiny_bridge, stage):
    model, processor = tiny_bridge
    batch = XBridgeCollator(processor, stage, pad_to_multiple_of=8)(_records(stage))  # ragged, rounded up to 8
    parts = ["input_ids", "prompt_ids", "answer_ids"] if stage == "stage2" else ["input_ids", "answer_ids"]
    summed = sum(batch[k].shape[1] for k in parts) + 2  # + bos and boundary: what the LLM got before the squeeze
    real = (batch["attention_mask"].sum(1) + batch["answer_attention_mask"].sum(1) + 2
            + (batch["prompt_attention_mask"].sum(1) if stage == "stage2" else 0))  # tokens per row
    spy = LLMInputs(model.llm)
    try:
        out = model(**batch)
    finally:
        spy.close()
    (mask,) = spy.masks
    assert bool(mask.bool().any(0).all()), f"all-padding LLM columns: {(~mask.bool().any(0)).nonzero().tolist()}"
    assert mask.shape[1] == int(real.max()) < summed  # the longest row; the batch is ragged enough to tell
    assert mask.sum(1).tolist() == real.tolist()  # no real position was dropped

    # The same records without the round-up padding (processor only): the same losses and decoder memory.
    plain = XBridgeCollator(processor, stage, pad_to_multiple_of=0)(_records(stage))
    ref = model(**plain)
    torch.testing.assert_close(out.loss_llm, ref.loss_llm, rtol=1e-5, atol=1e-6)
    if stage == "stage1":
        torch.testing.assert_close(out.loss_dec, ref.loss_dec, rtol=1e-5, atol=1e-6)
    n = int(plain["answer_attention_mask"].sum(1).max())
    assert out.decoder_memory.shape[1] == n  # the longest answer, not the padded width
    torch.testing.assert_close(out.decoder_memory, ref.decoder_memory[:, -n:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.decoder_memory_mask, ref.decoder_memory_mask[:, -n:])


def test_generation_prefill_sees_no_all_padding_column(tiny_bridge):
    model, processor = tiny_bridge
    batch = processor(SOURCES, src_lang="swh_Latn")
    # Prompts whose longest row is not the source's longest row (left-padded, as the processor pads them).
    tok = processor.llm_tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    prompts = tok(["Answer the question with a long explanation of every step, then the number.", "Answer.",
                   "Answer the question."], return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = side
    batch["prompt_ids"], batch["prompt_attention_mask"] = prompts["input_ids"], prompts["attention_mask"]
    real = batch["attention_mask"].sum(1) + batch["prompt_attention_mask"].sum(1) + 2
    spy = LLMInputs(model.llm)
    try:
        model.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=4)
    finally:
        spy.close()
    prefill = spy.masks[0]
    assert bool(prefill.bool().any(0).all())
    assert prefill.shape[1] == int(real.max()) < batch["input_ids"].shape[1] + batch["prompt_ids"].shape[1] + 2

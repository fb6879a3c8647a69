"""The per-stage collator: the processor's tensors for mixed-language batches, padded to a multiple of 8."""

import pytest
import torch

from train.trainer import XBridgeCollator

TRI = [{"src_text": "Habari ya asubuhi rafiki yangu", "src_lang": "swh_Latn", "en_text": "Good morning my friend",
        "tgt_text": "Guten Morgen", "tgt_lang": "deu_Latn"},
       {"src_text": "Bonjour", "src_lang": "fra_Latn", "en_text": "Hello", "tgt_text": "Habari", "tgt_lang": "swh_Latn"},
       {"src_text": "Asante", "src_lang": "swh_Latn", "en_text": "Thank you very much indeed",
        "tgt_text": "Vielen Dank", "tgt_lang": "deu_Latn"}]
TASK = [{"question": "Swali moja?", "src_lang": "swh_Latn", "answer_en": "One.", "answer_tgt": "Moja.",
         "tgt_lang": "swh_Latn", "instruction": "Answer briefly."},
        {"question": "Eine Frage?", "src_lang": "deu_Latn", "answer_en": "It is two.", "answer_tgt": "Zwei.",
         "tgt_lang": "deu_Latn"}]


def _strip(row, mask=None, pad=None):
    return row[mask.bool()] if mask is not None else row[row != pad]


@pytest.mark.parametrize("stage, records, keys", [
    ("stage1", TRI, {"input_ids", "attention_mask", "answer_ids", "answer_attention_mask", "labels",
                     "ot_target_ids", "ot_target_attention_mask"}),
    ("stage2", TASK, {"input_ids", "attention_mask", "prompt_ids", "prompt_attention_mask", "answer_ids",
                      "answer_attention_mask"}),
    ("stage3", TASK, {"input_ids", "attention_mask", "prompt_ids", "prompt_attention_mask", "answer_ids",
                      "answer_attention_mask", "labels", "ot_target_ids", "ot_target_attention_mask"}),
])
def test_mixed_batch_equals_records_one_by_one(tiny_bridge, stage, records, keys):
    _, processor = tiny_bridge
    collate = XBridgeCollator(processor, stage, default_instruction="Solve it.")
    batch = collate(records)
    assert set(batch) == keys
    for key, tensor in batch.items():
        assert tensor.shape[0] == len(records) and tensor.shape[1] % 8 == 0, (key, tensor.shape)
    masks = {"input_ids": "attention_mask", "prompt_ids": "prompt_attention_mask",
             "answer_ids": "answer_attention_mask", "ot_target_ids": "ot_target_attention_mask"}
    for i, record in enumerate(records):
        alone = collate([record])
        for ids_key, mask_key in masks.items():
            if ids_key in batch:
                torch.testing.assert_close(_strip(batch[ids_key][i], batch[mask_key][i]),
                                           _strip(alone[ids_key][0], alone[mask_key][0]))
        if "labels" in batch:
            torch.testing.assert_close(_strip(batch["labels"][i], pad=-100), _strip(alone["labels"][0], pad=-100))
    if "prompt_ids" in batch:  # prompts are left-padded (the model squeezes padding, generation expects it)
        assert batch["prompt_attention_mask"][:, -1].all()
        # the record's own instruction wins over the default one
        first = processor.llm_tokenizer.decode(_strip(batch["prompt_ids"][0], batch["prompt_attention_mask"][0]))
        second = processor.llm_tokenizer.decode(_strip(batch["prompt_ids"][1], batch["prompt_attention_mask"][1]))
        assert "Answer briefly." in first and "Solve it." in second
    if "labels" in batch:  # the target language code is the first label (a predicted token)
        codes = [processor.nmt_tokenizer.convert_ids_to_tokens(int(batch["labels"][i][0])) for i in range(len(records))]
        assert codes == [r["tgt_lang"] for r in records]


def test_padding_changes_nothing_in_the_model(tiny_bridge):
    """Multiple-of-8 padding is only padding: the model's losses equal those without it."""
    from train.ot import relaxed_ot_loss

    model, processor = tiny_bridge
    model.set_ot_loss(relaxed_ot_loss)
    padded = model(**XBridgeCollator(processor, "stage1", pad_to_multiple_of=8)(TRI))
    tight = model(**XBridgeCollator(processor, "stage1", pad_to_multiple_of=0)(TRI))
    for key in ("loss_llm", "loss_dec", "loss_ot"):
        torch.testing.assert_close(padded[key], tight[key], rtol=1e-4, atol=1e-5)


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'stage4'"):
        XBridgeCollator(object(), "stage4")

"""The related systems as options: multi-layer encoder fusion and AlignX-style representation alignment."""

import pytest
import torch

from modeling_xbridge import EncoderFusion, XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from tiny_bases import seeded_bridge

TEXTS = ["Habari ya dunia.", "Ninapenda kusoma vitabu vingi.", "Leo ni siku nzuri sana."]
ENGLISH = ["Hello world.", "I like reading many books.", "Today is a very good day."]


def build(tiny_bases, **overrides):
    torch.manual_seed(0)
    model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"], **overrides)).eval()
    return model, XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["llm"])


def test_global_softmax_is_a_convex_mix_of_layers():
    fusion = EncoderFusion("global_softmax", num_states=3, d=8, num_heads=2)
    with torch.no_grad():
        fusion.layer_logits.copy_(torch.tensor([0.0, -1e4, -1e4]))  # all weight on layer 0
    states = [torch.randn(2, 5, 8) for _ in range(3)]
    torch.testing.assert_close(fusion(states, torch.ones(2, 5)), states[0])
    with torch.no_grad():
        fusion.layer_logits.zero_()
    torch.testing.assert_close(fusion(states, torch.ones(2, 5)), sum(states) / 3)


def test_token_softmax_shapes_padding_and_per_token_weights():
    torch.manual_seed(0)
    fusion = EncoderFusion("token_softmax", num_states=3, d=8, num_heads=2)
    states = [torch.randn(2, 5, 8) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    weights = fusion.layer_weights(torch.stack(states, 2), mask)  # (B, L, S)
    assert weights.shape == (2, 5, 3)
    torch.testing.assert_close(weights[mask.bool()].sum(-1), torch.ones(8))
    assert (weights[~mask.bool()] == 0).all()  # padding is never computed
    assert not torch.allclose(weights[1, 0], weights[1, 1])  # token-wise, not global
    # a token's weights do not depend on padding or on other rows
    alone = fusion.layer_weights(torch.stack(states, 2)[:1, :3], mask[:1, :3])
    torch.testing.assert_close(alone[0], weights[0, :3])


@pytest.mark.parametrize("mode", ["global_softmax", "token_softmax"])
def test_fusion_trains_with_encoder_side_and_roundtrips(tiny_bases, tmp_path, mode):
    model, processor = build(tiny_bases, encoder_fusion=mode)
    assert any(n.startswith("encoder_fusion") for n in model.set_stage(2))
    assert not any(n.startswith("encoder_fusion") for n in model.set_stage(3))
    model.set_stage(2)
    batch = processor(TEXTS, src_lang="swh_Latn", answers=ENGLISH)
    model(**batch).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("encoder_fusion")]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    with torch.no_grad():  # move the fusion away from its init, so the round trip is not trivially equal
        for p in model.encoder_fusion.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.eval()
    expected = model.generate(**processor(TEXTS, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=5)
    model.save_pretrained(tmp_path / "b")
    reloaded = XBridgeForConditionalGeneration.from_pretrained(tmp_path / "b")
    assert reloaded.config.encoder_fusion == mode
    for (name, a), b in zip(reloaded.encoder_fusion.state_dict().items(), model.encoder_fusion.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert torch.equal(reloaded.generate(**processor(TEXTS, src_lang="swh_Latn"), tgt_lang="swh_Latn", max_new_tokens=5), expected)


def test_last_fusion_is_todays_behaviour(tiny_bases):
    model, processor = build(tiny_bases)
    assert model.encoder_fusion is None
    batch = processor(TEXTS, src_lang="swh_Latn")
    stock = model.nmt.model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(model.encode_source(batch["input_ids"], batch["attention_mask"]), stock.last_hidden_state)


def test_alignment_losses_in_stage_one(tiny_bases):
    model, processor = build(tiny_bases, lambda_align=0.3, lambda_lang=0.4, align_layer=1)
    model.set_stage(1)
    model.train()
    assert any(n.startswith("lang_head") for n in model.trainable_parameter_names())
    swahili = processor(TEXTS, src_lang="swh_Latn", prompt=False, answers=ENGLISH)
    german = processor(["Guten Morgen, wie geht es?"], src_lang="deu_Latn", prompt=False, answers=["Good morning, how are you?"])
    # a mixed-language batch, so the "same language?" labels have both classes (padding side is irrelevant:
    # the model squeezes padding out)
    pads = {"input_ids": 1, "attention_mask": 0, "answer_ids": 0, "answer_attention_mask": 0}
    batch = {}
    for key, pad in pads.items():
        width = max(swahili[key].shape[1], german[key].shape[1])
        batch[key] = torch.cat([torch.nn.functional.pad(b[key], (0, width - b[key].shape[1]), value=pad) for b in (swahili, german)])
    out = model(**batch)
    assert out.loss_align is not None and out.loss_lang is not None
    torch.testing.assert_close(out.loss, out.loss_llm + 0.3 * out.loss_align + 0.4 * out.loss_lang)
    out.loss.backward()
    assert model.enc_map.up.weight.grad.abs().sum() > 0 and model.lang_head.weight.grad.abs().sum() > 0


def test_alignment_infonce_prefers_the_parallel_sentence(tiny_bases):
    # identical source and English states give the InfoNCE minimum for that batch: it measures alignment
    model, _ = build(tiny_bases, lambda_align=1.0)
    x = torch.randn(4, 6, 32)
    mask = torch.ones(4, 6, dtype=torch.long)
    import torch.nn.functional as F

    def infonce(a, b):
        logits = F.normalize(a.mean(1), dim=-1) @ F.normalize(b.mean(1), dim=-1).T / 0.1
        labels = torch.arange(4)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    assert infonce(x, x) < infonce(x, x.roll(1, dims=0))
    assert model.align_layer == len(model.llm.base_model.layers) // 2


def test_alignment_head_does_not_outlive_its_loss(tiny_bases, tmp_path):
    # stage 1 trains with the "same language?" head; later stages switch the loss off and must still load
    model, processor = build(tiny_bases, lambda_align=0.3, lambda_lang=0.4)
    model.save_pretrained(tmp_path / "stage1")
    assert XBridgeForConditionalGeneration.from_pretrained(tmp_path / "stage1").lang_head is not None
    model.config.lambda_lang = 0.0
    model.save_pretrained(tmp_path / "stage2")
    reloaded = XBridgeForConditionalGeneration.from_pretrained(tmp_path / "stage2")
    assert reloaded.lang_head is None
    batch = processor(TEXTS, src_lang="swh_Latn")
    assert torch.equal(reloaded.generate(**batch, max_new_tokens=4), model.eval().generate(**batch, max_new_tokens=4))

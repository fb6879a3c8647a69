"""Marian binary format and the Marian -> transformers converter, on a tiny random model written here.

The test writes the file itself (its own writer, from the format description, not realworld.marian_bin's): the
Firefox students' item names and types (intgemm8 matrices stored transposed, `Wemb` row-major, float32 biases
and layer norms, `*_QuantMultA` items, the `special:model.yml` text), random tiny weights. Then: the reader
returns exactly what was written and writes the same bytes back; the converted checkpoint loads with
AutoModelForSeq2SeqLM (remote code) and its logits, encoder states and greedy output equal a direct numpy
computation of Marian's transformer + SSRU decoder on the written weights; the decoder reads a memory supplied
from outside; truncated and foreign files fail with errors naming the file and what was expected. ~10 s.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from realworld import convert_gguf, convert_marian, marian_bin

ROOT = Path(__file__).resolve().parent.parent
D, HEADS, FFN, ENC, DEC = 16, 2, 24, 2, 2
INTGEMM8, FLOAT32, INT8 = 0x4101, 0x404, 0x101
MODEL_YML = f"""dec-cell: ssru
dec-depth: {DEC}
dim-emb: {D}
dim-vocabs:
  - VOCAB
  - VOCAB
enc-depth: {ENC}
output-omit-bias: false
right-left: false
tied-embeddings-all: true
transformer-decoder-autoreg: rnn
transformer-dim-ffn: {FFN}
transformer-ffn-activation: relu
transformer-ffn-depth: 2
transformer-heads: {HEADS}
transformer-no-projection: false
transformer-postprocess: dan
transformer-postprocess-emb: d
transformer-postprocess-top: ""
transformer-preprocess: ""
transformer-tied-layers: []
transformer-train-position-embeddings: false
type: transformer
version: v1.9.56 test
"""


# ------------------------------------------------------------------ the test's own writer and tiny model


def write_marian(path: Path, items: list[tuple[str, int, tuple, bytes]]) -> bytes:
    """Marian binary format v1: header, names, shapes, 256-aligned data (Marian's io/binary.cpp layout)."""
    head = struct.pack("<QQ", 1, len(items))
    head += b"".join(struct.pack("<QQQQ", len(n.encode()) + 1, t, len(s), len(d)) for n, t, s, d in items)
    head += b"".join(n.encode() + b"\0" for n, _, _, _ in items)
    head += b"".join(struct.pack(f"<{len(s)}i", *s) for _, _, s, _ in items)
    pad = ((len(head) + 8) // 256 + 1) * 256 - len(head) - 8
    data = head + struct.pack("<Q", pad) + b"\0" * pad + b"".join(d for _, _, _, d in items)
    path.write_bytes(data)
    return data


def _padded(raw: bytes, stale: bytes = b"") -> bytes:
    fill = -len(raw) % 256
    return raw + (stale * fill)[:fill] if stale else raw + b"\0" * fill


def intgemm8(w: np.ndarray, stale: bytes = b"") -> tuple[bytes, np.ndarray]:
    """(payload, dequantised values) of an intgemm8 item holding `w` in the given (stored) order."""
    mult = np.float32(127.0) / np.float32(np.abs(w).max())
    q = np.clip(np.rint(w * mult), -127, 127).astype(np.int8)
    return _padded(q.tobytes() + struct.pack("<f", mult), stale), (q.astype(np.float32) / mult).astype(np.float32)


def tiny_vocab(path: Path, size: int = 120, lang: str = "eng_Latn") -> int:
    import sentencepiece as spm

    lines = (ROOT / "data" / "flores200_devtest" / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()[:300]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=size, eos_id=0,
                                   unk_id=1, bos_id=-1, pad_id=-1, model_type="unigram", character_coverage=0.98,
                                   minloglevel=2)
    path.write_bytes(buf.getvalue())
    return size


def tiny_model(path: Path, vocab: int, seed: int = 0) -> tuple[dict, list]:
    """Write a tiny Firefox-style student; returns (logical float weights by Marian name, the items written)."""
    rng = np.random.default_rng(seed)
    logical, items = {}, []

    def matrix(name, d_in, d_out, as_float=False):
        w = (rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)
        if as_float:  # a float32 matrix is stored in its logical (in, out) order
            items.append((name, FLOAT32, (d_in, d_out), _padded(w.tobytes())))
            logical[name] = w
        else:  # intgemm8: stored transposed, (out, in) row-major, header shape the logical (in, out)
            payload, deq = intgemm8(np.ascontiguousarray(w.T))
            items.append((name, INTGEMM8, (d_in, d_out), payload))
            logical[name] = deq.reshape(d_out, d_in).T
        items.append((f"{name}_QuantMultA", FLOAT32, (1, 1), _padded(struct.pack("<f", 7.5))))

    def vector(name, n, base=0.0, scale=0.2):
        v = (base + scale * rng.standard_normal((1, n))).astype(np.float32)
        items.append((name, FLOAT32, (1, n), _padded(v.tobytes())))
        logical[name] = v.reshape(-1)

    emb = (rng.standard_normal((vocab, D)) * 0.5).astype(np.float32)
    payload, deq = intgemm8(emb)
    items.append(("Wemb", INTGEMM8, (vocab, D), payload))
    logical["Wemb"] = deq.reshape(vocab, D)
    # the real files' intgemm8 (1, 1) activation scale of the output layer, with stale (non-zero) padding
    items.append(("Wemb_QuantMultA", INTGEMM8, (1, 1), intgemm8(np.float32([[3.0]]), stale=b"\x05\xff\x08")[0]))
    vector("decoder_ff_logit_out_b", vocab)
    for i in range(1, DEC + 1):
        p = f"decoder_l{i}"
        for m in "qkvo":
            matrix(f"{p}_context_W{m}", D, D)
            vector(f"{p}_context_b{m}", D)
        vector(f"{p}_context_Wo_ln_bias", D), vector(f"{p}_context_Wo_ln_scale", D, 1.0, 0.1)
        matrix(f"{p}_ffn_W1", D, FFN), matrix(f"{p}_ffn_W2", FFN, D, as_float=(i == DEC))
        vector(f"{p}_ffn_b1", FFN), vector(f"{p}_ffn_b2", D)
        vector(f"{p}_ffn_ffn_ln_bias", D), vector(f"{p}_ffn_ffn_ln_scale", D, 1.0, 0.1)
        matrix(f"{p}_rnn_W", D, D), matrix(f"{p}_rnn_Wf", D, D)
        vector(f"{p}_rnn_bf", D), vector(f"{p}_rnn_ffn_ln_bias", D), vector(f"{p}_rnn_ffn_ln_scale", D, 1.0, 0.1)
    for i in range(1, ENC + 1):
        p = f"encoder_l{i}"
        for m in "qkvo":
            matrix(f"{p}_self_W{m}", D, D)
            vector(f"{p}_self_b{m}", D)
        vector(f"{p}_self_Wo_ln_bias", D), vector(f"{p}_self_Wo_ln_scale", D, 1.0, 0.1)
        matrix(f"{p}_ffn_W1", D, FFN), matrix(f"{p}_ffn_W2", FFN, D)
        vector(f"{p}_ffn_b1", FFN), vector(f"{p}_ffn_b2", D)
        vector(f"{p}_ffn_ffn_ln_bias", D), vector(f"{p}_ffn_ffn_ln_scale", D, 1.0, 0.1)
    yml = MODEL_YML.replace("VOCAB", str(vocab)).encode() + b"\0"
    items.append(("special:model.yml", INT8, (len(yml),), yml))  # int8 text: not padded
    write_marian(path, items)
    return logical, items


# ------------------------------------------------------------------ a direct reference computation (numpy, float64)


def _ln(x, w, name):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-9) * w[f"{name}_ln_scale"] + w[f"{name}_ln_bias"]


def _attention(x, memory, w, p, mask=None):
    def heads(t):
        return t.reshape(t.shape[0], HEADS, D // HEADS).transpose(1, 0, 2)

    q, k, v = (heads(t @ w[f"{p}_W{m}"] + w[f"{p}_b{m}"]) for t, m in ((x, "q"), (memory, "k"), (memory, "v")))
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(D // HEADS)
    if mask is not None:
        scores = np.where(mask[None, None, :], scores, -np.inf)
    att = np.exp(scores - scores.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    return (att @ v).transpose(1, 0, 2).reshape(x.shape[0], D) @ w[f"{p}_Wo"] + w[f"{p}_bo"]


def _ffn(x, w, p):
    return np.maximum(x @ w[f"{p}_W1"] + w[f"{p}_b1"], 0) @ w[f"{p}_W2"] + w[f"{p}_b2"]


def _positions(n):
    half = D // 2
    inc = np.log(10000.0) / (half - 1)  # Marian: the sin half, then the cos half, log-timescale step 1/(d/2 - 1)
    angles = np.arange(n)[:, None] * np.exp(np.arange(half) * -inc)[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], -1)


def ref_encode(w, src):
    x = w["Wemb"][src] * np.sqrt(D) + _positions(len(src))
    for i in range(1, ENC + 1):
        p = f"encoder_l{i}"
        x = _ln(x + _attention(x, x, w, f"{p}_self"), w, f"{p}_self_Wo")
        x = _ln(x + _ffn(x, w, f"{p}_ffn"), w, f"{p}_ffn_ffn")
    return x


def ref_decode(w, memory, prev, mask=None):
    """Logits (T, V) for decoder inputs: a zero vector, then the embeddings of `prev` (the shifted target)."""
    y = np.concatenate([np.zeros((1, D)), w["Wemb"][prev]]) * np.sqrt(D) + _positions(len(prev) + 1)
    for i in range(1, DEC + 1):
        p = f"decoder_l{i}"
        forget = 1 / (1 + np.exp(-(y @ w[f"{p}_rnn_Wf"] + w[f"{p}_rnn_bf"])))
        cand, c, states = y @ w[f"{p}_rnn_W"], np.zeros(D), []
        for t in range(len(y)):
            c = forget[t] * c + (1 - forget[t]) * cand[t]
            states.append(np.maximum(c, 0))
        y = _ln(y + np.stack(states), w, f"{p}_rnn_ffn")
        y = _ln(y + _attention(y, memory, w, f"{p}_context", mask), w, f"{p}_context_Wo")
        y = _ln(y + _ffn(y, w, f"{p}_ffn"), w, f"{p}_ffn_ffn")
    return y @ w["Wemb"].T + w["decoder_ff_logit_out_b"]


def ref_greedy(w, src, steps):
    memory, out = ref_encode(w, src), []
    for _ in range(steps):
        out.append(int(ref_decode(w, memory, out)[-1].argmax()))
        if out[-1] == 0:
            break
    return out


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    root = tmp_path_factory.mktemp("marian-tiny")
    folder = root / "enxx"
    folder.mkdir()
    vocab = tiny_vocab(folder / "vocab.enxx.spm")
    weights, items = tiny_model(folder / "model.enxx.intgemm.alphas.bin", vocab)
    (folder / "lex.50.50.enxx.s2t.bin").write_bytes(b"a shortlist, ignored")
    out = convert_marian.convert(folder, root / "converted", provenance={"source": "test"})
    tok = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(out, trust_remote_code=True).eval()
    return {"folder": folder, "bin": folder / "model.enxx.intgemm.alphas.bin", "vocab": vocab, "w": weights,
            "items": items, "out": out, "tok": tok, "model": model, "root": root}


def _w64(w):
    return {k: v.astype(np.float64) for k, v in w.items()}


# ------------------------------------------------------------------ the format


def test_reader_returns_what_was_written_and_writes_the_same_bytes(tiny):
    raw = tiny["bin"].read_bytes()
    items = marian_bin.read(tiny["bin"])
    assert [i.name for i in items.values()] == [n for n, _, _, _ in tiny["items"]]
    for name, typ, shape, payload in tiny["items"]:
        it = items[name]
        assert (it.type, it.shape) == (typ, shape), name
        assert it.payload() == payload, name  # values, multiplier and padding, byte for byte
    assert marian_bin.serialize(items) == raw
    # the dequantised values are the written ones (intgemm: q / multiplier, flat in stored order)
    w = tiny["w"]
    assert np.array_equal(items["Wemb"].dequantize().reshape(tiny["vocab"], D), w["Wemb"])
    assert np.array_equal(items["encoder_l1_ffn_W1"].dequantize().reshape(FFN, D).T, w["encoder_l1_ffn_W1"])
    assert np.array_equal(items["decoder_l2_ffn_W2"].dequantize(), w["decoder_l2_ffn_W2"])  # the float32 one
    assert "ssru" in items["special:model.yml"].text()


def _expect(path: Path, data: bytes, *fragments: str):
    path.write_bytes(data)
    with pytest.raises(marian_bin.MarianFormatError) as err:
        marian_bin.read(path)
    msg = str(err.value)
    assert str(path) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_truncated_and_foreign_files_name_the_file_and_what_was_expected(tiny, tmp_path):
    raw = tiny["bin"].read_bytes()
    n = len(tiny["items"])
    bad = tmp_path / "bad.bin"
    _expect(bad, b"", "0 bytes", "16-byte header")
    _expect(bad, raw[:40], "announces", "truncated")  # inside the item headers
    _expect(bad, raw[:16 + 32 * n + 30], "truncated: name of item")
    _expect(bad, raw[:len(raw) - 300], "truncated: item", "needs bytes")  # inside the last data items
    _expect(bad, raw + b"\0\0\0", "3 unexpected trailing bytes")
    _expect(bad, b"PK\x03\x04" + b"\0" * 60, "not a Marian binary model", "expected 1", ".npz")
    _expect(bad, b"GGUF\x03\0\0\0" + b"\0" * 60, "not a Marian binary model", "GGUF")
    _expect(bad, np.random.default_rng(1).bytes(4096), "not a Marian binary model")
    # an item type the reader does not know
    first_type = 16 + 8
    patched = bytearray(raw)
    patched[first_type:first_type + 8] = struct.pack("<Q", 0x9999)
    _expect(bad, bytes(patched), "unsupported type 0x9999", "supported:")
    # an intgemm item whose data is too short for its shape + multiplier
    patched = bytearray(raw)
    patched[16 + 24:16 + 32] = struct.pack("<Q", 10)  # item 0 (Wemb): data_length 10
    _expect(bad, bytes(patched), "'Wemb'", "expected at least")


def test_converter_errors_name_the_file_and_the_expectation(tiny, tmp_path):
    items = list(marian_bin.read(tiny["bin"]).values())
    yml = next(i for i in items if i.name == "special:model.yml")
    lstm = [marian_bin.text_item(yml.name, yml.text().replace("dec-cell: ssru", "dec-cell: lstm"))
            if i is yml else i for i in items]
    path = marian_bin.write(tmp_path / "lstm.bin", lstm)
    with pytest.raises(convert_marian.ConversionError, match=r"lstm\.bin: Marian option dec-cell='lstm'.*ssru"):
        convert_marian.convert(path, tmp_path / "out", vocab=tiny["folder"] / "vocab.enxx.spm")
    missing = marian_bin.write(tmp_path / "missing.bin", [i for i in items if i.name != "decoder_l2_rnn_Wf"])
    with pytest.raises(convert_marian.ConversionError, match=r"missing\.bin: missing Marian item 'decoder_l2_rnn_Wf'"):
        convert_marian.convert(missing, tmp_path / "out", vocab=tiny["folder"] / "vocab.enxx.spm")
    extra = marian_bin.write(tmp_path / "extra.bin", items + [marian_bin.float_item("decoder_l3_rnn_W", np.ones((2, 2)))])
    with pytest.raises(convert_marian.ConversionError, match=r"extra\.bin: Marian items not understood.*decoder_l3_rnn_W"):
        convert_marian.convert(extra, tmp_path / "out", vocab=tiny["folder"] / "vocab.enxx.spm")
    wrong = [marian_bin.text_item(yml.name, yml.text().replace("- 120", "- 119")) if i is yml else i for i in items]
    with pytest.raises(convert_marian.ConversionError, match=r"v\.bin: Wemb has shape \(120, 16\), expected \(119, 16\)"):
        convert_marian.convert(marian_bin.write(tmp_path / "v.bin", wrong), tmp_path / "out",
                               vocab=tiny["folder"] / "vocab.enxx.spm")
    tiny_vocab(tmp_path / "small.spm", 110)
    with pytest.raises(convert_marian.ConversionError, match=r"small\.spm: 110 pieces, but the model's vocabulary has 120"):
        convert_marian.convert(tiny["bin"], tmp_path / "out", vocab=tmp_path / "small.spm")
    with pytest.raises(convert_marian.ConversionError, match="expected exactly one Marian model"):
        convert_marian.convert(tmp_path, tmp_path / "out")
    with pytest.raises(convert_marian.ConversionError, match="exists; pass --force"):
        convert_marian.convert(tiny["folder"], tiny["out"])


def test_gguf_converter_rejects_foreign_and_truncated_files(tmp_path):
    pytest.importorskip("gguf")
    foreign = tmp_path / "model.gguf"
    foreign.write_bytes(b"\x01\0\0\0\0\0\0\0" + b"\0" * 100)
    with pytest.raises(convert_gguf.ConversionError, match=r"model\.gguf: not a GGUF file.*expected b'GGUF'"):
        convert_gguf.convert(foreign, tmp_path / "out")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF\x03\0\0\0" + struct.pack("<QQ", 5, 9))  # announces 5 tensors, 9 fields: none there
    with pytest.raises(convert_gguf.ConversionError, match=r"cut\.gguf: not a readable GGUF file"):
        convert_gguf.convert(truncated, tmp_path / "out")
    with pytest.raises(convert_gguf.ConversionError, match="no such GGUF file"):
        convert_gguf.convert(tmp_path / "absent.gguf", tmp_path / "out")


# ------------------------------------------------------------------ the converted checkpoint


def test_checkpoint_folder(tiny):
    out = tiny["out"]
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md",
            "configuration_marian_ssru.py", "modeling_marian_ssru.py", "marian_vocab.spm"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_marian_ssru.MarianSSRUForConditionalGeneration"
    assert (config["vocab_size"], config["pad_token_id"], config["decoder_start_token_id"], config["eos_token_id"]) \
        == (121, 120, 120, 0)
    card = (out / "README.md").read_text()
    assert "license: mpl-2.0" in card and "dequantised" in card


def test_tokenizer_equals_sentencepiece(tiny):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny["folder"] / "vocab.enxx.spm"))
    lines = (ROOT / "data" / "flores200_devtest" / "eng_Latn.devtest").read_text(encoding="utf-8").splitlines()[300:400]
    assert tiny["tok"](lines)["input_ids"] == [ids + [0] for ids in sp.encode(lines)]
    assert (tiny["tok"].pad_token_id, tiny["tok"].eos_token_id, tiny["tok"].unk_token_id) == (120, 0, 1)


def test_logits_equal_the_reference_computation(tiny):
    w, model = _w64(tiny["w"]), tiny["model"]
    rng = np.random.default_rng(3)
    src = [int(t) for t in rng.integers(2, tiny["vocab"], 9)] + [0]
    tgt = [int(t) for t in rng.integers(2, tiny["vocab"], 6)]
    memory = ref_encode(w, src)
    ref = ref_decode(w, memory, tgt[:-1])  # (6, V)
    with torch.no_grad():
        enc = model.get_encoder()(input_ids=torch.tensor([src])).last_hidden_state[0].double().numpy()
        out = model(input_ids=torch.tensor([src]), labels=torch.tensor([tgt]))
    assert np.abs(enc - memory).max() < 1e-4
    logits = out.logits[0].double().numpy()
    assert logits.shape == (6, tiny["vocab"] + 1)
    assert np.abs(logits[:, :-1] - ref).max() < 1e-4, np.abs(logits[:, :-1] - ref).max()
    assert (logits[:, -1] < ref.min() - 1000).all()  # <pad> (the start symbol) is never a candidate
    assert np.isfinite(out.loss.item())


def test_greedy_generate_equals_the_reference(tiny):
    w, model = _w64(tiny["w"]), tiny["model"]
    rng = np.random.default_rng(4)
    sources = [[int(t) for t in rng.integers(2, tiny["vocab"], n)] + [0] for n in (4, 11, 7)]
    for src in sources:
        ids = model.generate(input_ids=torch.tensor([src]), max_new_tokens=12)[0].tolist()
        assert ids[0] == 120  # decoder start
        got = [t for t in ids[1:] if t != 120]
        assert got == ref_greedy(w, src, 12)
    # batched with padding: the same outputs as one at a time
    batch = tiny["tok"].pad({"input_ids": sources}, return_tensors="pt")
    together = model.generate(**batch, max_new_tokens=12)
    for row, src in zip(together.tolist(), sources):
        alone = model.generate(input_ids=torch.tensor([src]), max_new_tokens=12)[0].tolist()
        assert row[:len(alone)] == alone and set(row[len(alone):]) <= {120}


def test_cache_and_beam_search_match_the_uncached_computation(tiny):
    model, rng = tiny["model"], np.random.default_rng(5)
    src = torch.tensor([[int(t) for t in rng.integers(2, tiny["vocab"], 8)] + [0]] * 2)
    for beams in (1, 3):
        cached = model.generate(input_ids=src, num_beams=beams, max_new_tokens=10, use_cache=True)
        uncached = model.generate(input_ids=src, num_beams=beams, max_new_tokens=10, use_cache=False)
        assert torch.equal(cached, uncached), beams


def test_decoder_reads_a_memory_from_outside(tiny):
    """What the bridge does: the decoder cross-attends to states that are not its encoder's (e.g. an LLM's mapped
    states), given as encoder_hidden_states / encoder_outputs with their mask."""
    from transformers.modeling_outputs import BaseModelOutput

    w, model = _w64(tiny["w"]), tiny["model"]
    rng = np.random.default_rng(6)
    memory = rng.standard_normal((2, 5, D)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    prev = [int(t) for t in rng.integers(2, tiny["vocab"], 4)]
    dec_in = torch.tensor([[120] + prev] * 2)
    with torch.no_grad():
        hidden = model.get_decoder()(input_ids=dec_in, encoder_hidden_states=torch.from_numpy(memory),
                                     encoder_attention_mask=torch.from_numpy(mask)).last_hidden_state
        logits = model.get_output_embeddings()(hidden)
        via_forward = model(encoder_outputs=(torch.from_numpy(memory),), attention_mask=torch.from_numpy(mask),
                            decoder_input_ids=dec_in).logits
    assert torch.allclose(logits, via_forward, atol=1e-6)
    for b in range(2):
        ref = ref_decode(w, memory[b].astype(np.float64), prev, mask[b].astype(bool))
        assert np.abs(logits[b, :, :-1].double().numpy() - ref).max() < 1e-4
    # generate from an outside memory
    ids = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=torch.from_numpy(memory[:1])),
                         attention_mask=torch.from_numpy(mask[:1]), max_new_tokens=6)
    assert ids.shape[0] == 1 and ids[0, 0] == 120


def test_command_lines_have_help(capsys):
    from realworld import __main__ as cli, convert_gguf as cg, verify

    for main, argv in ((convert_marian.main, ["--help"]), (cg.main, ["--help"]), (verify.main, ["--help"]),
                       (cli.main, ["--help"]), (cli.main, ["fetch", "--help"]), (cli.main, ["verify", "--help"])):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_shortlist_reader_and_mask(tmp_path):
    from realworld import verify

    # vocabulary of 20: first 3 always; source id 5 -> {7, 9}, id 6 -> {12}; the rest empty
    offsets = np.zeros(21, np.uint64)
    offsets[6:] = 2
    offsets[7:] = 3
    lists = np.array([7, 9, 12], np.uint32)
    head = struct.pack("<6Q", verify.SHORTLIST_MAGIC, 0, 3, 50, len(offsets), len(lists))
    path = tmp_path / "lex.s2t.bin"
    path.write_bytes(head + offsets.tobytes() + lists.tobytes())
    sl = verify.Shortlist(path)
    allowed = sl.mask([5, 6, 0], 21)  # 21: the converted vocabulary has <pad> = 20 on top
    # first 3, the source ids 5 and 6, their lists 7 9 12: 8 ids, already a multiple of 8; <pad> never
    assert np.flatnonzero(allowed).tolist() == [0, 1, 2, 5, 6, 7, 9, 12]
    assert np.flatnonzero(sl.mask([5], 21)).tolist() == [0, 1, 2, 3, 4, 5, 7, 9]  # padded up from `first` to 8
    path.write_bytes(head + offsets.tobytes())  # the target ids cut off
    with pytest.raises(ValueError, match=r"lex\.s2t\.bin: .*bytes, the header announces"):
        verify.Shortlist(path)
    path.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match=r"lex\.s2t\.bin: not a Marian binary shortlist"):
        verify.Shortlist(path)


def test_compose_takes_the_encoder_from_one_direction_and_the_decoder_from_the_other(tiny):
    """realworld.compose_marian on two tiny students (xx->en: seed 1, its own vocabulary; en->xx: the fixture): separate vocabularies, every part from the right model, the memory encoder, save/load, errors."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from realworld import compose_marian

    root = tiny["root"]
    folder = root / "xxen"
    folder.mkdir(exist_ok=True)
    vocab = tiny_vocab(folder / "vocab.xxen.spm", lang="por_Latn")
    tiny_model(folder / "model.xxen.intgemm.alphas.bin", vocab, seed=1)
    xxen = convert_marian.convert(folder, root / "converted-xxen", force=True)
    out = compose_marian.compose(xxen, tiny["out"], root / "composed", force=True)
    tok = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    nmt = AutoModelForSeq2SeqLM.from_pretrained(out, trust_remote_code=True).eval()
    enc_tok = AutoTokenizer.from_pretrained(xxen, trust_remote_code=True)
    enc = AutoModelForSeq2SeqLM.from_pretrained(xxen, trust_remote_code=True).eval()
    dec, dec_tok = tiny["model"], tiny["tok"]
    assert (nmt.config.vocab_size, nmt.config.decoder_vocab_size, nmt.config.share_encoder_decoder_embeddings) == (
        121, 121, False)
    assert (nmt.config.source_lang, nmt.config.target_lang) == ("xx", "xx")
    assert nmt.get_output_embeddings().weight is nmt.get_decoder().embed_tokens.weight
    assert nmt.get_memory_encoder().embed_tokens.weight is nmt.get_decoder().embed_tokens.weight
    assert dec.get_memory_encoder() is dec.get_encoder()  # one-direction students: the encoder itself
    texts = ["The cat sleeps in the house.", "Tomorrow we go to the market."]
    assert tok(texts)["input_ids"] == enc_tok(texts)["input_ids"]
    assert tok(text_target=texts)["input_ids"] == dec_tok(texts)["input_ids"] != tok(texts)["input_ids"]
    with torch.no_grad():
        src = tok(texts, return_tensors="pt", padding=True)
        torch.testing.assert_close(nmt.get_encoder()(**src).last_hidden_state, enc.get_encoder()(**src).last_hidden_state)
        tgt = tok(text_target=texts, return_tensors="pt", padding=True)
        memory = dec.get_encoder()(**tgt).last_hidden_state
        torch.testing.assert_close(nmt.get_memory_encoder()(**tgt).last_hidden_state, memory)
        kw = dict(encoder_outputs=(memory,), attention_mask=tgt["attention_mask"], labels=tgt["input_ids"])
        torch.testing.assert_close(nmt(**kw).logits, dec(**kw).logits)
    assert json.loads((out / "provenance.json").read_text())["check"] == {
        "encoder": 0.0, "memory_encoder": 0.0, "decoder_logits": 0.0}
    assert "memory encoder" in (out / "README.md").read_text()
    nmt.save_pretrained(root / "resaved")  # the tied target embeddings survive a save/load
    again = AutoModelForSeq2SeqLM.from_pretrained(root / "resaved", trust_remote_code=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**kw).logits, dec(**kw).logits)
    with pytest.raises(compose_marian.CompositionError, match="exists; pass --force"):
        compose_marian.compose(xxen, tiny["out"], out)
    small = root / "small"
    small.mkdir(exist_ok=True)
    tiny_model(small / "model.xxen.intgemm.alphas.bin", tiny_vocab(small / "vocab.xxen.spm", size=110), seed=2)
    with pytest.raises(compose_marian.CompositionError, match=r"pad_token_id=110.*120.*same size"):
        compose_marian.compose(convert_marian.convert(small, root / "converted-small", force=True), tiny["out"],
                               root / "nope")
    with pytest.raises(compose_marian.CompositionError, match="do not meet in one pivot language"):
        compose_marian.compose(tiny["out"], tiny["out"], root / "nope")
    with pytest.raises(compose_marian.CompositionError, match="already a composed model"):
        compose_marian.compose(out, tiny["out"], root / "nope")
    with pytest.raises(compose_marian.CompositionError, match=r"resaved-not: not a converted checkpoint folder"):
        compose_marian.compose(root / "resaved-not", tiny["out"], root / "nope")
    assert compose_marian.main(["--encoder", str(root / "resaved-not"), "--decoder", str(tiny["out"]),
                                "--out", str(root / "nope")]) == 2
    with pytest.raises(SystemExit) as done:
        compose_marian.main(["--help"])
    assert done.value.code == 0

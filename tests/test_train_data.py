"""Training data: record validation with precise errors, truncation, and `build-data` (sharded, resumable)."""

import json
import logging
import os

import datasets
import pytest
from transformers import AutoTokenizer, M2M100Config, M2M100ForConditionalGeneration

from configuration_xbridge import nllb_lang_codes
from miniworld.nllb_tokenizer import train_nllb_tokenizer
from train.build_data import main as build_main
from train.data import DataError, load_records, prepare, truncate, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LANGS = ["eng_Latn", "swh_Latn", "deu_Latn", "fra_Latn"]


def _flores(lang, n=150):
    with open(os.path.join(ROOT, "data", "flores200_devtest", f"{lang}.devtest"), encoding="utf-8") as f:
        return f.read().splitlines()[:n]


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory):
    """An untrained NLLB-architecture checkpoint with an NLLB tokenizer trained on FLORES lines."""
    path = tmp_path_factory.mktemp("nllb")
    tok = train_nllb_tokenizer([t for lang in LANGS for t in _flores(lang)], LANGS, vocab_size=400)
    config = M2M100Config(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                          bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, scale_embedding=True)
    M2M100ForConditionalGeneration(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return str(path)


TRI = {"src_text": "Habari", "src_lang": "swh_Latn", "en_text": "Hello", "tgt_text": "Hallo", "tgt_lang": "deu_Latn"}
TASK = {"question": "Swali?", "src_lang": "swh_Latn", "answer_en": "It is 4.", "answer_tgt": "Ni 4.",
        "tgt_lang": "swh_Latn"}


def test_valid_records_load_from_jsonl_and_datasets(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", [TRI, TRI])
    validate(load_records(train_file=path), "stage1", LANGS, path)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list([TASK, {**TASK, "instruction": "Solve it."}]).save_to_disk(str(saved))
    ds = load_records(dataset_name=str(saved))
    validate(ds, "stage3", LANGS, "saved")
    validate(ds, "stage2", LANGS, "saved")


@pytest.mark.parametrize("bad, message", [
    ({**TRI, "tgt_lang": "deu_latn"}, r"a\.jsonl: record 2: field 'tgt_lang': unknown language code 'deu_latn'; "
                                      r"did you mean 'deu_Latn'\?"),
    ({**TRI, "en_text": ""}, r"a\.jsonl: record 2: field 'en_text' must be a non-empty string"),
    ({k: v for k, v in TRI.items() if k != "tgt_text"}, r"a\.jsonl: record 2: field 'tgt_text' must be a non-empty"),
    ({**TRI, "src_text": 3}, r"a\.jsonl: record 2: field 'src_text' must be a non-empty string, got int 3"),
    ("{not json", r"a\.jsonl: record 2: not valid JSON"),
])
def test_errors_name_file_record_and_field(tmp_path, bad, message):
    path = _write_jsonl(tmp_path / "a.jsonl", [TRI, bad])
    with pytest.raises(DataError, match=message):
        validate(load_records(train_file=path), "stage1", LANGS, path)


def test_missing_column_empty_data_and_source_choice(tmp_path):
    path = _write_jsonl(tmp_path / "t.jsonl", [TASK])
    with pytest.raises(DataError, match="field 'src_text' is missing from every record"):
        validate(load_records(train_file=path), "stage1", LANGS, path)
    empty = _write_jsonl(tmp_path / "e.jsonl", [])
    with pytest.raises(DataError, match="e.jsonl: the data set is empty"):
        load_records(train_file=empty)
    with pytest.raises(DataError, match="exactly one of --train_file"):
        load_records()


def test_truncation_cuts_at_token_boundaries_and_is_logged(tmp_path, tiny_nllb, caplog):
    nmt_tok = AutoTokenizer.from_pretrained(tiny_nllb)
    llm_tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, "data", "qwen2.5_tokenizer"))
    long_en = " ".join(_flores("eng_Latn", 3))
    rows = [TASK, {**TASK, "answer_en": long_en, "question": " ".join(_flores("swh_Latn", 3))}]
    ds = datasets.Dataset.from_list(rows)
    with caplog.at_level(logging.INFO, logger="train.data"):
        out = prepare(ds, "stage3", LANGS, nmt_tok, llm_tok, name="task.jsonl", max_source_tokens=20,
                      max_answer_tokens=10, max_target_tokens=64)
    assert "task.jsonl: truncated 1 of 2 records (answer_en: 1 (> 10 tokens), question: 1 (> 20 tokens))" in caplog.text
    assert out[0] == ds[0]
    assert long_en.startswith(out[1]["answer_en"])
    assert len(llm_tok(out[1]["answer_en"], add_special_tokens=False)["input_ids"]) == 10
    assert len(nmt_tok(out[1]["question"], add_special_tokens=False)["input_ids"]) == 20
    assert truncate(ds, nmt_tok, llm_tok) is ds  # no limits: untouched


def test_lang_codes_from_tokenizer(tiny_nllb):
    tokenizer = AutoTokenizer.from_pretrained(tiny_nllb)
    codes = nllb_lang_codes(tokenizer)
    assert codes == {lang: tokenizer.convert_tokens_to_ids(lang) for lang in LANGS}
    assert nllb_lang_codes(tiny_nllb) == codes  # the same from the checkpoint's tokenizer.json, no tokenizer built


def test_build_data_trilingual_is_sharded_deterministic_and_resumable(tmp_path, tiny_nllb):
    src = tmp_path / "opus.en-sw-train.sw"
    en = tmp_path / "opus.en-sw-train.en"
    src.write_text("\n".join(_flores("swh_Latn", 7)) + "\n", encoding="utf-8")
    en.write_text("\n".join(_flores("eng_Latn", 7)) + "\n", encoding="utf-8")
    args = ["trilingual", "--nmt_name_or_path", tiny_nllb, "--src_file", str(src), "--en_file", str(en),
            "--src_lang", "swh_Latn", "--tgt_langs", "swh_Latn,deu_Latn,fra_Latn", "--shard_size", "3",
            "--batch_size", "4", "--num_beams", "1", "--max_new_tokens", "8"]
    out_a = tmp_path / "a"
    build_main([*args, "--output_dir", str(out_a)])
    shards = sorted(p for p in os.listdir(out_a) if p.startswith("shard-"))
    assert shards == ["shard-00000.jsonl", "shard-00001.jsonl", "shard-00002.jsonl"]
    ds = load_records(train_file=str(out_a))
    assert len(ds) == 7
    validate(ds, "stage1", LANGS, str(out_a))
    assert {r["tgt_lang"] for r in ds} > {"swh_Latn"}  # targets drawn from the list
    for r in ds:
        if r["tgt_lang"] == "swh_Latn":
            assert r["tgt_text"] == r["src_text"]

    # A killed run: shard 1 lost, a stale temporary file left behind. The rerun writes only shard 1.
    out_b = tmp_path / "b"
    build_main([*args, "--output_dir", str(out_b)])
    os.remove(out_b / "shard-00001.jsonl")
    (out_b / "shard-00001.jsonl.tmp-123").write_text("partial")
    before = {p: os.stat(out_b / p).st_mtime_ns for p in ("shard-00000.jsonl", "shard-00002.jsonl")}
    build_main([*args, "--output_dir", str(out_b)])
    assert {p: os.stat(out_b / p).st_mtime_ns for p in before} == before
    for s in shards:  # deterministic: the same bytes as the uninterrupted run
        assert (out_a / s).read_bytes() == (out_b / s).read_bytes()
    with pytest.raises(DataError, match="was built with other arguments"):
        build_main([*args[:-2], "--max_new_tokens", "9", "--output_dir", str(out_b)])


def test_build_data_from_an_opus_style_translation_column(tmp_path, tiny_nllb):
    rows = [{"translation": {"en": e, "sw": s}} for e, s in zip(_flores("eng_Latn", 3), _flores("swh_Latn", 3))]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "opus"))
    out = tmp_path / "out"
    build_main(["trilingual", "--nmt_name_or_path", tiny_nllb, "--dataset_name", str(tmp_path / "opus"),
                "--src_key", "sw", "--src_lang", "swh_Latn", "--tgt_langs", "deu_Latn", "--output_dir", str(out),
                "--num_beams", "1", "--max_new_tokens", "4"])
    ds = load_records(train_file=str(out))
    assert ds["src_text"] == _flores("swh_Latn", 3) and set(ds["tgt_lang"]) == {"deu_Latn"}
    with pytest.raises(DataError, match="field 'translation' has no 'swa'"):
        build_main(["trilingual", "--nmt_name_or_path", tiny_nllb, "--dataset_name", str(tmp_path / "opus"),
                    "--src_key", "swa", "--src_lang", "swh_Latn", "--output_dir", str(tmp_path / "o2")])


def test_build_data_task_translates_line_by_line_and_checks_codes(tmp_path, tiny_nllb):
    rows = [{"question": "Swali?", "src_lang": "swh_Latn", "answer_en": "Step one.\n\nSo the answer is 4."},
            {"question": "Q?", "src_lang": "eng_Latn", "answer_en": "It is 5."}]
    path = _write_jsonl(tmp_path / "task.jsonl", rows)
    out = tmp_path / "out"
    build_main(["task", "--nmt_name_or_path", tiny_nllb, "--input", path, "--output_dir", str(out),
                "--num_beams", "1", "--max_new_tokens", "6"])
    ds = load_records(train_file=str(out))
    validate(ds, "stage3", LANGS, str(out))
    assert ds[0]["answer_tgt"].count("\n") == 2 and ds[0]["tgt_lang"] == "swh_Latn"
    assert ds[1]["answer_tgt"] == "It is 5."  # English target: copied, not translated
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{**rows[0], "src_lang": "swa_Latn"}])
    with pytest.raises(DataError, match=r"bad\.jsonl: record 1: field 'src_lang': unknown language code 'swa_Latn'"):
        build_main(["task", "--nmt_name_or_path", tiny_nllb, "--input", bad, "--output_dir", str(tmp_path / "o2")])


def test_build_data_help(capsys):
    from train.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["build-data", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--nmt_name_or_path" in out and "resum" in out

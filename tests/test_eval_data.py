"""Benchmark loaders on the vendored data, XL-Sum in its official format, and errors that name what is wrong."""

import json

import pytest

from eval import data, languages


def test_language_codes_map_both_ways():
    assert languages.parse_langs("sw,th,bn") == ["swh_Latn", "tha_Thai", "ben_Beng"]
    assert languages.parse_langs("swh_Latn,sw") == ["swh_Latn"]
    with pytest.raises(ValueError, match="unknown language 'xx'.*sw/swh_Latn"):
        languages.parse_langs("sw,xx")


def test_register_a_language():
    lang = languages.register(languages.Language("x1", "xxa_Latn", "Mini", None, None, None, "13a"))
    try:
        assert languages.parse_langs("x1") == ["xxa_Latn"] and languages.get("xxa_Latn") is lang
        with pytest.raises(ValueError, match="already in the table"):
            languages.register(languages.Language("sw", "new_Latn", "New", None, None, None, "13a"))
    finally:  # leave the shared table as it was for the other tests
        languages.LANGUAGES.remove(lang)
        del languages.BY_NLLB["xxa_Latn"], languages._BY_ANY["xxa_Latn"], languages._BY_ANY["x1"]


def test_unknown_benchmark_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown benchmark 'gsm8k'.*flores, mgsm, xlsum, tatoeba, msvamp"):
        data.load("gsm8k", ["swh_Latn"])


def test_flores_directions():
    units = data.load("flores", ["swh_Latn", "tha_Thai", "eng_Latn"], limit=2)
    assert [u.key for u in units] == ["swh_Latn-eng_Latn", "tha_Thai-eng_Latn", "eng_Latn-swh_Latn",
                                      "eng_Latn-tha_Thai", "swh_Latn-tha_Thai", "tha_Thai-swh_Latn"]
    by_key = {u.key: u for u in units}
    # line-aligned: the English reference of sw->en is the English input of en->th
    assert by_key["swh_Latn-eng_Latn"].examples[1]["reference"] == by_key["eng_Latn-tha_Thai"].examples[1]["input"]
    with pytest.raises(ValueError, match="valid directions: x-en, en-x, x-y"):
        data.load("flores", ["swh_Latn"], directions=["en-en"])


def test_missing_language_file_is_named(tmp_path):
    (tmp_path / "eng_Latn.devtest").write_text("a\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"swh_Latn\.devtest"):
        data.load("flores", ["swh_Latn"], source=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"mgsm_sw\.tsv"):
        data.load("mgsm", ["swh_Latn"], source=str(tmp_path))


def test_math_sets():
    mgsm = data.load("mgsm", ["swh_Latn"], limit=3)[0]
    assert mgsm.kind == "math" and len(mgsm.examples) == 3
    assert mgsm.examples[0]["reference"] == "18" and "Janet" in mgsm.examples[0]["input"]
    assert len(data.load("mgsm", ["ben_Beng"])[0].examples) == 250
    msvamp = data.load("msvamp", ["tha_Thai"], limit=2)[0]
    assert msvamp.examples[0]["reference"] == "8.0" and "18" in msvamp.examples[0]["input"]


def test_tatoeba_keeps_simplified_mandarin_only():
    unit = data.load("tatoeba", ["zho_Hans"], directions=["x-en"])[0]
    labels = (data.DATA_ROOT / "tatoeba_test_v2021-08-07/eng-zho/tatoeba-test-v2021-08-07.zho.labels")
    n_hans = labels.read_text(encoding="utf-8").splitlines().count("cmn_Hans")
    assert unit.key == "zho_Hans-eng_Latn" and len(unit.examples) == n_hans < 1000
    with pytest.raises(ValueError, match="Tatoeba has no English pair for tel_Telu"):
        data.load("tatoeba", ["tel_Telu"])


def write_xlsum(folder, lang_name, n=3):
    """A small XL-Sum sample in the official JSONL format ({id, url, title, summary, text})."""
    rows = [
        {"id": f"doc-{i}", "url": f"https://www.bbc.com/{lang_name}/{i}", "title": f"Title {i}",
         "summary": f"Muhtasari wa habari {i}.", "text": f"Habari ndefu nambari {i}. " * 5}
        for i in range(n)
    ]
    path = folder / f"{lang_name}_test.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows


def test_xlsum_official_format(tmp_path):
    rows = write_xlsum(tmp_path, "swahili")
    unit = data.load("xlsum", ["swh_Latn"], source=str(tmp_path), limit=2)[0]
    assert unit.kind == "summarize" and [e["id"] for e in unit.examples] == ["swh_Latn:doc-0", "swh_Latn:doc-1"]
    assert unit.examples[0]["reference"] == rows[0]["summary"] and unit.examples[0]["input"] == rows[0]["text"]
    with pytest.raises(FileNotFoundError, match="thai_test.jsonl"):
        data.load("xlsum", ["tha_Thai"], source=str(tmp_path))
    with pytest.raises(ValueError, match="XL-Sum has no deu_Latn"):
        data.load("xlsum", ["deu_Latn"], source=str(tmp_path))


def test_hub_sources_map_columns(monkeypatch):
    """A non-folder source goes to datasets.load_dataset(id, config, split); the columns are mapped per dataset."""
    import datasets

    calls = []
    tables = {
        "sw": {"question": ["Swali 1?", "Swali 2?"], "answer_number": [18, 3]},  # juletxara/mgsm
        "swh_Latn": {"text": ["Habari."] * 2},  # openlanguagedata/flores_plus
        "eng_Latn": {"text": ["News."] * 2},
        "swahili": {"id": ["a"], "url": ["u"], "title": ["t"], "summary": ["s"], "text": ["x"]},  # csebuetnlp/xlsum
    }

    def fake(source, config, split):
        calls.append((source, config, split))
        return datasets.Dataset.from_dict(tables[config])

    monkeypatch.setattr(data, "_hub_split", fake)
    mgsm = data.load("mgsm", ["swh_Latn"], source="juletxara/mgsm")[0]
    assert [e["reference"] for e in mgsm.examples] == ["18", "3"] and mgsm.examples[0]["input"] == "Swali 1?"
    flores = data.load("flores", ["swh_Latn"], source="openlanguagedata/flores_plus", directions=["x-en"])[0]
    assert flores.examples[0] == {"id": "swh_Latn-eng_Latn:0", "input": "Habari.", "reference": "News."}
    xlsum = data.load("xlsum", ["swh_Latn"])[0]  # the default XL-Sum source is the Hub dataset
    assert xlsum.examples == [{"id": "swh_Latn:a", "input": "x", "reference": "s"}]
    assert ("juletxara/mgsm", "sw", "test") in calls and ("csebuetnlp/xlsum", "swahili", "test") in calls
    assert ("openlanguagedata/flores_plus", "swh_Latn", "devtest") in calls

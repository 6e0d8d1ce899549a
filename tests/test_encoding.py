import warnings

import numpy as np
import pytest

from lora_router.config import BIO_LABELS
from lora_router.encoding import TextEncoder, TruncationWarning, bio_labels, char_spans, decode_spans, load_tokenizer
from lora_router.modeling.base import tokenizer_files_dir

NAMES = [
    ("帮我把sales_2024.csv导入到ODS层", ["sales_2024.csv"]),  # ASCII split into word pieces, glued to Chinese
    ("请把《2024年度财务报告.xlsx》发给财务部", ["2024年度财务报告.xlsx"]),  # Chinese name in brackets
    ("把/data/raw/user_log.parquet和orders.csv合并", ["/data/raw/user_log.parquet", "orders.csv"]),
    ("上传D:\\报表\\2024\\Q1汇总.xlsx", ["D:\\报表\\2024\\Q1汇总.xlsx"]),  # Windows path, upper case → [UNK]
    ('打开"Q1 report.xlsx"看看', ["Q1 report.xlsx"]),  # a space inside the name
    ("重跑一下昨天失败的同步任务", []),
]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(load_tokenizer(tokenizer_files_dir()), max_length=64)


@pytest.mark.parametrize("text, names", NAMES)
def test_gold_labels_decode_back_to_the_exact_names(encoder, text, names):
    enc = encoder.encode(text)
    labels = bio_labels(enc, char_spans(text, names))
    probs = np.zeros((len(labels), len(BIO_LABELS)))
    for t, label in enumerate(labels):
        probs[t, label if label >= 0 else 0] = 1.0
    spans = decode_spans(text, enc, probs)
    assert [s["text"] for s in spans] == names
    for s in spans:
        assert text[s["start"] : s["end"]] == s["text"]


def test_long_input_is_truncated_with_a_warning(encoder):
    with pytest.warns(TruncationWarning, match="truncated to 64"):
        enc = encoder.encode("数据" * 500)
    assert len(enc.input_ids) == 64 and enc.truncated


def test_dynamic_padding_pads_to_the_longest(encoder):
    batch = encoder.encode_batch(["短", "这是一个比较长的问题"])
    arrays = encoder.pad(batch)
    assert arrays["input_ids"].shape == (2, len(batch[1].input_ids))
    assert arrays["attention_mask"][0].sum() == len(batch[0].input_ids)


def test_hostile_unicode_encodes(encoder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        for text in ["😀😀", "\x00\x01", "\u200b\u200b数据", "\u202eمرحبا", "a" * 100_000]:
            enc = encoder.encode(text)
            assert 2 <= len(enc.input_ids) <= 64


def test_a_span_without_an_extension_is_not_a_file(encoder):
    from lora_router.core.results import extraction_result

    text = "把sales_2024.csv导入到ODS层"
    enc = encoder.encode(text)
    labels = bio_labels(enc, char_spans(text, ["sales_2024.csv", "ODS层"]))
    logits = np.full((len(labels), len(BIO_LABELS)), -5.0)
    for t, label in enumerate(labels):
        logits[t, label if label >= 0 else 0] = 5.0
    assert extraction_result(text, enc, logits)["file_names"] == ["sales_2024.csv"]


# ---------------------------------------------------------------- lower-casing (bert-base-chinese has no upper case)
MIXED = [
    "ODS层和DWD层有什么区别",
    "把Sales_2024.CSV导入Hive",
    "ＳＱＬ全角Ａｂｃ和ＤＷＳ",  # full-width letters
    "Café ÉCOLE naïve Ünïcode",  # accented letters: kept as they are, only lower-cased
    "😀Ok 报表.XLSX🔥HDFS",  # emoji glued to names
    "İstanbul ẞtraße ΣΑΣ Ǆemal",  # letters whose lower case is longer or special
    "\u200b\u200cETL\u202e任务",  # invisible and direction characters
]


@pytest.fixture(scope="module")
def lower(encoder):
    return TextEncoder(load_tokenizer(tokenizer_files_dir()), max_length=64, lowercase=True)


def test_bert_base_chinese_needs_lowercasing_and_a_cased_vocabulary_does_not():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lora_router.encoding import default_encoding

    assert default_encoding(load_tokenizer(tokenizer_files_dir())) == {"lowercase": True}
    cased = Tokenizer(models.WordPiece({"[UNK]": 0, "hive": 1, "Hive": 2}, unk_token="[UNK]"))
    cased.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    assert default_encoding(cased) == {"lowercase": False}


def test_no_ascii_letter_is_unknown_once_lowercased(encoder, lower):
    unk = lower.tokenizer.token_to_id("[UNK]")
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    for text in list(letters) + [letters, "ODS层和DWD层", "ETL SQL HDFS CSV OOM", "把Sales_2024.CSV导入Hive"]:
        assert unk not in lower.encode(text).input_ids, text
    # without lower-casing every upper-case letter is [UNK]: what the issue found
    assert all(encoder.encode(c).input_ids[1] == unk for c in letters[:26])


@pytest.mark.parametrize("text", MIXED)
def test_lowercased_tokens_keep_exact_offsets_into_the_original_text(lower, text):
    enc = lower.tokenizer.encode(text)
    previous_end = 0
    for token, (s, e), special in zip(enc.tokens, enc.offsets, enc.special_tokens_mask):
        if special:
            continue
        assert 0 <= previous_end <= s < e <= len(text)
        previous_end = e
        if token != "[UNK]":
            piece = token.removeprefix("##")
            assert piece == text[s:e].lower(), (token, text[s:e])


def test_lowercasing_changes_what_the_model_sees_not_the_offsets_of_words(encoder, lower):
    text = "把Sales_2024.CSV导入Hive"
    before, after = encoder.encode(text), lower.encode(text)
    assert [text[s:e] for s, e in after.offsets if e > s] == ["把", "Sale", "s", "_", "202", "4", ".", "CS", "V",
                                                               "导", "入", "Hiv", "e"]
    covered = lambda enc: {i for s, e in enc.offsets for i in range(s, e)}  # noqa: E731
    assert covered(before) == covered(after)


def test_extraction_returns_the_users_text_in_its_own_case(lower):
    from lora_router.core.results import extraction_result

    text = "把Sales_2024.CSV导入Hive"
    enc = lower.encode(text)
    labels = bio_labels(enc, char_spans(text, ["Sales_2024.CSV"]))
    logits = np.full((len(labels), len(BIO_LABELS)), -5.0)
    for t, label in enumerate(labels):
        logits[t, label if label >= 0 else 0] = 5.0
    spans = extraction_result(text, enc, logits)["spans"]
    assert [(s["text"], s["start"], s["end"]) for s in spans] == [("Sales_2024.CSV", 1, 15)]


def test_an_adapter_saved_without_an_encoding_keeps_the_one_it_was_trained_with():
    from lora_router.encoding import encoding_of
    from lora_router.errors import ConfigError

    tokenizer = load_tokenizer(tokenizer_files_dir())
    assert encoding_of(None) == {"lowercase": False}
    assert TextEncoder.for_adapter(tokenizer, 32, None).lowercase is False
    assert TextEncoder.for_adapter(tokenizer, 32, {"lowercase": True}).lowercase is True
    with pytest.raises(ConfigError, match="upgrade lora-router or retrain"):
        encoding_of({"lowercase": True, "strip_accents": True})


@pytest.mark.slow
def test_the_hub_records_the_encoding_and_an_old_hub_loads_without_lowercasing(tiny_base, trained_hub, tmp_path):
    import json
    import shutil
    import warnings

    from lora_router.backends.torch_peft import Router

    assert trained_hub.manifest("file_name_pick").encoding == {"lowercase": True}
    old = tmp_path / "old-hub"
    shutil.copytree(trained_hub.root, old)
    task_json = old / "file_name_pick" / "task.json"
    manifest = json.loads(task_json.read_text("utf-8"))
    del manifest["encoding"]
    task_json.write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new_router, old_router = Router(tiny_base, trained_hub), Router(tiny_base, old)
    text = "把Sales_2024.CSV导入Hive"
    unk = new_router.tokenizer.token_to_id("[UNK]")
    assert unk not in new_router.encoders["file_name_pick"].encode(text).input_ids
    assert unk in old_router.encoders["file_name_pick"].encode(text).input_ids
    assert old_router.predict("file_name_pick", text)["spans"] is not None


@pytest.mark.slow
def test_the_export_lowercases_as_the_hub_did_and_both_routers_agree(exported, torch_router):
    from transformers import AutoTokenizer

    from lora_router.backends.onnx import OnnxRouter

    texts = ["把Sales_2024.CSV导入Hive", "ODS层和DWD层有什么区别", "上传D:\\报表\\Q1.XLSX到平台", "ＳＱＬ全角ＣＳＶ"]
    onnx = OnnxRouter(exported.export, layout="merged", precision="fp32")
    for task, info in exported.manifest["tasks"].items():
        assert info["encoding"] == {"lowercase": True}
        assert onnx.encoders[task].lowercase and torch_router.encoders[task].lowercase
        ids = [e.input_ids for e in onnx.encoders[task].encode_batch(texts)]
        assert ids == [e.input_ids for e in torch_router.encoders[task].encode_batch(texts)]
        # the Transformers tokenizer saved beside each merged model gives the same ids
        hf = AutoTokenizer.from_pretrained(str(exported.export / "merged" / task))
        assert [hf(t)["input_ids"] for t in texts] == ids
    for task in ("question_classifier", "file_name_pick"):
        ours, ref = onnx.predict_batch(task, texts), torch_router.predict_batch(task, texts)
        if task == "file_name_pick":
            assert [r["spans"] for r in ours] == [r["spans"] for r in ref] or \
                [r["file_names"] for r in ours] == [r["file_names"] for r in ref]
        else:
            assert [r["predicted_label"] for r in ours] == [r["predicted_label"] for r in ref]

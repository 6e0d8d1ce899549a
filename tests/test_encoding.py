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
    from lora_router.results import extraction_result

    text = "把sales_2024.csv导入到ODS层"
    enc = encoder.encode(text)
    labels = bio_labels(enc, char_spans(text, ["sales_2024.csv", "ODS层"]))
    logits = np.full((len(labels), len(BIO_LABELS)), -5.0)
    for t, label in enumerate(labels):
        logits[t, label if label >= 0 else 0] = 5.0
    assert extraction_result(text, enc, logits)["file_names"] == ["sales_2024.csv"]

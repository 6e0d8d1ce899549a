"""File names cut at their real edges: the model marks which, the rules cut (tasks/filename_rules.py).

The scores here are made by hand: 0.9 on the characters "the model" marks,
0.1 elsewhere, so each test says exactly what the model saw.
"""

from __future__ import annotations

import numpy as np
import pytest

from lora_router.config import BIO_LABELS
from lora_router.tasks.filename_rules import extension_end, find_file_names, has_stem


def marked(text: str, *pieces: str, score: float = 0.9, rest: float = 0.1) -> list[float]:
    """Per-character scores: ``score`` on each piece (found left to right), ``rest`` elsewhere."""
    scores = [rest] * len(text)
    pos = 0
    for piece in pieces:
        start = text.index(piece, pos)
        scores[start : start + len(piece)] = [score] * len(piece)
        pos = start + len(piece)
    return scores


def names(text: str, *pieces: str) -> list[str]:
    return [text[s:e] for s, e in find_file_names(text, marked(text, *pieces))]


# ---------------------------------------------------------------- edges the model gets wrong, cut right
def test_the_ascii_run_around_a_marked_piece_belongs_to_the_name():
    text = "Q2_churn_analysis_draft2.docx 请帮我转成markdown"
    assert names(text, "urn_analysis_draft2.docx") == ["Q2_churn_analysis_draft2.docx"]
    assert names(text, "draft2") == ["Q2_churn_analysis_draft2.docx"]  # even the extension unmarked


def test_a_path_is_kept_whole():
    text = "把 /data/ods/wms/inbound_20240701.csv 重新拉一遍"
    assert names(text, "ds/wms/inbound_20240701.csv") == ["/data/ods/wms/inbound_20240701.csv"]
    text = "hdfs://cluster-b/user/bi/output/retention_cohort.csv 权限改成755"
    assert names(text, "retention") == ["hdfs://cluster-b/user/bi/output/retention_cohort.csv"]


def test_a_name_ends_with_its_extension_and_two_glued_names_are_two():
    text = "把/data/raw/user_log.parquet和orders.csv合并"
    # the model marks everything from the path on, as the demo adapter did
    assert names(text, "/data/raw/user_log.parquet和orders.csv合并") == ["/data/raw/user_log.parquet", "orders.csv"]
    assert names(text, "user_log", "orders") == ["/data/raw/user_log.parquet", "orders.csv"]


def test_chinese_letters_belong_to_a_stem_only_where_the_model_marks_them():
    text = "撤回刚才上传的直播间成交明细.xlsx，传错了"
    assert names(text, "直播间成交明细.xlsx") == ["直播间成交明细.xlsx"]
    assert names(text, "成交明细.xlsx") == ["成交明细.xlsx"]  # the model decides where a Chinese stem starts
    assert names(text, "直播间成交明细") == ["直播间成交明细.xlsx"]  # the extension joins the marked stem


def test_a_function_word_before_a_name_is_not_part_of_it_even_when_marked():
    assert names("帮我把sales_2024.csv导入到ODS层", "把sales_2024.csv") == ["sales_2024.csv"]
    assert names("从orders.csv里删掉重复行", "从orders.csv") == ["orders.csv"]
    assert names("把直播间成交明细.xlsx导入", "把直播间成交明细.xlsx") == ["直播间成交明细.xlsx"]
    assert names("下载用户留存分析.xlsx", "用户留存分析.xlsx") == ["用户留存分析.xlsx"]  # 用 begins names


def test_mixed_stems_and_windows_paths_with_chinese_folders():
    text = "我下载的 VIP客户清单_2024Q2.csv 少了手机号那列"
    assert names(text, "P客户清单_2024Q2.csv") == ["VIP客户清单_2024Q2.csv"]  # part of a run marked: all of it
    assert names(text, "客户清单_2024Q2.csv") == ["客户清单_2024Q2.csv"]  # a run the model leaves out stays out
    text = "D:\\工作\\对账\\2024年6月\\微信对账单.csv 导进去"
    assert names(text, "D:\\工作\\对账\\2024年6月\\微信对账单.csv") == ["D:\\工作\\对账\\2024年6月\\微信对账单.csv"]


def test_spaces_quotes_and_punctuation_end_a_name():
    assert names("看看 kafka-connect-hdfs.properties 哪里配错了", "看看 kafka-connect-hdfs.properties") == [
        "kafka-connect-hdfs.properties"]
    assert names("才上传的 直播间成交明细.xlsx", "的 直播间成交明细.xlsx") == ["直播间成交明细.xlsx"]
    assert names("把「商户资料_0702.xlsx」发给风控", "「商户资料_0702.xlsx」") == ["商户资料_0702.xlsx"]
    assert names("把 users.avro、orders.avro 转成 parquet", "users.avro、orders.avro") == ["users.avro", "orders.avro"]
    assert names("我这边有个 ZIP：raw_logs.zip，解压", "ZIP：raw_logs.zip，") == ["raw_logs.zip"]
    assert names("ZIP:raw_logs.zip", "ZIP:raw_logs.zip") == ["raw_logs.zip"]  # ':' only starts a path (D:\ s3://)
    assert names("删掉 orders.csv.", "orders.csv.") == ["orders.csv"]  # a full stop after the extension


def test_no_extension_or_no_stem_is_no_name():
    assert names("这里有个 .csv 后缀的文件打不开", ".csv") == []
    assert names("把 dwd.dwd_trade_order_di 这张表的数据备份一份", "dwd.dwd_trade_order_di") == []
    assert names("平台升级到 v4.1 之后", "v4.1") == []
    assert names("node 版本 18.20.3 可以跑吗", "18.20.3") == []
    assert names("ODS层接入新的数据源", "ODS层") == []


def test_nothing_is_found_where_the_model_marks_nothing():
    text = "把/data/raw/user_log.parquet和orders.csv合并"
    assert names(text) == []
    assert names(text, "orders") == ["orders.csv"]  # the model decides which names are there


def test_a_bracket_group_inside_a_stem_belongs_to_it():
    assert names("把附件里的 发票明细(5月).xlsx 导进财务库", "发票明细(5月).xlsx") == ["发票明细(5月).xlsx"]
    assert names("学生成绩单_高三(2)班.xlsx 导入", "学生成绩单_高三(2)班.xlsx") == ["学生成绩单_高三(2)班.xlsx"]
    assert names("市场部的 Campaign_FINAL(1).xlsx 对不上", "Campaign_FINAL(1).xlsx") == ["Campaign_FINAL(1).xlsx"]
    # brackets around a name are not part of it
    assert names("把(产品价格表2024.xlsx)里停售的删掉", "(产品价格表2024.xlsx)") == ["产品价格表2024.xlsx"]


def test_a_quoted_name_is_the_whole_quoted_text():
    text = "“Annual Review 2023.pptx” 里的数据要重新刷一遍"
    assert names(text, "Annual Review 2023.pptx") == ["Annual Review 2023.pptx"]
    assert names(text, "2023.pptx") == ["2023.pptx"]  # the model did not mark where the quote starts
    text = "《数据共享协议（盖章版）.pdf》扫描件已经传了"
    assert names(text, "数据共享协议（盖章版）.pdf") == ["数据共享协议（盖章版）.pdf"]
    # a quoted sentence is not a name, even when it ends with one
    text = "他说“先别导，等我改完 a.csv”"
    assert names(text, "先别导，等我改完 a.csv") == ["a.csv"]


def test_rules_on_their_own():
    assert extension_end("saved_model.tar.gz", 0, 18) == 18
    assert extension_end("orders.csv..", 0, 12) == 10
    assert extension_end("v3.2", 0, 4) is None
    assert has_stem("/data/a.csv") and not has_stem("./.csv") and has_stem("直播.xlsx")
    with pytest.raises(ValueError, match="scores has 2 values for a text of 3"):
        find_file_names("abc", [0.1, 0.2])


# ---------------------------------------------------------------- through the model's logits
def test_extraction_result_scores_each_name_by_its_tokens():
    from lora_router.core.results import extraction_result
    from lora_router.encoding import TextEncoder, bio_labels, char_spans, load_tokenizer
    from lora_router.modeling.base import tokenizer_files_dir

    encoder = TextEncoder(load_tokenizer(tokenizer_files_dir()), 64, lowercase=True)
    text = "把/data/raw/user_log.parquet和orders.csv合并"
    enc = encoder.encode(text)
    # the model is sure of "user_log" and "orders" only: the rules give the rest
    labels = bio_labels(enc, char_spans(text, ["user_log", "orders"]))
    logits = np.full((len(labels), len(BIO_LABELS)), -4.0)
    for t, label in enumerate(labels):
        logits[t, label if label >= 0 else 0] = 4.0
    result = extraction_result(text, enc, logits)
    assert result["file_names"] == ["/data/raw/user_log.parquet", "orders.csv"]
    for span in result["spans"]:
        assert text[span["start"] : span["end"]] == span["text"]
        assert 0.0 < span["score"] < 1.0  # unmarked tokens of the name lower its score

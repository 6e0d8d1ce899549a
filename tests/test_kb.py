"""question_answer: the knowledge-base file, TF-IDF retrieval, the no-answer threshold, the answerer,
overfit -> save -> reload."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from lora_router.errors import DataError
from lora_router.kb import (
    Answerer,
    AnswerSettings,
    CharTfidfIndex,
    check_knowledge_base,
    normalize_text,
    read_knowledge_base,
)
from lora_router.kb.decision import EXAMPLE_FEATURES, FEATURES, RESIDUAL_FEATURES
from lora_router.kb.index import char_ngrams, sum_bags
from lora_router.kb.threshold import fit_threshold

KB = [
    {"id": "ods-vs-dwd", "questions": ["ODS层和DWD层有什么区别", "ods跟dwd有啥不一样", "贴源层和明细层的差别"],
     "answer": "ODS是贴源层，DWD是明细层。"},
    {"id": "table-permission", "questions": ["怎么申请表的查询权限", "没有权限查订单表怎么办", "表权限在哪里申请"],
     "answer": "在数据地图找到表，点申请权限。"},
    {"id": "rerun-task", "questions": ["失败的调度任务怎么重跑", "昨晚的任务挂了如何重新运行", "补数据要怎么操作"],
     "answer": "在运维中心选中实例，点重跑。"},
    {"id": "upload-limit", "question": "上传文件的大小限制是多少", "answer": "单个文件不超过500MB。"},
]
NEW_ENTRY = {"id": "lineage", "questions": ["在哪里看字段的血缘关系"], "answer": "在数据地图的血缘页查看。"}
OFF_TOPIC = "周末去哪儿吃火锅好呢"


def _write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def _records(rows):
    return [{"instruction": "问题回答", "input": q, "output": a} for q, a in rows]


# ------------------------------------------------------------ the file


def test_check_knowledge_base_names_each_bad_line(tmp_path):
    path = tmp_path / "kb.jsonl"
    lines = [
        json.dumps(KB[0], ensure_ascii=False),                                  # 1 fine
        "{not json",                                                            # 2
        json.dumps({"id": "a", "answer": "x"}),                                 # 3 no question
        json.dumps({"id": "b", "question": 3, "answer": "x"}),                  # 4 non-string question
        json.dumps({"id": "c", "question": "  ", "answer": "x"}),               # 5 empty question
        json.dumps({"id": "d", "question": "q?", "answer": ""}),                # 6 empty answer
        json.dumps({"id": "ods-vs-dwd", "question": "另一个问题", "answer": "x"}),  # 7 duplicate id
        json.dumps({"id": "e", "question": "ods层和dwd层有什么区别", "answer": "y"}),  # 8 phrasing of entry 1
        json.dumps({"id": 5, "question": "q", "answer": "x"}),                  # 9 non-string id
        json.dumps({"question": "q", "answer": "x"}),                           # 10 missing id
    ]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    problems = dict(check_knowledge_base(path))
    assert sorted(problems) == list(range(2, 11))
    assert "invalid JSON" in problems[2]
    assert "missing field 'question'" in problems[3]
    assert "'question' must be a string" in problems[4]
    assert "empty" in problems[5]
    assert "empty answer" in problems[6]
    assert "duplicate id 'ods-vs-dwd'" in problems[7] and "line 1" in problems[7]
    assert "ods-vs-dwd" in problems[8] and "line 1" in problems[8]
    assert "'id' must be a string" in problems[9]
    assert "missing field(s): id" in problems[10]
    with pytest.raises(DataError) as err:
        read_knowledge_base(path)
    assert [n for n, _ in err.value.problems] == list(range(2, 11))


def test_bundled_knowledge_base_is_valid():
    from lora_router.data import bundled_knowledge_base

    assert check_knowledge_base(bundled_knowledge_base()) == []
    assert len(read_knowledge_base(bundled_knowledge_base()).entries) >= 40


# ------------------------------------------------------------ retrieval


@pytest.mark.parametrize("analyzer,ngram_range,sublinear_tf",
                         [("char", (1, 2), True), ("char", (1, 3), False), ("char_wb", (1, 2), True)])
def test_tfidf_matches_scikit_learn(analyzer, ngram_range, sublinear_tf):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from lora_router.data import bundled_knowledge_base

    kb = read_knowledge_base(bundled_knowledge_base())
    texts = [q for e in kb.entries for q in e.questions]
    queries = ["ODS层和DWD层有什么区别？", "怎么 申请  权限\t啊", "ＳＱＬ查询超时", "xyz", "哈"]
    vec = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram_range, sublinear_tf=sublinear_tf,
                          preprocessor=normalize_text)
    matrix = vec.fit_transform(texts)
    expected = (vec.transform(queries) @ matrix.T).toarray()
    index = CharTfidfIndex(texts, analyzer=analyzer, ngram_range=ngram_range, sublinear_tf=sublinear_tf)
    got = np.stack([index.scores(q) for q in queries])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_same_size_edit_in_one_timestamp_tick_is_seen(tmp_path):
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    answerer = Answerer(path, top_k=3)
    assert NEW_ENTRY["id"] not in {e.id for e in answerer.knowledge_base.entries}
    st = os.stat(path)
    text = path.read_text("utf-8")
    first = KB[0]["id"]
    edited = text.replace(f'"{first}"', '"' + "z" * len(first) + '"', 1)  # same bytes, another id
    assert len(edited.encode()) == len(text.encode()) and edited != text
    path.write_text(edited, "utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as if within the same mtime tick
    now = os.stat(path)
    assert (now.st_mtime_ns, now.st_size, now.st_ino) == (st.st_mtime_ns, st.st_size, st.st_ino)
    assert "z" * len(first) in {e.id for e in answerer.knowledge_base.entries}


def test_answerer_rebuilds_index_when_the_file_changes(tmp_path):
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    answerer = Answerer(path, top_k=3)
    neutral = lambda pairs: np.zeros(len(pairs))  # noqa: E731  (a cross-encoder that knows nothing)
    assert answerer.answer(NEW_ENTRY["questions"][0], neutral)["kb_id"] != "lineage"
    _write_jsonl(path, KB + [NEW_ENTRY])
    result = answerer.answer(NEW_ENTRY["questions"][0], neutral)
    assert result["kb_id"] == "lineage" and result["answer"] == NEW_ENTRY["answer"]
    # An invalid edit keeps the last valid version and warns.
    path.write_text(path.read_text("utf-8") + "{oops\n", "utf-8")
    with pytest.warns(UserWarning, match="not valid"):
        assert answerer.answer(NEW_ENTRY["questions"][0], neutral)["kb_id"] == "lineage"



def test_char_run_ngrams_neither_match_nor_join_across_punctuation():
    grams = char_ngrams("ODS层，和 dwd_fin？", (1, 2), "char_run")
    assert "层，" not in grams and "层和" not in grams and "s层" in grams
    assert {"dwd", "fin"} & set(grams) == set() and "dw" in grams and "fi" in grams  # '_' cuts a run
    assert all(g.strip() and "，" not in g and "?" not in g for g in grams)


def test_char_run_words_keeps_a_latin_word_whole_and_cjk_in_ngrams():
    grams = char_ngrams("MySQL的索引，dwd_fin OOM了", (1, 2), "char_run_words")
    assert {"mysql", "dwd", "fin", "oom"} <= set(grams)
    assert not {"m", "my", "l的", "oo"} & set(grams)  # no letter n-grams, nothing joins a word to CJK
    assert {"的", "索引", "的索", "了"} <= set(grams)
    assert {"mysql的", "oom了"} <= set(grams)  # a word joined to its CJK neighbour, as in ODS层


def test_an_english_question_does_not_match_english_text_by_its_letters():
    """Under char_run any English question matched the entry with the most English by shared letters."""
    texts = ["任务报OOM怎么办？ Java heap space, Container killed by YARN for exceeding memory limits",
             "在哪里看表的血缘关系？"]
    question = "how to cook pasta al dente"
    by_letters = CharTfidfIndex(texts, analyzer="char_run", unknown_query_ngrams=True).scores(question)
    by_words = CharTfidfIndex(texts, analyzer="char_run_words", unknown_query_ngrams=True).scores(question)
    assert by_letters[0] > 0.2 and by_words.max() == 0.0
    assert CharTfidfIndex(texts, analyzer="char_run_words").scores("java heap space 报错")[0] > 0.3


def test_leaving_a_phrasing_out_scores_as_an_index_built_without_it():
    """``scores_with`` (training's leave-one-out) equals rebuilding the index, idf included."""
    bag = CharTfidfIndex([], analyzer="char_run").bag
    entries = [[bag(q) for q in e.get("questions", [e.get("question")])] + [bag(e["answer"])] for e in KB]
    docs = [sum_bags(b) for b in entries]
    for unknown in (True, False):
        full = CharTfidfIndex.from_bags(docs, analyzer="char_run", unknown_query_ngrams=unknown)
        for e, bags in enumerate(entries):
            for i in range(len(bags) - 1):  # leave out each phrasing in turn (never the answer)
                left = sum_bags(b for j, b in enumerate(bags) if j != i)
                rebuilt = CharTfidfIndex.from_bags(docs[:e] + [left] + docs[e + 1 :], analyzer="char_run",
                                                   unknown_query_ngrams=unknown)
                query = (KB[e].get("questions") or [KB[e]["question"]])[i]
                np.testing.assert_allclose(full.scores_with(query, {e: left}), rebuilt.scores(query), atol=1e-12)


def test_unknown_ngrams_of_the_question_lower_its_score():
    texts = ["怎么申请表的查询权限", "失败的调度任务怎么重跑"]
    question = "周末怎么去爬山"  # shares only 怎么 with the knowledge base
    plain = CharTfidfIndex(texts, analyzer="char_run").scores(question).max()
    strict = CharTfidfIndex(texts, analyzer="char_run", unknown_query_ngrams=True).scores(question).max()
    assert strict < plain / 2


def test_entry_is_found_by_its_answer_text(tmp_path):
    """A question worded like the answer, sharing nothing with the phrasings, finds the entry."""
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    neutral = lambda pairs: np.zeros(len(pairs))  # noqa: E731
    question = "选中实例"  # words of rerun-task's answer, in no phrasing
    assert Answerer(path).answer(question, neutral)["candidates"][0]["id"] == "rerun-task"
    assert all(c.retrieval == 0.0 for c in Answerer(path, index_answers=False).retrieve(question))


def test_leaving_out_the_question_itself_still_retrieves_its_entry(tmp_path):
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    answerer = Answerer(path, top_k=len(KB))
    question = KB[0]["questions"][0]
    candidates = answerer.retrieve(question, exclude={question})
    own = next(c for c in candidates if c.entry.id == KB[0]["id"])
    assert question not in own.phrasings and own.phrasings
    assert own.retrieval < answerer.retrieve(question)[0].retrieval
    # An entry whose only phrasing is left out has nothing to pair the question with: it is skipped.
    single = KB[3]["question"]
    assert "upload-limit" not in [c.entry.id for c in answerer.retrieve(single, exclude={single})]



def test_a_question_retrieved_without_its_own_phrasing_is_decided_without_it_too(tmp_path):
    """Cross-validation decides a held-out training question from candidates retrieved with its own phrasing left
    out; what the top entry leaves over must then leave it out too, or the residual model sees a question its
    entry holds word for word and CV overstates how sure the decision is (issue 20)."""
    from lora_router.kb.answerer import left_over, rank

    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    answerer = Answerer(path, top_k=len(KB))
    question = KB[0]["questions"][1]  # "ods跟dwd有啥不一样": "啥" and "一样" are in no other phrasing or the answer
    held_out = answerer.retrieve(question, exclude={question})
    ranked = rank(held_out, np.zeros(sum(len(c.phrasings) for c in held_out)), 0.0)
    assert ranked[0]["id"] == "ods-vs-dwd"
    assert {"啥", "一样"} <= set(left_over(ranked, held_out, answerer.settings))
    # The same question asked for real is the entry's own phrasing: nothing is left over.
    asked = answerer.retrieve(question)
    assert left_over(rank(asked, np.zeros(sum(len(c.phrasings) for c in asked)), 0.0), asked,
                     answerer.settings) == []
def test_fit_threshold_weighs_both_kinds_of_question_equally():
    # 8 answerable questions, 2 without an answer; plain accuracy would answer everything.
    confidences = [0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.3, 0.2, 0.25, 0.1]
    no_answer = [False] * 8 + [True] * 2
    fit = fit_threshold(confidences, no_answer)
    assert 0.2 < fit["threshold"] <= 0.25 or 0.25 < fit["threshold"] <= 0.3
    assert fit["no_answer_recall"] == 1.0 and fit["answered"] == 0.875
    assert fit["n_no_answer"] == 2 and fit["n_answerable"] == 8
    assert fit_threshold([0.3, 0.4], [False, False]) is None


def test_adapter_trained_before_answer_indexing_keeps_its_retrieval(tmp_path):
    """A manifest without the newer settings means what it meant when that adapter was evaluated."""
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    old = {"knowledge_base": {"path": str(path), "threshold": 0.4, "top_k": 5, "pairs_per_entry": 2,
                              "relevance_weight": 0.5, "analyzer": "char", "ngram_range": [1, 2],
                              "sublinear_tf": True}}
    settings = Answerer.from_saved(old["knowledge_base"], tmp_path).settings
    assert not settings.index_answers and not settings.unknown_query_ngrams and settings.analyzer == "char"
    assert Answerer(path).settings.index_answers  # a new answerer indexes answers

def test_decision_features_are_computed_as_documented(tmp_path):
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    answerer = Answerer(path, top_k=2, analyzer="char_run", ngram_range=(1, 2))
    question = "ods层和dwd层有什么区别呀"  # 呀, 别呀 are in no phrasing or answer
    own = KB[0]["questions"][0]
    candidates = answerer.retrieve(question, exclude={own})
    logits = np.array([2.0, 1.0, -1.0, -3.0][: sum(len(c.phrasings) for c in candidates)])
    f = answerer.features(candidates, logits)
    assert list(f) == list(FEATURES)
    ranked = answerer.decide(candidates, logits)["candidates"]
    assert f["confidence"] == pytest.approx(ranked[0]["score"], abs=1e-6)
    assert f["gap"] == pytest.approx(ranked[0]["score"] - ranked[1]["score"], abs=2e-6)
    top = candidates[0]
    assert top.entry.id == "ods-vs-dwd" and f["retrieval"] == top.retrieval
    assert f["relevance"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    grams = set(char_ngrams(question, (1, 2), "char_run"))
    held = set()
    for text in [*(q for q in KB[0]["questions"] if q != own), KB[0]["answer"]]:
        held |= set(char_ngrams(text, (1, 2), "char_run"))
    assert f["coverage"] == pytest.approx(len(grams & held) / len(grams))
    known = set()
    for e in KB:
        for text in [*e.get("questions", [e.get("question")]), e["answer"]]:
            if text != own:
                known |= set(char_ngrams(text, (1, 2), "char_run"))
    assert f["unknown"] == pytest.approx(len(grams - known) / len(grams)) and f["unknown"] > 0


def test_decision_model_separates_the_kinds_and_round_trips_through_json(tmp_path):
    from lora_router.kb import AnswerSettings
    from lora_router.kb.decision import answer_probability, fit_decision

    rng = np.random.default_rng(0)
    rows, no_answer = [], []
    for i in range(80):
        none = i % 4 == 0
        rows.append({"confidence": rng.uniform(0.0, 0.3) if none else rng.uniform(0.2, 0.9),
                     "relevance": rng.uniform(0, 1), "retrieval": rng.uniform(0, 1), "gap": rng.uniform(0, 0.2),
                     "coverage": rng.uniform(0.1, 0.5) if none else rng.uniform(0.4, 1.0),
                     "unknown": rng.uniform(0.3, 0.8) if none else rng.uniform(0.0, 0.4)})
        no_answer.append(none)
    model = fit_decision(rows, no_answer)
    p = np.array([answer_probability(model, r) for r in rows])
    assert ((p < model["cutoff"]) == np.array(no_answer)).mean() >= 0.95
    settings = AnswerSettings(decision=model)
    back = AnswerSettings.from_json(json.loads(json.dumps(settings.to_json())))
    assert back == settings and [answer_probability(back.decision, r) for r in rows] == p.tolist()
    assert fit_decision(rows, [False] * len(rows)) is None


def test_an_adapter_saved_before_the_decision_model_keeps_its_threshold(tmp_path):
    """An old task.json has no ``decision``: the answer and confidence are the threshold's, as before."""
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    old = {"path": str(path), "threshold": 0.4, "top_k": 3, "pairs_per_entry": 2, "relevance_weight": 0.5,
           "analyzer": "char_run", "ngram_range": [1, 2], "sublinear_tf": True, "index_answers": True,
           "unknown_query_ngrams": True}
    answerer = Answerer.from_saved(old, tmp_path)
    assert answerer.settings.decision is None
    for question, logit in [("ods跟dwd区别", 3.0), (OFF_TOPIC, -3.0), ("上传文件多大", 0.0)]:
        candidates = answerer.retrieve(question)
        logits = np.full(sum(len(c.phrasings) for c in candidates), logit)
        result = answerer.decide(candidates, logits)
        top = result["candidates"][0]["score"] if result["candidates"] else 0.0
        assert result["confidence"] == top
        assert (result["kb_id"] is not None) == (top >= 0.4)


def _examples_settings(tmp_path, examples):
    """Settings whose decision reads ``no_answer_similarity`` alone (to see it move the answer) and the KB path."""
    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    names = [*FEATURES, *EXAMPLE_FEATURES]
    decision = {"kind": "logistic", "features": names, "mean": [0.0] * len(names), "scale": [1.0] * len(names),
                "coef": [0.0] * len(FEATURES) + [-20.0], "intercept": 10.0, "cutoff": 0.5,
                "no_answer_examples": list(examples)}
    return path, AnswerSettings(analyzer="char_run_words", decision=decision)


def test_a_question_like_a_known_question_without_an_answer_gets_none(tmp_path):
    from lora_router.kb.answerer import decision_examples
    from lora_router.kb.examples import NoAnswerExamples

    examples = ["平台有暗黑模式吗", "周末去哪儿吃火锅好呢"]
    index = NoAnswerExamples(examples, analyzer="char_run_words", ngram_range=(1, 2), sublinear_tf=True,
                             unknown_query_ngrams=True)
    assert index.similarity("平台有暗黑模式吗") == pytest.approx(1.0)
    assert index.similarity("平台有暗黑模式吗", exclude={"平台有暗黑模式吗"}) < 0.5  # fitting leaves itself out
    assert index.similarity("ods跟dwd区别") == 0.0
    path, settings = _examples_settings(tmp_path, examples)
    answerer = Answerer(path, settings)
    assert decision_examples(answerer.settings).questions == examples
    logits = lambda c: np.zeros(sum(len(x.phrasings) for x in c))  # noqa: E731
    like = answerer.retrieve("平台界面有暗黑模式吗")
    assert answerer.features(like, logits(like))["no_answer_similarity"] > 0.5
    assert answerer.decide(like, logits(like))["kb_id"] is None
    unlike = answerer.retrieve("ods层和dwd层有什么区别")
    assert answerer.features(unlike, logits(unlike))["no_answer_similarity"] < 0.1  # 有 alone is shared
    assert answerer.decide(unlike, logits(unlike))["kb_id"] == "ods-vs-dwd"


def test_an_example_the_knowledge_base_grew_to_answer_is_not_compared_with(tmp_path):
    path, settings = _examples_settings(tmp_path, ["平台有暗黑模式吗"])
    answerer = Answerer(path, settings)
    question = "平台有暗黑模式吗"
    before = answerer.retrieve(question)
    assert answerer.features(before, np.zeros(sum(len(c.phrasings) for c in before)))["no_answer_similarity"] > 0.9
    _write_jsonl(path, KB + [{"id": "dark-mode", "questions": [question], "answer": "有，在头像菜单里切换。"}])
    os.utime(path, ns=(1, 10**18))
    after = answerer.retrieve(question)
    logits = np.zeros(sum(len(c.phrasings) for c in after))
    assert answerer.features(after, logits)["no_answer_similarity"] == 0.0
    assert answerer.decide(after, logits)["kb_id"] == "dark-mode"


def test_fitting_saves_its_questions_without_an_answer_as_the_decisions_examples(tmp_path):
    from lora_router.kb.fitting import fit_answer_settings

    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    answerer = Answerer(path, analyzer="char_run_words")
    questions = [*(q for e in KB[:3] for q in e["questions"]), "今天天气怎么样", "讲个笑话", "今天天气怎么样呀"]
    gold = [*(e["id"] for e in KB[:3] for _ in e["questions"]), None, None, None]
    candidates = [answerer.retrieve(q, exclude={q}) for q in questions]
    logits = [np.zeros(sum(len(x.phrasings) for x in c)) for c in candidates]
    fitted, _ = fit_answer_settings(answerer.settings, candidates, logits, gold, 0.5)
    assert fitted.decision["features"] == [*FEATURES, *EXAMPLE_FEATURES, *RESIDUAL_FEATURES]
    assert set(fitted.decision["residual_model"]) == {"idf", "coef", "intercept"}
    assert fitted.decision["no_answer_examples"] == ["今天天气怎么样", "讲个笑话", "今天天气怎么样呀"]
    old, _ = fit_answer_settings(answerer.settings, candidates, logits, gold, 0.5, with_examples=False,
                                 with_residual=False)
    assert old.decision["features"] == list(FEATURES) and "no_answer_examples" not in old.decision


def test_a_decision_saved_before_the_examples_decides_as_it_did(tmp_path):
    """A decision without ``no_answer_similarity`` (saved before issue 20) reads the six ranking features only."""
    from lora_router.kb.decision import answer_probability

    path = tmp_path / "kb.jsonl"
    _write_jsonl(path, KB)
    n = len(FEATURES)
    old = {"kind": "logistic", "features": list(FEATURES), "mean": [0.2] * n, "scale": [0.1] * n,
           "coef": [0.5, 0.1, 0.8, 0.3, 1.2, -0.9], "intercept": -0.4, "cutoff": 0.5}
    answerer = Answerer.from_saved({"path": str(path), "decision": old, "analyzer": "char_run",
                                    "index_answers": True, "unknown_query_ngrams": True}, tmp_path)
    for question in ("ods跟dwd区别", OFF_TOPIC, "上传文件多大"):
        candidates = answerer.retrieve(question)
        logits = np.full(sum(len(c.phrasings) for c in candidates), 1.0)
        features = answerer.features(candidates, logits)
        assert list(features) == list(FEATURES)
        expected = round(answer_probability(old, features), 6)
        result = answerer.decide(candidates, logits)
        assert result["confidence"] == expected and (result["kb_id"] is not None) == (expected >= 0.5)


@pytest.mark.parametrize("extra, carried", [(EXAMPLE_FEATURES, "no_answer_examples"),
                                            (RESIDUAL_FEATURES, "residual_model")])
def test_a_decision_reading_a_fitted_feature_must_carry_what_it_reads(extra, carried):
    """A decision listing no_answer_similarity needs its examples; residual_answerable, its model."""
    from lora_router.errors import ConfigError

    n = len(FEATURES) + len(extra)
    decision = {"features": [*FEATURES, *extra], "mean": [0.0] * n, "scale": [1.0] * n, "coef": [0.0] * n,
                "intercept": 0.0, "cutoff": 0.5}
    with pytest.raises(ConfigError, match=carried):
        AnswerSettings(decision=decision)


# ------------------------------------------------------------ overfit -> save -> reload


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny random base and a question_answer adapter overfit on a 4-entry knowledge base."""
    from lora_router.adapters import AdapterHub
    from lora_router.config import TrainSettings
    from lora_router.modeling import init_base
    from lora_router.tasks import get_task
    from lora_router.training import train

    root = tmp_path_factory.mktemp("kbqa")
    base = init_base(root / "base", "tiny")
    kb_path = root / "kb.jsonl"
    _write_jsonl(kb_path, KB)
    rows = [(q, e["answer"]) for e in KB for q in e.get("questions", [e.get("question")])]
    rows += [("今天天气怎么样", ""), ("讲个笑话", ""), ("平台有暗黑模式吗", "")]
    _write_jsonl(root / "train.jsonl", _records(rows))
    test = [("ods和dwd的区别", KB[0]["answer"]), ("表的权限怎么申请", KB[1]["answer"]), ("明天会下雨吗", "")]
    _write_jsonl(root / "test.jsonl", _records(test))
    # The question classifier's data, as a team passes it: its questions outside the platform are more examples.
    outside = [("周末去爬山还是看电影", "无关问题"), ("Python的列表和元组有什么区别", "通用问题"),
               ("明天会下雨吗", "无关问题"),  # a test question: never an example
               ("表的权限怎么申请", "数据平台相关问题")]  # a platform question: no example
    _write_jsonl(root / "classifier.jsonl",
                 [{"instruction": "问题场景分类", "input": q, "output": label} for q, label in outside])
    hub = AdapterHub(root / "hub")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest = train(get_task("question_answer"), base_model=str(base), hub=hub, data=root / "train.jsonl",
                         test_data=root / "test.jsonl", knowledge_base=kb_path, progress=False,
                         no_answer_examples=root / "classifier.jsonl",
                         settings=TrainSettings(epochs=4, learning_rate=5e-3, warmup_steps=5, batch_size=16))
    return {"base": base, "hub": hub, "kb": kb_path, "manifest": manifest, "root": root}


@pytest.fixture(scope="module")
def router(trained):
    from lora_router.backends.torch_peft import Router
    from lora_router.core import Chain

    chain = Chain.from_dict({"start": "question_answer",
                             "steps": [{"task": "question_answer", "route": "answer"}]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Router(str(trained["base"]), trained["hub"], chain=chain)


def test_manifest_records_the_knowledge_base(trained):
    info = trained["manifest"].knowledge_base
    assert info["n_entries"] == len(KB)
    assert info["sha256"] == read_knowledge_base(trained["kb"]).sha256
    assert info["ngram_range"] == [1, 2] and info["index_answers"]
    # The threshold was fitted on the training split: 10 phrasings left out one by one, 3 off-topic questions.
    assert info["threshold"] == info["threshold_fit"]["threshold"]
    # ... and the decision model that answers in its place, as plain numbers a torch-free runtime reads.
    assert info["decision"]["features"] == [*FEATURES, *EXAMPLE_FEATURES, *RESIDUAL_FEATURES]
    assert info["decision"]["cutoff"] == 0.5
    assert len(info["decision"]["coef"]) == len(FEATURES) + len(EXAMPLE_FEATURES) + len(RESIDUAL_FEATURES)
    # ... with the training questions without an answer it compares a question with, as text, and the
    # questions outside the platform of --no-answer-examples (not the test split's, not the platform's).
    assert info["decision"]["no_answer_examples"] == ["今天天气怎么样", "讲个笑话", "平台有暗黑模式吗",
                                                      "周末去爬山还是看电影", "Python的列表和元组有什么区别"]
    assert info["threshold_fit"]["extra_no_answer_examples"] == 2
    assert info["relevance_weight"] == info["threshold_fit"]["relevance_weight"] <= 0.5  # fitted, never raised
    assert info["threshold_fit"]["n_answerable"] == 10 and info["threshold_fit"]["n_no_answer"] == 3
    assert {"top1", "mrr", "no_answer_precision", "no_answer_recall"} <= set(trained["manifest"].metrics)


def test_reloaded_router_ranks_as_before_saving(trained, router):
    """The ranking at training time (evaluate) equals the ranking after reloading from the hub."""
    import torch

    from lora_router.data import read_records
    from lora_router.data.no_answer import read_no_answer_examples
    from lora_router.encoding import TextEncoder, encoding_of
    from lora_router.modeling.base import load_base
    from lora_router.tasks import get_task
    from lora_router.training.ranking import RankingTask

    spec = get_task("question_answer")
    # The saved adapter as a freshly built PEFT model + head, scored through RankingTask (training's path).
    from peft import PeftModel

    from lora_router.modeling.heads import TaskHead

    base, tokenizer = load_base(str(trained["base"]))
    folder = trained["hub"].task_dir("question_answer")
    model = PeftModel.from_pretrained(base, str(folder))
    head = TaskHead(spec, base.config.hidden_size, 0.0).load(folder)
    test = read_records(trained["root"] / "test.jsonl")
    job = RankingTask(spec, trained["kb"], read_records(trained["root"] / "train.jsonl"), test,
                      TextEncoder(tokenizer, 128, **encoding_of(trained["manifest"].encoding)), seed=0,
                      no_answer_examples=read_no_answer_examples(trained["root"] / "classifier.jsonl"))
    with torch.no_grad():
        metrics = job.evaluate(model, head)  # fits the threshold on the training split first
        before = job.predict(model, head)
    assert metrics["mrr"] == trained["manifest"].metrics["mrr"]
    saved = trained["manifest"].knowledge_base
    assert job.answerer.settings.threshold == saved["threshold"]
    assert job.answerer.settings.relevance_weight == saved["relevance_weight"]
    assert job.answerer.settings.decision == saved["decision"]
    after = router.predict_batch("question_answer", [r.input for r in test])
    for b, a in zip(before, after, strict=True):
        assert [c["id"] for c in b["candidates"]] == [c["id"] for c in a["candidates"]]
        np.testing.assert_allclose([c["score"] for c in b["candidates"]], [c["score"] for c in a["candidates"]],
                                   atol=1e-5)
        assert b["kb_id"] == a["kb_id"]


def test_in_kb_phrasing_is_answered(router):
    for entry in KB:
        question = entry.get("question") or entry["questions"][0]
        result = router.predict("question_answer", question)
        assert result["kb_id"] == entry["id"], result
        assert result["answer"] == entry["answer"]


def test_entry_added_after_training_is_answered_without_retraining(trained, router, tmp_path):
    kb = tmp_path / "kb.jsonl"
    _write_jsonl(kb, KB)
    saved = router.manifests["question_answer"].knowledge_base
    answerer = Answerer.from_saved(saved, trained["hub"].task_dir("question_answer"), kb)
    score = lambda pairs: router.score_pairs("question_answer", pairs)  # noqa: E731
    question = NEW_ENTRY["questions"][0]
    assert answerer.answer(question, score)["kb_id"] != "lineage"
    _write_jsonl(kb, KB + [NEW_ENTRY])
    os.utime(kb, ns=(1, 10**18))  # a distinct mtime even on coarse-clock file systems
    result = answerer.answer(question, score)
    assert result["candidates"][0]["id"] == "lineage"
    assert result["kb_id"] == "lineage" and result["answer"] == NEW_ENTRY["answer"]


def test_off_topic_question_gets_no_answer(router):
    result = router.predict("question_answer", OFF_TOPIC)
    assert result["answer"] == "" and result["kb_id"] is None
    assert result["confidence"] < router.manifests["question_answer"].knowledge_base["decision"]["cutoff"]


def test_cross_validation_scores_every_training_question_once(trained, router):
    from lora_router.data import read_records
    from lora_router.evaluation.answering import cross_validate_answering

    train = read_records(trained["root"] / "train.jsonl")
    for with_decision in (True, False):
        cv = cross_validate_answering(router, "question_answer", train, folds=3, with_decision=with_decision)
        assert cv["n"] == len(train) and sum(f["n"] for f in cv["folds"]) == len(train)
        assert cv["decision"] == ("logistic" if with_decision else "threshold")
        assert 0.0 <= cv["no_answer_recall"] <= 1.0


def test_holdout_scores_the_other_split_with_a_decision_fitted_on_train(trained, router):
    from lora_router.data import read_records
    from lora_router.evaluation.answering import cross_validate_answering, holdout_answering

    train, test = read_records(trained["root"] / "train.jsonl"), read_records(trained["root"] / "test.jsonl")
    held = holdout_answering(router, "question_answer", train, test)
    assert held["n"] == len(test) and held["decision"] == "logistic"
    assert held["analyzer"] == router.answerer("question_answer").settings.analyzer
    other = AnswerSettings(analyzer="char")  # another retrieval, measured with the same cross-encoder
    assert holdout_answering(router, "question_answer", train, test, settings=other)["analyzer"] == "char"
    assert cross_validate_answering(router, "question_answer", train, folds=3, settings=other)["analyzer"] == "char"


def test_ask_answer_route_returns_the_answer(router):
    out = router.ask(KB[2]["questions"][1])
    assert out["route"] == "answer"
    assert out["answer"] == KB[2]["answer"]
    off = router.ask(OFF_TOPIC)
    assert off["route"] == "answer" and off["answer"] is None and "no knowledge-base entry" in off["note"]


def test_kb_override_and_missing_recorded_kb(trained, tmp_path):
    from lora_router.errors import ConfigError

    saved = json.loads(json.dumps(trained["manifest"].knowledge_base))
    task_dir = trained["hub"].task_dir("question_answer")
    saved["path"] = str(tmp_path / "gone.jsonl")
    with pytest.raises(ConfigError, match="no longer exists.*--kb FILE"):
        Answerer.from_saved(saved, task_dir, None)
    from lora_router.data import bundled_knowledge_base
    from lora_router.kb import file_sha256

    saved["sha256"] = file_sha256(bundled_knowledge_base())
    assert Answerer.from_saved(saved, task_dir, None).path == bundled_knowledge_base()
    assert Answerer.from_saved(saved, task_dir, trained["kb"]).path == trained["kb"]


# ------------------------------------------------------------ more examples of questions without an answer


def test_bundled_no_answer_examples_are_the_classifiers_questions_outside_the_platform():
    from lora_router.data import load_bundled
    from lora_router.data.no_answer import read_no_answer_examples

    examples = read_no_answer_examples("bundled")
    records = load_bundled("question_classifier", "train")
    outside = {r.input for r in records if r.output in ("通用问题", "无关问题")}
    assert set(examples) == outside and len(examples) == len(outside)
    assert read_no_answer_examples("none") == [] and read_no_answer_examples(None) == []


def test_no_answer_examples_file_takes_questions_without_an_answer_and_refuses_a_file_without_any(tmp_path):
    from lora_router.data.no_answer import read_no_answer_examples
    from lora_router.errors import ConfigError

    mixed = tmp_path / "qa.jsonl"
    _write_jsonl(mixed, _records([("ods和dwd的区别", KB[0]["answer"]), ("讲个笑话", ""), ("讲个笑话", "")]))
    assert read_no_answer_examples(mixed) == ["讲个笑话"]
    answered = tmp_path / "answered.jsonl"
    _write_jsonl(answered, _records([("ods和dwd的区别", KB[0]["answer"])]))
    with pytest.raises(ConfigError, match="answered.jsonl.*no record has output"):
        read_no_answer_examples(answered)


def test_cross_validation_never_compares_a_question_with_itself_among_the_extra_examples(trained, router):
    """An extra example identical to a training question without an answer would be a leak in the CV."""
    from lora_router.data import read_records
    from lora_router.evaluation.answering import cross_validate_answering

    train = read_records(trained["root"] / "train.jsonl")
    own = [r.input for r in train if r.output == ""]
    with_copies = cross_validate_answering(router, "question_answer", train, folds=3, extra_examples=own)
    without = cross_validate_answering(router, "question_answer", train, folds=3)
    assert with_copies["no_answer_recall"] == without["no_answer_recall"]
    assert with_copies["no_answer_precision"] == without["no_answer_precision"]


# ------------------------------------------------------------ the n-grams the top entry leaves over


def test_residual_model_reads_what_the_entry_leaves_over_and_a_new_entry_takes_its_words_back(tmp_path):
    from lora_router.kb.file import Entry
    from lora_router.kb.residual import fit_residual, residual_grams, residual_probability

    entry = Entry(id="backfill", questions=("怎么补数据", "补历史分区的数据"), answer="在运维中心选择补数据，选日期范围。")
    grams = residual_grams("补数据能暂停吗", entry, "char_run_words", (1, 2))
    assert "暂停" in grams and "补数" not in grams
    # Questions that leave over what they ask about have no answer; those leaving over small words have one.
    docs = [["暂停"], ["暂停", "吗"], ["回滚"], ["回滚", "吗"], ["静默"], ["静默", "吗"],
            ["啥"], ["一下"], ["啥", "一下"], ["吗"], ["啥"], ["一下"]]
    answerable = [False] * 6 + [True] * 6
    model, out_of_fold = fit_residual(docs, answerable)
    assert residual_probability(model, ["暂停"]) < 0.5 < residual_probability(model, ["啥"])
    assert out_of_fold.shape == (12,) and ((0 < out_of_fold) & (out_of_fold < 1)).all()
    # An entry that later holds "暂停" leaves nothing over: the model cannot hold it back for its topic.
    grown = Entry(id="pause", questions=("补数据能暂停吗",), answer="可以暂停。")
    assert residual_probability(model, residual_grams("补数据能暂停吗", grown, "char_run_words", (1, 2))) == \
        residual_probability(model, [])


def test_residual_model_learns_from_what_a_question_leaves_over_against_a_wrong_entry():
    import pytest

    from lora_router.kb.residual import fit_residual, residual_probability

    # Answerable questions leave over small words against their own entry. Against another entry they leave
    # over their topic's words ("分区", "告警"): rows without an answer that only the wrong-entry rows supply.
    docs = [["啥"], ["一下"], ["吗"], ["啥", "吗"], ["一下", "吗"], ["暂停"], ["回滚"], ["暂停", "吗"]]
    answerable = [True] * 5 + [False] * 3
    wrong = [["分区", "啥"], ["分区"], ["告警", "吗"], ["告警"], ["分区", "告警"]]
    without, _ = fit_residual(docs, answerable)
    model, out_of_fold = fit_residual(docs, answerable, wrong_entry_docs=wrong, made_from=[0, 1, 2, 3, 4])
    assert "分区" not in without["coef"]
    assert residual_probability(model, ["分区"]) < 0.5 < residual_probability(model, ["啥"])
    assert out_of_fold.shape == (8,)  # one probability per question, none for the wrong-entry rows
    with pytest.raises(ValueError, match="wrong-entry rows"):
        fit_residual(docs, answerable, wrong_entry_docs=wrong, made_from=[0])


def test_a_logistic_fit_with_more_columns_than_rows_reaches_the_penalised_optimum():
    import numpy as np

    from lora_router.kb.decision import newton_logistic

    # The residual model's shape: a few thousand sparse n-gram columns, a few hundred questions, an
    # unpenalised intercept. Each step is solved in the rows' dimension; the result must still be the
    # optimum (zero gradient) and equal the full-dimension solve.
    rng = np.random.default_rng(0)
    n, v = 120, 400
    x = (rng.random((n, v)) < 0.03) * rng.random((n, v))
    z = np.c_[np.ones(n), x]
    y = (rng.random(n) < 0.4).astype(float)
    w = np.where(y == 1, 0.5 / y.sum(), 0.5 / (1 - y).sum())
    penalty = np.r_[0.0, np.full(v, 1.0 / n)]
    beta = newton_logistic(z, y, w, penalty, iterations=50, tol=1e-10, ridge=0.0)
    p = 1 / (1 + np.exp(-(z @ beta)))
    assert np.abs(z.T @ (w * (p - y)) + penalty * beta).max() < 1e-9
    tall = newton_logistic(z, y, w, penalty, iterations=50, tol=1e-10, ridge=1e-12)  # same problem
    square = np.linalg.solve((z * (w * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-12),
                             z.T @ (w * (p - y)) + penalty * tall)
    assert np.abs(square).max() < 1e-8  # a full-dimension Newton step from the result moves nothing

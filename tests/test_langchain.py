"""RouterBranch: each question goes to the runnable of its route, with the chain's result, sync and async, batched.

Route runnables are langchain-core's fake chat model behind a recorder; the
router is a small fake in most tests, and the session's real export in one.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import threading
import types
import warnings
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda

from lora_router.core.chain import ROUTES
from lora_router.errors import ConfigError, MissingExtraError
from lora_router.integrations.langchain import RouterBranch

DOCS = Path(__file__).resolve().parents[1] / "docs" / "langchain.md"

ROUTE_OF = {
    "数据清洗流程是什么？": "answer",
    "帮我把sales_2024.csv导入到ODS层": "task",
    "Python怎么给列表排序": "general",
    "周末去哪儿吃火锅": "out_of_scope",
    "那个东西怎么弄": "uncertain",
}


def chain_answer(question: str) -> dict:
    route = ROUTE_OF.get(question, "general")
    answer = {"question": question, "steps": [{"task": "question_classifier", "result": {}, "ms": 0.1}],
              "route": route, "file_names": ["sales_2024.csv"] if route == "task" else [],
              "answer": "先去重，再补缺失值。" if route == "answer" else None}
    if route == "uncertain":
        answer.update(uncertain_step="question_classifier", note="question_classifier was unsure")
    return answer


class FakeRouter:
    """What OnnxRouter and lora_router.client.Client give: ask and ask_batch; records every call and its thread."""

    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []
        self.threads: set[int] = set()

    def ask(self, question: str) -> dict:
        self.calls.append(("ask", [question]))
        self.threads.add(threading.get_ident())
        return chain_answer(question)

    def ask_batch(self, questions: list[str]) -> list[dict]:
        self.calls.append(("ask_batch", list(questions)))
        self.threads.add(threading.get_ident())
        return [chain_answer(q) for q in questions]


class FakeAsyncRouter(FakeRouter):
    """What lora_router.client.AsyncClient gives: coroutines."""

    async def ask(self, question: str) -> dict:
        return FakeRouter.ask(self, question)

    async def ask_batch(self, questions: list[str]) -> list[dict]:
        return FakeRouter.ask_batch(self, questions)


class Recorder(RunnableLambda):
    """Passes its input on; keeps every input and counts batch calls."""

    def __init__(self):
        self.inputs: list[dict] = []
        self.batches = 0
        super().__init__(self._keep, afunc=self._akeep)

    def _keep(self, x: dict) -> dict:
        self.inputs.append(x)
        return x

    async def _akeep(self, x: dict) -> dict:
        return self._keep(x)

    def batch(self, inputs, config=None, **kwargs):
        self.batches += 1
        return super().batch(inputs, config, **kwargs)

    async def abatch(self, inputs, config=None, **kwargs):
        self.batches += 1
        return await super().abatch(inputs, config, **kwargs)


def route_chain(route: str) -> tuple[Recorder, object]:
    """A recorder, then the question to a fake chat model that always replies '<route> reply'."""
    recorder = Recorder()
    return recorder, recorder | (lambda x: x["question"]) | FakeListChatModel(responses=[f"{route} reply"])


def branch(router, routes=ROUTES) -> tuple[RouterBranch, dict[str, Recorder]]:
    recorders, runnables = {}, {}
    for route in routes:
        recorders[route], runnables[route] = route_chain(route)
    return RouterBranch(router, **runnables), recorders


MIXED = ["帮我把sales_2024.csv导入到ODS层", "数据清洗流程是什么？", "周末去哪儿吃火锅",
         "帮我把sales_2024.csv导入到ODS层", "那个东西怎么弄", "Python怎么给列表排序", "数据清洗流程是什么？"]


def test_invoke_sends_each_question_to_the_chat_model_of_its_route_with_the_chains_result():
    router = FakeRouter()
    assistant, recorders = branch(router)
    for question, route in ROUTE_OF.items():
        assert assistant.invoke(question).content == f"{route} reply"
        assert recorders[route].inputs[-1] == {"question": question, "routing": chain_answer(question)}
    assert [name for name, _ in router.calls] == ["ask"] * len(ROUTE_OF)
    assert recorders["task"].inputs[0]["routing"]["file_names"] == ["sales_2024.csv"]
    assert recorders["answer"].inputs[0]["routing"]["answer"] == "先去重，再补缺失值。"
    assert recorders["uncertain"].inputs[0]["routing"]["uncertain_step"] == "question_classifier"


def test_a_dict_input_brings_its_other_keys_to_the_routes_runnable():
    assistant, recorders = branch(FakeRouter())
    assistant.invoke({"question": "周末去哪儿吃火锅", "history": ["你好"]})
    assert recorders["out_of_scope"].inputs == [{"question": "周末去哪儿吃火锅", "history": ["你好"],
                                                 "routing": chain_answer("周末去哪儿吃火锅")}]


def test_ainvoke_awaits_an_async_router():
    router = FakeAsyncRouter()
    assistant, recorders = branch(router)
    reply = asyncio.run(assistant.ainvoke("数据清洗流程是什么？"))
    assert reply.content == "answer reply"
    assert router.calls == [("ask", ["数据清洗流程是什么？"])]
    assert recorders["answer"].inputs[0]["routing"] == chain_answer("数据清洗流程是什么？")


def test_ainvoke_asks_a_sync_router_in_a_thread_so_the_event_loop_runs_on():
    router = FakeRouter()
    assistant, _ = branch(router)

    async def main():
        return await assistant.ainvoke("帮我把sales_2024.csv导入到ODS层"), threading.get_ident()

    reply, loop_thread = asyncio.run(main())
    assert reply.content == "task reply"
    assert router.threads and loop_thread not in router.threads


def test_batch_asks_the_router_once_and_each_routes_runnable_once_in_input_order():
    router = FakeRouter()
    assistant, recorders = branch(router)
    replies = assistant.batch(MIXED)
    assert [r.content for r in replies] == [f"{ROUTE_OF[q]} reply" for q in MIXED]
    assert router.calls == [("ask_batch", MIXED)]
    assert {route: r.batches for route, r in recorders.items()} == dict.fromkeys(ROUTES, 1)
    assert [x["question"] for x in recorders["task"].inputs] == [MIXED[0], MIXED[3]]


@pytest.mark.parametrize("router_type", [FakeAsyncRouter, FakeRouter], ids=["async router", "sync router"])
def test_abatch_asks_the_router_once_and_each_routes_runnable_once(router_type):
    router = router_type()
    assistant, recorders = branch(router)
    replies = asyncio.run(assistant.abatch(MIXED))
    assert [r.content for r in replies] == [f"{ROUTE_OF[q]} reply" for q in MIXED]
    assert router.calls == [("ask_batch", MIXED)]
    assert {route: r.batches for route, r in recorders.items()} == dict.fromkeys(ROUTES, 1)


def test_routes_sharing_default_share_one_batch_call():
    router = FakeRouter()
    answer, answer_chain = route_chain("answer")
    rest, rest_chain = route_chain("default")
    assistant = RouterBranch(router, answer=answer_chain, default=rest_chain)
    replies = assistant.batch(MIXED)
    assert [r.content for r in replies] == ["answer reply" if ROUTE_OF[q] == "answer" else "default reply"
                                            for q in MIXED]
    assert (answer.batches, rest.batches) == (1, 1)
    assert len(rest.inputs) == 5


def test_batch_with_return_exceptions_fails_only_the_questions_whose_runnable_failed():
    def refuse(x):
        raise RuntimeError("no tool for this")

    _, answer_chain = route_chain("answer")
    assistant = RouterBranch(FakeRouter(), answer=answer_chain, task=refuse, default=lambda x: "ok")
    out = assistant.batch(MIXED[:3], return_exceptions=True)
    assert isinstance(out[0], RuntimeError)
    assert out[1].content == "answer reply" and out[2] == "ok"


def test_stream_gives_the_chat_models_chunks_as_they_come():
    assistant, _ = branch(FakeRouter())
    chunks = list(assistant.stream("Python怎么给列表排序"))
    assert len(chunks) > 1 and "".join(c.content for c in chunks) == "general reply"

    async def astream():
        return [c async for c in assistant.astream("Python怎么给列表排序")]

    chunks = asyncio.run(astream())
    assert len(chunks) > 1 and "".join(c.content for c in chunks) == "general reply"


def test_tracing_sees_one_run_per_question_with_its_routes_runnable_and_the_routing_as_child():
    from langchain_core.tracers.context import collect_runs

    assistant, _ = branch(FakeRouter())
    with collect_runs() as runs:
        assistant.batch(MIXED[:3])
    assert [r.name for r in runs.traced_runs] == ["RouterBranch"] * 3
    assert [[c.inputs["routing"]["route"] for c in r.child_runs] for r in runs.traced_runs] == \
        [["task"], ["answer"], ["out_of_scope"]]


def test_a_missing_route_is_an_error_when_the_branch_is_built_naming_the_route():
    _, chain = route_chain("x")
    with pytest.raises(ConfigError, match=r"no runnable for route\(s\) out_of_scope, uncertain; fix: give "
                                          r"out_of_scope=, uncertain= or default="):
        RouterBranch(FakeRouter(), answer=chain, task=chain, general=chain)
    RouterBranch(FakeRouter(), answer=chain, default=chain)  # default covers the rest


def test_a_misspelt_route_warns_and_a_route_with_no_runnable_at_run_time_is_an_error():
    _, chain = route_chain("x")
    with pytest.warns(UserWarning, match="route 'out_of_scop' is not one the default chain gives"):
        assistant = RouterBranch(FakeRouter(), answer=chain, task=chain, general=chain, uncertain=chain,
                                 out_of_scope=chain, out_of_scop=chain)

    class TicketRouter(FakeRouter):
        def ask(self, question):
            return {**super().ask(question), "route": "ticket"}

    assistant = RouterBranch(TicketRouter(), **{route: chain for route in ROUTES})
    with pytest.raises(ConfigError, match="route 'ticket' .* no runnable"):
        assistant.invoke("开个工单")


def test_an_object_without_ask_is_not_a_router():
    with pytest.raises(ConfigError, match="router must have ask and ask_batch"):
        RouterBranch("./export", default=lambda x: x)


def test_an_async_only_router_refuses_sync_calls_and_says_what_to_use():
    assistant, _ = branch(FakeAsyncRouter())
    with pytest.raises(ConfigError, match=r"FakeAsyncRouter.ask is a coroutine, .* give a sync router"):
        assistant.invoke("数据清洗流程是什么？")
    with pytest.raises(ConfigError, match=r"FakeAsyncRouter.ask_batch is a coroutine"):
        assistant.batch(MIXED)
    with pytest.raises(ConfigError, match=r"FakeAsyncRouter.ask is a coroutine"):
        list(assistant.stream("数据清洗流程是什么？"))


def test_without_langchain_core_the_import_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    monkeypatch.delitem(sys.modules, "lora_router.integrations.langchain")
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'lora-router[langchain]'")):
        importlib.import_module("lora_router.integrations.langchain")


def docs_example() -> str:
    return re.search(r"```python\n(.*?)```", DOCS.read_text("utf-8"), re.S).group(1)


def test_the_docs_example_runs_as_written(monkeypatch):
    """The README-ready block of docs/langchain.md, with a fake chat model and router behind its names."""
    code = docs_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    prompts = []

    def chat_openai(**kwargs):
        return RunnableLambda(lambda prompt: prompts.append(prompt) or "") | FakeListChatModel(responses=["好的"])

    monkeypatch.setitem(sys.modules, "langchain_openai", types.SimpleNamespace(ChatOpenAI=chat_openai))
    monkeypatch.setattr("lora_router.OnnxRouter", lambda folder: FakeRouter(), raising=False)
    scope: dict = {}
    exec(compile(code, str(DOCS), "exec"), scope)
    assistant = scope["assistant"]
    assert prompts == ["用平台工具处理['sales_2024.csv']：帮我把sales_2024.csv导入到ODS层"]
    assert assistant.invoke("数据清洗流程是什么？") == "先去重，再补缺失值。"
    assert assistant.invoke("Python怎么给列表排序").content == "好的"
    refusal = "这个问题超出了数据平台助手的范围，请换个说法。"
    assert assistant.invoke("周末去哪儿吃火锅") == assistant.invoke("那个东西怎么弄") == refusal


def test_a_real_onnx_router_sends_each_sample_question_to_the_runnable_of_its_route(exported):
    from lora_router.backends.onnx import OnnxRouter
    from lora_router.demo import SAMPLE_QUESTIONS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        router = OnnxRouter(exported.export)
    questions = list(SAMPLE_QUESTIONS)
    expected = router.ask_batch(questions)
    assert len({a["route"] for a in expected}) > 1  # a batch of mixed routes, or the test proves little
    assistant = RouterBranch(router, **{route: (lambda x, route=route: (route, x["routing"])) for route in ROUTES})

    def same(routing, answer):  # step times differ from run to run, in the steps and in the trace
        timed = ("steps", "trace")
        return {k: v for k, v in routing.items() if k not in timed} == \
            {k: v for k, v in answer.items() if k not in timed} \
            and [s["task"] for s in routing["steps"]] == [s["task"] for s in answer["steps"]] \
            and [s["label"] for s in routing["trace"]["steps"]] == [s["label"] for s in answer["trace"]["steps"]]

    for out in (assistant.batch(questions), [assistant.invoke(q) for q in questions],
                asyncio.run(assistant.abatch(questions))):
        assert [route for route, _ in out] == [a["route"] for a in expected]
        assert all(same(routing, answer) for (_, routing), answer in zip(out, expected))

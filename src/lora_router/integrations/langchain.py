"""``RouterBranch``: a LangChain ``Runnable`` that sends each question to the runnable of its route.

The router decides the route (``answer``, ``task``, ``general``,
``out_of_scope``, ``uncertain``); the runnable given for that route receives

    {"question": "<the question>", "routing": ChainAnswer}

(the file names, the knowledge-base answer, every step of the chain), plus
any other keys of a dict input, and its output is the branch's output. The
router is any object with ``ask`` and ``ask_batch``: in process ``OnnxRouter``,
``Router`` or a ``TaskPredictor``; over HTTP ``lora_router.client.Client``, or
``AsyncClient``, whose coroutines ``ainvoke``, ``abatch`` and ``astream`` await. A sync
router answers async calls from a thread. ``batch`` asks the router once for
all its questions, then calls each route's runnable once with its share.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from ..core.chain import ROUTES
from ..core.results import ChainAnswer
from ..errors import ConfigError, InputError, require

require("langchain_core", "langchain")  # before the imports below, so a missing extra names its install command

from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable  # noqa: E402
from langchain_core.runnables.base import RunnableLike, coerce_to_runnable  # noqa: E402
from langchain_core.runnables.config import run_in_executor  # noqa: E402
from pydantic import ConfigDict  # noqa: E402

__all__ = ["ROUTES", "RouterBranch"]


class RouterBranch(RunnableSerializable[Any, Any]):
    """Route each question with ``router`` and run the runnable of its route.

    ``RouterBranch(router, answer=..., task=..., general=..., out_of_scope=..., uncertain=..., default=...)``:
    each route takes a runnable (or a function, coerced as LangChain does);
    ``default`` runs the routes given none. Without ``default`` every route
    needs its own, or construction raises ``ConfigError``. The input is a
    question, or a dict with ``"question"`` whose other keys travel along.
    """

    router: Any
    routes: dict[str, Runnable]
    default: Runnable | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def __init__(self, router: Any, *, default: RunnableLike | None = None, **routes: RunnableLike) -> None:
        if not (callable(getattr(router, "ask", None)) and callable(getattr(router, "ask_batch", None))):
            raise ConfigError(f"router must have ask and ask_batch (OnnxRouter, Router, lora_router.client.Client), "
                              f"got {type(router).__name__}")
        missing = [r for r in ROUTES if r not in routes]
        if missing and default is None:
            raise ConfigError(f"no runnable for route(s) {', '.join(missing)}; "
                              f"fix: give {'=, '.join(missing)}= or default= for the rest")
        for name in routes:
            if name not in ROUTES:  # a chain of one's own may route there; a typo would go to default unseen
                warnings.warn(f"route {name!r} is not one the default chain gives ({', '.join(ROUTES)}); "
                              "check the spelling unless your chain has this route", stacklevel=2)
        super().__init__(router=router, routes={name: coerce_to_runnable(r) for name, r in routes.items()},
                         default=None if default is None else coerce_to_runnable(default))

    # -- the router ---------------------------------------------------------------------------------

    def _sync(self, method: str) -> Callable:
        ask = getattr(self.router, method)
        if inspect.iscoroutinefunction(ask):
            raise ConfigError(f"{type(self.router).__name__}.{method} is a coroutine, which only ainvoke, abatch and "
                              "astream await; for invoke, batch and stream give a sync router "
                              "(lora_router.client.Client)")
        return ask

    def _ask(self, question: str) -> ChainAnswer:
        return self._sync("ask")(question)

    def _ask_batch(self, questions: list[str]) -> list[ChainAnswer]:
        return list(self._sync("ask_batch")(questions))

    async def _aask(self, question: str, config: RunnableConfig) -> ChainAnswer:
        if inspect.iscoroutinefunction(self.router.ask):
            return await self.router.ask(question)
        return await run_in_executor(config, self.router.ask, question)

    async def _aask_batch(self, questions: list[str], config: RunnableConfig) -> list[ChainAnswer]:
        if inspect.iscoroutinefunction(self.router.ask_batch):
            return list(await self.router.ask_batch(questions))
        return list(await run_in_executor(config, self.router.ask_batch, questions))

    # -- from a route to its runnable ---------------------------------------------------------------

    def _runnable(self, routing: ChainAnswer) -> Runnable:
        runnable = self.routes.get(routing["route"], self.default)
        if runnable is None:
            raise ConfigError(f"the router gave route {routing['route']!r} for {routing['question']!r}, which has "
                              f"no runnable (routes: {', '.join(self.routes)}); fix: give it one, or default=")
        return runnable

    @staticmethod
    def _question(input: Any) -> str:
        question = input.get("question") if isinstance(input, Mapping) else input
        if not isinstance(question, str):
            raise InputError(f"input must be a question or a dict with 'question', got {type(input).__name__}")
        return question

    @staticmethod
    def _route_input(input: Any, routing: ChainAnswer) -> dict:
        extra = dict(input) if isinstance(input, Mapping) else {}
        return {**extra, "question": routing["question"], "routing": routing}

    # -- Runnable -----------------------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config, **kwargs)

    def _invoke(self, input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        routing = self._ask(self._question(input))
        return self._runnable(routing).invoke(self._route_input(input, routing), config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    async def _ainvoke(self, input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        routing = await self._aask(self._question(input), config)
        return await self._runnable(routing).ainvoke(self._route_input(input, routing), config, **kwargs)

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        def run(inputs: list[Any], config: list[RunnableConfig]) -> list[Any]:
            routings = self._ask_batch([self._question(x) for x in inputs])
            outputs: list[Any] = [None] * len(inputs)
            for runnable, rows, route_inputs, configs in self._groups(inputs, routings, config):
                done = runnable.batch(route_inputs, configs, return_exceptions=return_exceptions, **kwargs)
                for i, out in zip(rows, done):
                    outputs[i] = out
            return outputs

        return self._batch_with_config(run, inputs, config, return_exceptions=return_exceptions)

    async def abatch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        async def run(inputs: list[Any], config: list[RunnableConfig]) -> list[Any]:
            routings = await self._aask_batch([self._question(x) for x in inputs], config[0])
            groups = self._groups(inputs, routings, config)
            done = await asyncio.gather(*(
                runnable.abatch(route_inputs, configs, return_exceptions=return_exceptions, **kwargs)
                for runnable, _, route_inputs, configs in groups))
            outputs: list[Any] = [None] * len(inputs)
            for (_, rows, _, _), outs in zip(groups, done):
                for i, out in zip(rows, outs):
                    outputs[i] = out
            return outputs

        return await self._abatch_with_config(run, inputs, config, return_exceptions=return_exceptions)

    def _groups(self, inputs: list[Any], routings: list[ChainAnswer], configs: list[RunnableConfig]
                ) -> list[tuple[Runnable, list[int], list[dict], list[RunnableConfig]]]:
        """Each runnable with its rows, inputs and configs, in input order; routes sharing ``default`` share one."""
        if len(routings) != len(inputs):
            raise ConfigError(f"the router answered {len(routings)} questions for {len(inputs)}")
        groups: dict[int, tuple[Runnable, list[int], list[dict], list[RunnableConfig]]] = {}
        for i, (input, routing, config) in enumerate(zip(inputs, routings, configs)):
            runnable = self._runnable(routing)  # by id: pydantic runnables do not hash
            _, rows, route_inputs, route_configs = groups.setdefault(id(runnable), (runnable, [], [], []))
            rows.append(i)
            route_inputs.append(self._route_input(input, routing))
            route_configs.append(config)
        return list(groups.values())

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """The route's runnable's stream: a chat model's tokens as they come."""
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    def _stream(self, inputs: Iterator[Any], config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        input = next(inputs)
        routing = self._ask(self._question(input))
        yield from self._runnable(routing).stream(self._route_input(input, routing), config, **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream, config, **kwargs):
            yield chunk

    async def _astream(self, inputs: AsyncIterator[Any], config: RunnableConfig,
                       **kwargs: Any) -> AsyncIterator[Any]:
        input = await anext(inputs)
        routing = await self._aask(self._question(input), config)
        async for chunk in self._runnable(routing).astream(
                self._route_input(input, routing), config, **kwargs):
            yield chunk

"""A fake Open Inference Protocol (v2) server, and an MLflow scoring server, on loopback: the
remote backends classic-model deployments (`v2/NAME`, `mlflow/NAME`) are tested against.

The model named in the path answers by its name, as the fake OpenAI upstream does: its
directives, comma separated, choose the behaviour (anything else is a tag)::

    status=CODE    every call answers CODE with {"error": "..."}
    fail_first=N   the first N calls fail (with status=, else 500), later ones succeed
    hang           never answer
    latency=MS     wait before answering

Every model doubles its inputs: one output per input, `<input>_doubled`, of its shape and
datatype, and says `model_version` "7" (or the version the path names). Metadata:
one input `x`, FP32 [-1, 2]. MLflow's `/invocations` answers each row of a
`dataframe_split` with its sum; `/ping` answers 200.

Counters: `calls(name)`; `last(name)` is the latest JSON body a model received.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web


class FakeV2Server:
    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._last: dict[str, Any] = {}

    def calls(self, name: str) -> int:
        with self._lock:
            return self._calls.get(name, 0)

    def last(self, name: str) -> Any:
        return self._last.get(name)

    def _count(self, name: str) -> int:
        with self._lock:
            self._calls[name] = self._calls.get(name, 0) + 1
            return self._calls[name]

    @staticmethod
    def _directives(name: str) -> dict[str, str]:
        found = {}
        for part in name.split(","):
            key, _, value = part.strip().partition("=")
            found[key] = value
        return found

    async def _behave(self, name: str, count: int) -> web.Response | None:
        directives = self._directives(name)
        if "latency" in directives:
            await asyncio.sleep(int(directives["latency"]) / 1000)
        if "hang" in directives:
            await asyncio.sleep(3600)
        status = int(directives.get("status") or 500)
        failing = "status" in directives and "fail_first" not in directives
        if failing or count <= int(directives.get("fail_first") or 0):
            return web.json_response({"error": f"fake failure {status}"}, status=status)
        return None

    async def infer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        failed = await self._behave(name, self._count(name))
        body = orjson.loads(await request.read())
        self._last[name] = body
        if failed is not None:
            return failed
        outputs = []
        for tensor in body["inputs"]:
            if tensor["datatype"] not in ("FP32", "FP64", "INT64", "INT32"):
                return web.json_response(
                    {"error": f"cannot double {tensor['datatype']}"}, status=400
                )
            outputs.append(
                {
                    "name": f"{tensor['name']}_doubled",
                    "datatype": tensor["datatype"],
                    "shape": tensor["shape"],
                    "data": [value * 2 for value in tensor["data"]],
                }
            )
        answer = {
            "model_name": name,
            "model_version": request.match_info.get("version") or "7",
            "outputs": outputs,
        }
        if "id" in body:
            answer["id"] = body["id"]
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def metadata(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        failed = await self._behave(name, count=2**31)  # fail_first counts infer calls
        if failed is not None:
            return failed
        return web.json_response(
            {
                "name": name,
                "versions": ["7"],
                "platform": "fake_v2",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                "outputs": [{"name": "x_doubled", "datatype": "FP32", "shape": [-1, 2]}],
            }
        )

    async def ready(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        failed = await self._behave(name, count=2**31)  # fail_first counts infer calls
        if failed is not None:
            return failed
        return web.json_response({"name": name, "ready": True})

    async def invocations(self, request: web.Request) -> web.Response:
        self._count("mlflow")
        body = orjson.loads(await request.read())
        self._last["mlflow"] = body
        frame = body.get("dataframe_split")
        if not isinstance(frame, dict) or not isinstance(frame.get("data"), list):
            return web.json_response(
                {"error_code": "BAD_REQUEST", "message": "no frame"}, status=400
            )
        return web.json_response({"predictions": [sum(row) for row in frame["data"]]})

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="\n")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/models/{name}/versions/{version}/infer", self.infer)
        app.router.add_post("/v2/models/{name}/infer", self.infer)
        app.router.add_get("/v2/models/{name}/versions/{version}/ready", self.ready)
        app.router.add_get("/v2/models/{name}/ready", self.ready)
        app.router.add_get("/v2/models/{name}/versions/{version}", self.metadata)
        app.router.add_get("/v2/models/{name}", self.metadata)
        app.router.add_post("/invocations", self.invocations)
        app.router.add_get("/ping", self.ping)
        return app


@contextmanager
def running_v2_server() -> Iterator[FakeV2Server]:
    """The fake on its own event loop in a daemon thread, on a free loopback port."""
    fake = FakeV2Server()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app(), access_log=None, handler_cancellation=True)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        fake.url = f"http://127.0.0.1:{port}"
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-v2", daemon=True)
    thread.start()
    if not ready.wait(timeout=30):
        raise RuntimeError("fake v2 server did not start")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

"""A loopback OTLP/HTTP trace receiver: decodes what exporters POST to /v1/traces (JSON).

In tests it runs in a thread and keeps the spans it received; the benchmark runs it as a
process (`python -m tests.fakes.otlp --port N`) so the gateway has a collector to export to.
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


def _value(any_value: dict[str, Any]) -> Any:
    """An OTLP AnyValue: ints travel as strings (JSON's int64 mapping)."""
    [(kind, value)] = any_value.items()
    return int(value) if kind == "intValue" else value


def _attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: _value(pair["value"]) for pair in pairs}


class OTLPReceiver(ThreadingHTTPServer):
    def __init__(self, port: int = 0, *, keep: bool = True) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.keep = keep  # the benchmark's receiver only counts; tests look at every span
        self.count = 0
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    server: OTLPReceiver
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does
    disable_nagle_algorithm = True  # head and body go in two writes

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        if self.headers.get("content-type") != "application/json":
            self.send_error(415, "this receiver takes OTLP/JSON")
            return
        if not self.server.keep:
            # The benchmark's collector only counts, so that decoding spans here does not
            # take CPU from the gateway on this small machine.
            with self.server.lock:
                self.server.count += body.count(b'"spanId"')
            self._reply()
            return
        request = orjson.loads(body)
        spans = []
        for resource_spans in request["resourceSpans"]:
            resource = _attributes(resource_spans["resource"]["attributes"])
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    spans.append(
                        {
                            "name": span["name"],
                            "kind": span["kind"],
                            "trace_id": span["traceId"],
                            "span_id": span["spanId"],
                            "parent_span_id": span.get("parentSpanId", ""),
                            "start_ns": int(span["startTimeUnixNano"]),
                            "end_ns": int(span["endTimeUnixNano"]),
                            "status_code": span.get("status", {}).get("code", 0),
                            "attributes": _attributes(span["attributes"]),
                            "resource": resource,
                        }
                    )
        with self.server.lock:
            self.server.spans.extend(spans)
            self.server.count += len(spans)
        self._reply()

    def _reply(self) -> None:
        reply = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keep", action="store_true", help="keep every span in memory")
    args = parser.parse_args()
    OTLPReceiver(args.port, keep=args.keep).serve_forever()


if __name__ == "__main__":
    main()

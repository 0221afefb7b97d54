"""TF Serving's REST API over a threaded HTTP/1.1 server bound to 127.0.0.1."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from google.protobuf import json_format

from autotune.restjson import decode_inputs, encode_response, parse_body
from autotune.servers.local.metrics import ServerMetrics
from autotune.servers.local.servable import RequestError, Servable

MAX_BODY_BYTES = 64 * 1024 * 1024
_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<verb>predict|classify|regress))?$"
)


class RestContext:
    """What request handlers share: the servables by model name, limits and metrics."""

    def __init__(
        self,
        servables: dict[str, Servable],
        num_threads: int,
        metrics: ServerMetrics | None,
        metrics_path: str,
    ) -> None:
        self.servables = servables
        # TF Serving runs REST requests on a pool of rest_api_num_threads threads (http_server.cc RequestExecutor).
        self.slots = threading.BoundedSemaphore(num_threads)
        self.metrics = metrics
        self.metrics_path = metrics_path

    def status_doc(self, name: str) -> dict[str, Any]:
        return {
            "model_version_status": [
                {
                    "version": str(self.servables[name].version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def metadata_doc(self, name: str) -> dict[str, Any]:
        from tensorflow_serving.apis import get_model_metadata_pb2

        servable = self.servables[name]
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": json_format.MessageToDict(sig_map, preserving_proto_field_name=True)},
        }


class RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST API over one RestContext (a subclass per server binds it: make_handler)."""

    ctx: ClassVar[RestContext]
    protocol_version = "HTTP/1.1"
    server_version = "autotune-model-server"
    # Headers and body leave in one segment; with Nagle on, keep-alive replies stall 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # per-request logs would cost more than the tiny model's inference

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body)
        self.flush_headers()

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode())

    def _route(self) -> tuple[re.Match[str] | None, bool]:
        path = self.path.split("?", 1)[0]
        m = _ROUTE.match(path)
        if m is None:
            return None, False
        servable = self.ctx.servables.get(m["name"])
        if servable is None or (m["version"] and int(m["version"]) != servable.version):
            version = f"Specific({m['name']}, {m['version']})" if m["version"] else f"Latest({m['name']})"
            self._error(404, f"Servable not found for request: {version}")
            return m, False
        return m, True

    def do_GET(self) -> None:
        if self.ctx.metrics is not None and self.path.split("?", 1)[0] == self.ctx.metrics_path:
            self._send(200, self.ctx.metrics.exposition(), "text/plain; version=0.0.4")
            return
        m, ok = self._route()
        if m is None or m["verb"]:
            self._error(404, f"Malformed request: GET {self.path}")
        elif ok:
            doc = self.ctx.metadata_doc(m["name"]) if m["metadata"] else self.ctx.status_doc(m["name"])
            self._send(200, json.dumps(doc).encode())

    def do_POST(self) -> None:
        started = time.perf_counter()
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._error(411, "Content-Length required")
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        m, ok = self._route()
        if m is None or not m["verb"]:
            self._error(404, f"Malformed request: POST {self.path}")
            return
        if not ok:
            return
        status, code = "OK", 200
        try:
            with self.ctx.slots:
                reply = self._predict(self.ctx.servables[m["name"]], m["verb"], body)
        except RequestError as exc:
            status = "INVALID_ARGUMENT" if exc.status == 400 else "UNAVAILABLE"
            code, reply = exc.status, json.dumps({"error": str(exc)}).encode()
        except Exception as exc:  # a bug must cost one request, never the connection silently
            status, code = "INTERNAL", 500
            reply = json.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}).encode()
        # Count before replying, so a client that reads metrics after its reply sees itself.
        if self.ctx.metrics is not None:
            self.ctx.metrics.observe(m["name"], "predict", "REST", status, time.perf_counter() - started)
        self._send(code, reply)

    def _predict(self, servable: Servable, verb: str, body: bytes) -> bytes:
        # The signature name lives in the body: parse it once, check the method, then decode tensors.
        doc, sig_name = parse_body(body)
        method = servable.method(sig_name)
        if verb != "predict" and not method.endswith("/" + verb):
            raise RequestError(400, f"signature '{sig_name or 'serving_default'}' is {method}, not {verb}")
        if verb != "predict":
            raise RequestError(400, f"{verb} with tf.Example input is not supported by autotune-model-server")
        inputs, row = decode_inputs(doc, servable.input_dtypes(sig_name))
        outputs = servable.predict(sig_name, inputs)
        return encode_response(outputs, row)


def make_handler(ctx: RestContext) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to CTX."""
    return type("Handler", (RestHandler,), {"ctx": ctx})


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # TIME_WAIT from a previous server must not block; a live listener still does
    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-request (the generator closing at the end of a level) is routine,
        # as it is for TF Serving; a traceback per socket would bury the log lines that matter.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def serve_rest(ctx: RestContext, port: int) -> RestServer:
    """Bind 127.0.0.1:PORT and serve in a background thread."""
    server = RestServer(("127.0.0.1", port), make_handler(ctx))
    # A short poll: shutdown() waits for the loop to look, and every trial stops its server.
    threading.Thread(target=server.serve_forever, args=(0.05,), name="rest", daemon=True).start()
    return server

"""A loopback OpenAI-compatible ``/v1/chat/completions`` that answers after a fixed latency, in its own process.

The I/O-bound benchmark (bench/io_fleet.py) needs a provider whose answer time is known, so that a worker's
throughput can be set against the theoretical ``concurrency / latency``. It runs as its own process
(``python -m bench.fake_openai --latency 0.1``) so that its Python does not share a GIL with the producer;
it prints ``listening on <port>`` once it accepts connections. One thread per connection, a listen backlog
above any worker's concurrency (the standard library's 5 drops simultaneous connects, and a dropped SYN
costs a second), and no request log, so it can serve thousands of calls. A request with ``"stream": true`` is
answered as OpenAI streams (``text/event-stream`` in chunked transfer encoding, ``chat.completion.chunk``
events, ``data: [DONE]``): the first content chunk after the latency, then ``--chunks`` deltas in all,
``--chunk-interval`` seconds apart. The test fakes in tests/support/vendors check the wire format strictly;
this one checks only what it needs to answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The key the fake expects, as OpenAI does: ``Authorization: Bearer <key>``.
API_KEY = "bench-fake-key"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up on a kept-alive connection is no error of the fake's: not printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def answer(body: Any) -> tuple[int, dict[str, Any]]:
    """A chat.completion for a request body, or OpenAI's 400 shape when it has no model or messages."""
    if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
        return 400, {"error": {"message": "model and messages are required", "type": "invalid_request_error"}}
    prompt = " ".join(str(message.get("content", "")) for message in body["messages"])
    content = f"fake says: {body['messages'][-1].get('content', '')}"
    usage = {"prompt_tokens": len(prompt) // 4 + 1, "completion_tokens": len(content) // 4 + 1}
    return 200, {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
    }


def stream_events(body: dict[str, Any], chunks: int) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed answer: the role, ``chunks`` content deltas, the finish."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": body["model"],
            "choices": [choice],
        }

    deltas = [chunk({"content": f"token{index} "}) for index in range(chunks)]
    return [chunk({"role": "assistant", "content": ""}), *deltas, chunk({}, "stop")]


def handler_class(latency_s: float, chunks: int = 20, chunk_interval_s: float = 0.0) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the clients' pooled connections are reused
        # Headers and body go out in two writes: with Nagle on, the second waits for the client's delayed ACK,
        # adding 40 ms to every answer on Linux.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            time.sleep(latency_s)
            if self.path != "/v1/chat/completions":
                status, reply = 404, {"error": {"message": f"no route for POST {self.path}"}}
            elif self.headers.get("Authorization") != f"Bearer {API_KEY}":
                status, reply = 401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_api_key"}}
            else:
                try:
                    body = json.loads(raw)
                    status, reply = answer(body)
                except json.JSONDecodeError:
                    status, reply = 400, {"error": {"message": "the body is not JSON"}}
                else:
                    if status == 200 and body.get("stream"):
                        self._stream(stream_events(body, chunks))
                        return
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, events: list[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index, event in enumerate(events):
                if index > 1:  # the role chunk and the first delta go out together, after the latency
                    time.sleep(chunk_interval_s)
                self._chunk(f"data: {json.dumps(event)}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return _Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each answer (its first token)")
    parser.add_argument("--chunks", type=int, default=20, help="content deltas of a streamed answer")
    parser.add_argument("--chunk-interval", type=float, default=0.0, help="seconds between two streamed deltas")
    args = parser.parse_args(argv)
    server = _Server(("127.0.0.1", args.port), handler_class(args.latency, args.chunks, args.chunk_interval))
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

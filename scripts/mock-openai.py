#!/usr/bin/env python3
"""A scripted OpenAI-compatible chat completions server, for runs that must not depend on a
model: it answers every request with a schema-valid draft built from the request's own JSON
schema (response_format json_schema, or json_object with a schema), after a fixed latency.

Names are made of plain words chosen by a hash of the request, so every (venture, block) gets
names of its own and the junk checks pass. Streams (server-sent events) when asked to.

    scripts/mock-openai.py [--port 8790] [--latency-ms 200]

Then: OPENAI_API_KEY=anything OPENAI_BASE_URL=http://127.0.0.1:8790/v1 inncopilot enrich ...
Standard library only. GET /stats gives the number of requests served.
"""

import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIRST = ["Harbor", "Lantern", "Meadow", "Copper", "Willow", "Summit", "River", "Orchard",
         "Beacon", "Granite", "Maple", "Falcon", "Prairie", "Cobalt", "Juniper", "Amber"]
SECOND = ["Circle", "Desk", "Guild", "Studio", "Bridge", "Market", "Network", "Workshop",
          "Council", "Exchange", "Forum", "Pathway", "Garden", "Lab", "Club", "Service"]
THIRD = ["Partners", "Members", "Program", "Plan", "Line", "Alliance", "Collective", "Hub",
         "Route", "Channel", "Ledger", "Compass", "Harvest", "Signal", "Anchor", "Atlas"]

served = 0
served_lock = threading.Lock()


def words(seed: bytes, index: int) -> str:
    digest = hashlib.sha256(seed + str(index).encode()).digest()
    return f"{FIRST[digest[0] % 16]} {SECOND[digest[1] % 16]} {THIRD[digest[2] % 16]}"


def value_for(schema: dict, seed: bytes, index: int, key: str = ""):
    """A value matching `schema` (the subset inncopilot's answer schemas use)."""
    if "enum" in schema:
        return schema["enum"][index % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            return value_for(schema[combined][0], seed, index, key)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: value_for(sub, seed, index, name) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [value_for(schema.get("items", {}), seed, index * 7 + n, key) for n in range(count)]
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return True
    name = words(seed, index)
    if key == "name":
        text = name
    else:
        text = f"The {name.lower()} helps this venture reach and keep the people it serves."
    limit = schema.get("maxLength")
    if limit and len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0]
    return text


def answer(body: dict) -> str:
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}
    items_schema = schema.get("properties", {}).get("items", {})
    count = max(1, items_schema.get("minItems", 1))
    seed = json.dumps(body.get("messages", []), sort_keys=True).encode()
    items = [value_for(items_schema.get("items", {}), seed, n) for n in range(count)]
    return json.dumps({"items": items})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without this, the body waits for the
    # client's delayed acknowledgement (~40 ms a request).
    disable_nagle_algorithm = True
    latency = 0.2

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = json.dumps({"requests": served}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        global served
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with served_lock:
            served += 1
        time.sleep(self.latency)
        content = answer(body)
        usage = {"prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1020}
        model = body.get("model", "mock")
        if body.get("stream"):
            def chunk(delta, finish=None, choices=True):
                payload = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                           "created": 1, "model": model,
                           "choices": [{"index": 0, "delta": delta,
                                        "finish_reason": finish}] if choices else []}
                if not choices:
                    payload["usage"] = usage
                return f"data: {json.dumps(payload)}\n\n"
            data = (chunk({"role": "assistant", "content": content}) + chunk({}, "stop")
                    + chunk({}, choices=False) + "data: [DONE]\n\n").encode()
            kind = "text/event-stream"
        else:
            data = json.dumps({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 1,
                "model": model, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
            }).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--latency-ms", type=float, default=200)
    arguments = parser.parse_args()
    Handler.latency = arguments.latency_ms / 1000
    # The listen backlog is read when the socket starts listening, so it is set on the class:
    # 128 clients connecting at once would otherwise be reset.
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    server.daemon_threads = True
    print(f"mock OpenAI server on http://127.0.0.1:{arguments.port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

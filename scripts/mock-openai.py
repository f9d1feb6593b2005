#!/usr/bin/env python3
"""A scripted OpenAI-compatible chat completions server, for runs that must not depend on a
model: it answers every request with a schema-valid draft built from the request's own JSON
schema (response_format json_schema, or json_object with a schema), after a fixed latency.

Names are made of plain words chosen by a hash of the request, so every (venture, block) gets
names of its own and the junk checks pass. Streams (server-sent events) when asked to.

    scripts/mock-openai.py [--port 8790] [--latency-ms 200] [--no-draft-for TEXT]...

Then: OPENAI_API_KEY=anything OPENAI_BASE_URL=http://127.0.0.1:8790/v1 inncopilot enrich ...
Standard library only. GET /stats gives the number of requests served.
"""

import argparse
import asyncio
import functools
import hashlib
import json
import socket

FIRST = ["Harbor", "Lantern", "Meadow", "Copper", "Willow", "Summit", "River", "Orchard",
         "Beacon", "Granite", "Maple", "Falcon", "Prairie", "Cobalt", "Juniper", "Amber"]
SECOND = ["Circle", "Desk", "Guild", "Studio", "Bridge", "Market", "Network", "Workshop",
          "Council", "Exchange", "Forum", "Pathway", "Garden", "Lab", "Club", "Service"]
THIRD = ["Partners", "Members", "Program", "Plan", "Line", "Alliance", "Collective", "Hub",
         "Route", "Channel", "Ledger", "Compass", "Harvest", "Signal", "Anchor", "Atlas"]

served = 0


@functools.lru_cache(maxsize=256)
def first_word(seed: bytes) -> int:
    return hashlib.sha256(seed).digest()[0]


def words(seed: bytes, index: int) -> str:
    """Three words chosen by a hash of the request. The first one steps with `index`, so the
    items of one answer never share a name (one did about once in 500 answers, and was asked
    again: a request the ideal of a benchmark does not count)."""
    digest = hashlib.sha256(seed + str(index).encode()).digest()
    first = FIRST[(first_word(seed) + index) % 16]
    return f"{first} {SECOND[digest[1] % 16]} {THIRD[digest[2] % 16]}"


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


def completion(body: dict, no_draft_for: list[str]) -> tuple[str, bytes]:
    """The response to a chat completions request: (content type, body); text that is no
    draft when the request's messages contain one of `no_draft_for`."""
    messages = json.dumps(body.get("messages", []), ensure_ascii=False)
    broken = any(text in messages for text in no_draft_for)
    content = "No ideas today." if broken else answer(body)
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
                + chunk({}, choices=False) + "data: [DONE]\n\n")
        return "text/event-stream", data.encode()
    data = json.dumps({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1,
        "model": model, "usage": usage,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
    })
    return "application/json", data.encode()


class Server:
    """HTTP/1.1 with keep-alive on one asyncio loop: a request waits its latency on a timer,
    not on a thread, so 128 clients at once are answered after the latency and not later (a
    thread per connection under the GIL added up to 20 ms to a request at that load, with any
    client). Each response goes out in one write, Nagle's algorithm off."""

    def __init__(self, latency: float, no_draft_for: list[str]):
        self.latency = latency
        self.no_draft_for = no_draft_for

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        global served
        loop = asyncio.get_running_loop()
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    name, colon, value = line.partition(":")
                    if colon:
                        headers[name.strip().lower()] = value.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                length = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(length) if length else b""
                if method == "POST":
                    # The latency counts from the request's arrival: the answer is made while
                    # it runs, so a burst of requests is not answered one parse after another.
                    due = loop.time() + self.latency
                    served += 1
                    kind, data = completion(json.loads(raw or b"{}"), self.no_draft_for)
                    await asyncio.sleep(max(0.0, due - loop.time()))
                else:
                    kind, data = "application/json", json.dumps({"requests": served}).encode()
                writer.write((f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\n"
                              f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def serve(self, port: int):
        # A listen backlog of 1024: 128 clients connecting at once are not reset.
        server = await asyncio.start_server(self.connection, "127.0.0.1", port, backlog=1024)
        print(f"mock OpenAI server on http://127.0.0.1:{port}/v1", flush=True)
        async with server:
            await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--no-draft-for", action="append", default=[], metavar="TEXT",
                        help="answer text that is no draft to requests whose messages contain "
                             "TEXT (a venture's name, say: its pairs fail); repeatable")
    arguments = parser.parse_args()
    try:
        server = Server(arguments.latency_ms / 1000, arguments.no_draft_for)
        asyncio.run(server.serve(arguments.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

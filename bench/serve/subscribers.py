#!/usr/bin/env python3
"""Start one enrich job on a running `inncopilot serve` and follow it with many subscribers.

    bench/serve/subscribers.py --url http://127.0.0.1:PORT --token TOKEN --pid SERVER_PID \
        --subscribers 200 --body '{"provider": "openai", ...}' --out RESULT.json

POST /v1/enrich, then, as soon as it answers 202, N clients open GET /v1/jobs/{id}/events at
once (asyncio, raw sockets, HTTP/1.1 chunked): every one must see the same events, ids 0, 1, 2,
... without a gap, ending with `end`, and the stream must close after it. The first
subscriber's events are kept whole and checked against the job: one `done` or `failed` per
pair, `totals` and `end` last. The clients only read while the job runs and decode afterwards,
so they take little of the CPU the server needs. Meanwhile the server's VmRSS is sampled from
/proc every 50 ms (and its VmHWM read at the end). Times are from the 202: each subscriber's
first bytes (the headers and the events so far) and end of stream (it asks `Connection: close`, so the stream closes
right after `end`), set beside the run's own `totals.seconds`. Standard library only.
"""

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.parse

SAMPLE_SECONDS = 0.05


def proc_status(pid: int) -> dict:
    """VmRSS, VmHWM (MB) and Threads of a process, from /proc."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
            elif key == "Threads":
                values[key] = int(rest)
    return values


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Subscriber:
    """One client. It only reads while the job runs (so it takes little of the CPU the server
    needs); the stream is decoded once it has closed."""

    def __init__(self, index: int, keep: bool):
        self.index = index
        self.keep = keep
        self.events: list[bytes] = []
        self.digest = hashlib.sha256()
        self.count = 0
        self.last = b""
        self.gaps = 0
        self.status = None
        self.content_type = ""
        self.tcp_connected = None
        self.connected = None
        self.ended = None
        self.closed_after_end = False
        self.error = None

    def decode(self, body: bytes) -> None:
        """The chunked body, then its events (keep-alive comments left out)."""
        data, at = bytearray(), 0
        while True:
            line_end = body.index(b"\r\n", at)
            size = int(body[at:line_end].split(b";")[0], 16)
            if size == 0:
                self.closed_after_end = True
                break
            data += body[line_end + 2:line_end + 2 + size]
            at = line_end + 2 + size + 2
        blocks = bytes(data).split(b"\n\n")
        if blocks[-1]:
            raise ValueError(f"the stream ends inside an event: {blocks[-1][:200]!r}")
        for block in blocks[:-1]:
            lines = block.split(b"\n")
            if all(line.startswith(b":") or not line for line in lines):
                continue  # a keep-alive comment
            fields = {}
            for line in lines:
                key, _, value = line.partition(b":")
                fields[key] = value[1:] if value.startswith(b" ") else value
            if fields.get(b"id") != str(self.count).encode():
                self.gaps += 1
            self.count += 1
            self.digest.update(block + b"\0")
            self.last = fields.get(b"event", b"")
            if self.keep:
                self.events.append(block)
        self.closed_after_end = self.closed_after_end and self.last == b"end"


class Stream(asyncio.Protocol):
    """A subscriber's connection: it only keeps what arrives, and when; decoded afterwards."""

    def __init__(self, sub: Subscriber, request: bytes, zero: float, closed: asyncio.Future):
        self.sub, self.request, self.zero, self.closed = sub, request, zero, closed
        self.parts: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.sub.tcp_connected = time.perf_counter() - self.zero
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.parts:
            self.sub.connected = time.perf_counter() - self.zero
        self.parts.append(data)

    def connection_lost(self, error) -> None:
        self.sub.ended = time.perf_counter() - self.zero
        if not self.closed.done():
            self.closed.set_result(error)


def read_response(sub: Subscriber, raw: bytes) -> None:
    """Status, headers, then the chunked body's events."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    sub.status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    sub.content_type = headers.get("content-type", "")
    if sub.status != 200:
        sub.error = f"status {sub.status}: {body[:200]!r}"
        return
    if headers.get("transfer-encoding", "").lower() != "chunked":
        raise ValueError(f"expected a chunked stream, got headers {headers}")
    sub.decode(body)


async def subscribe(sub: Subscriber, host: str, port: int, job: str, zero: float) -> list:
    """Follow the job's events until the server closes the stream; returns what arrived."""
    # Connection: close, so the end of the stream is the end of the connection.
    request = (f"GET /v1/jobs/{job}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Accept: text/event-stream\r\nConnection: close\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    try:
        _, stream = await loop.create_connection(
            lambda: Stream(sub, request, zero, closed), host, port)
        error = await closed
        if error is not None:
            sub.error = f"{type(error).__name__}: {error}"
        return stream.parts
    except Exception as error:  # reported per subscriber, not raised
        sub.error = f"{type(error).__name__}: {error}"
        return []


async def sample_rss(pid: int, samples: list, stop: asyncio.Event, zero: float) -> None:
    while not stop.is_set():
        try:
            status = proc_status(pid)
        except OSError:
            return
        samples.append((round(time.perf_counter() - zero, 3), status["VmRSS"]))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        except asyncio.TimeoutError:
            pass


def parse_event(block: bytes) -> tuple[str, dict]:
    name, data = "", ""
    for line in block.split(b"\n"):
        key, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if key == b"event":
            name = value.decode()
        elif key == b"data":
            data += value.decode()
    return name, json.loads(data) if data else None


async def main_async(args) -> dict:
    address = urllib.parse.urlsplit(args.url)
    host, port = address.hostname, address.port
    before = proc_status(args.pid)
    cpu_before = cpu_seconds(args.pid)

    connection = http.client.HTTPConnection(host, port, timeout=60)
    posted = time.perf_counter()
    connection.request("POST", "/v1/enrich", body=args.body.encode(), headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {args.token}"})
    response = connection.getresponse()
    answer = response.read()
    zero = time.perf_counter()
    if response.status != 202:
        sys.exit(f"subscribers: POST /v1/enrich answered {response.status}: {answer[:500]!r}")
    job = json.loads(answer)

    samples: list = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(args.pid, samples, stop, zero))
    subscribers = [Subscriber(index, keep=index == 0) for index in range(args.subscribers)]
    received = await asyncio.gather(
        *(subscribe(sub, host, port, job["id"], zero) for sub in subscribers))
    all_ended = time.perf_counter() - zero
    stop.set()
    await sampler
    at_end = proc_status(args.pid)
    cpu_after = cpu_seconds(args.pid)
    client_cpu_streaming = time.process_time()
    for sub, parts in zip(subscribers, received):
        if sub.error is None:
            try:
                read_response(sub, b"".join(parts))
            except Exception as error:
                sub.error = f"{type(error).__name__}: {error}"

    connection.request("GET", f"/v1/jobs/{job['id']}")
    response = connection.getresponse()
    final = json.loads(response.read())
    # Let the server drop what the finished streams held, then look again.
    await asyncio.sleep(1.0)
    after = proc_status(args.pid)

    reference = subscribers[0]
    events = [parse_event(block) for block in reference.events]
    names = [name for name, _ in events]
    totals = next((data for name, data in events if name == "totals"), None) or {}
    end = events[-1][1] if events and names[-1] == "end" else None
    pairs = job.get("pairs", 0)
    same = [sub for sub in subscribers if sub.error is None and sub.count == reference.count
            and sub.digest.digest() == reference.digest.digest()]
    complete = [sub for sub in same if sub.last == b"end" and sub.closed_after_end
                and sub.gaps == 0 and sub.status == 200
                and sub.content_type.startswith("text/event-stream")]
    checks = {
        "job_pairs": pairs,
        "events_per_subscriber": reference.count,
        "started": names.count("started"),
        "done": names.count("done"),
        "failed": names.count("failed"),
        "done_plus_failed_equals_pairs": names.count("done") + names.count("failed") == pairs,
        "last_two_events": names[-2:],
        "end_state": end and end.get("state"),
        "totals_pairs": totals.get("pairs"),
        "job_state_after": final.get("state"),
        "subscribers_with_identical_events": len(same),
        "subscribers_ok": len(complete),
        "errors": sorted({sub.error for sub in subscribers if sub.error})[:5],
    }
    ok = (len(complete) == args.subscribers and checks["done_plus_failed_equals_pairs"]
          and names[-2:] == ["totals", "end"] and pairs > 0 and totals.get("pairs") == pairs)

    def spread(values: list) -> dict:
        values = sorted(v for v in values if v is not None)
        if not values:
            return {}
        return {"min": round(values[0], 3), "p50": round(values[len(values) // 2], 3),
                "max": round(values[-1], 3)}

    return {
        "ok": ok,
        "subscribers": args.subscribers,
        "job": {"id": job["id"], "pairs": pairs, "state": final.get("state"),
                "done": final.get("done"), "failed": final.get("failed"),
                "seconds": totals.get("seconds"), "post_seconds": round(zero - posted, 3)},
        "checks": checks,
        "seconds_from_202": {
            "tcp_connected": spread([sub.tcp_connected for sub in subscribers]),
            "connected": spread([sub.connected for sub in subscribers]),
            "connected_after_0.5s": sum(1 for sub in subscribers
                                        if sub.connected is not None and sub.connected > 0.5),
            "end": spread([sub.ended for sub in subscribers]),
            "all_closed": round(all_ended, 3),
        },
        "server": {
            "rss_mb_before": round(before["VmRSS"], 1),
            "rss_mb_max_sampled": round(max((mb for _, mb in samples), default=0), 1),
            "rss_mb_at_end": round(at_end["VmRSS"], 1),
            "rss_mb_1s_after": round(after["VmRSS"], 1),
            "peak_rss_mb": round(at_end["VmHWM"], 1),
            "threads_at_end": at_end["Threads"],
            "cpu_seconds": round(cpu_after - cpu_before, 2),
        },
        "client_cpu_seconds": round(client_cpu_streaming, 2),
        "rss_samples": samples[:: max(1, len(samples) // 200)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--body", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)
    brief = {key: result[key] for key in ("ok", "subscribers", "job")}
    print(json.dumps(brief))
    if not result["ok"]:
        sys.exit(f"subscribers: the checks failed: {json.dumps(result['checks'])}")


if __name__ == "__main__":
    main()

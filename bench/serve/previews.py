#!/usr/bin/env python3
"""The request bodies of scripts/bench-serve's preview load, checked once against the server.

    bench/serve/previews.py --url http://127.0.0.1:PORT --bodies OUT.jsonl --out SUMMARY.json

Reads the blocks and ventures the server serves (GET /v1/blocks, /v1/ventures) and writes one
POST /v1/preview body a line for every (venture, block), blocks outermost as in
benches/render_prompts.rs, with provider openai (the prompt options that bench renders with).
Then posts every body once over one keep-alive connection: each must answer 200 with messages.
The summary counts the prompts and the MB of their messages (to set beside the bench's own
line "N (venture, block) prompts, M MB of messages") and the time of that serial pass.
Standard library only.
"""

import argparse
import http.client
import json
import sys
import time
import urllib.parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--provider", default="openai")
    args = parser.parse_args()

    address = urllib.parse.urlsplit(args.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    status, blocks = call("GET", "/v1/blocks")
    if status != 200:
        sys.exit(f"previews: GET /v1/blocks answered {status}: {blocks[:300]!r}")
    status, ventures = call("GET", "/v1/ventures")
    if status != 200:
        sys.exit(f"previews: GET /v1/ventures answered {status}: {ventures[:300]!r}")
    blocks = [block["id"] for block in json.loads(blocks)]
    ventures = [venture["name"] for venture in json.loads(ventures)]
    bodies = [json.dumps({"venture": venture, "block": block, "provider": args.provider})
              for block in blocks for venture in ventures]
    if not bodies:
        sys.exit("previews: the graph has no (venture, block) pair to preview")
    with open(args.bodies, "w") as out:
        out.write("\n".join(bodies) + "\n")

    characters = 0
    response_bytes = 0
    start = time.perf_counter()
    for body in bodies:
        status, answer = call("POST", "/v1/preview", body.encode())
        if status != 200:
            sys.exit(f"previews: POST /v1/preview {body} answered {status}: {answer[:500]!r}")
        preview = json.loads(answer)
        messages = preview.get("messages") or []
        if not messages:
            sys.exit(f"previews: POST /v1/preview {body} answered no messages: {answer[:500]!r}")
        characters += sum(len(message["content"].encode()) for message in messages)
        response_bytes += len(answer)
    seconds = time.perf_counter() - start
    summary = {
        "blocks": len(blocks),
        "ventures": len(ventures),
        "prompts": len(bodies),
        "mb_of_messages": round(characters / 1e6, 2),
        "mean_response_bytes": round(response_bytes / len(bodies)),
        "serial_pass_seconds": round(seconds, 2),
        "serial_requests_per_s": round(len(bodies) / seconds, 1),
    }
    with open(args.out, "w") as out:
        json.dump(summary, out, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The prompts of a benchmark graph, for scripts/bench-enrich. Three commands:

    prompts.py from-preview --binary BIN --graph DIR OUT.jsonl
        The Batch API file `inncopilot enrich --batch-export` writes, built from one
        `inncopilot preview --json` call per pair of `enrich --plan --json` (for a binary
        without --batch-export). Slow (one process per pair), so the script keeps the result.

    prompts.py promptfoo --batch FILE.jsonl --base-url URL --out DIR
        A promptfoo eval over the same requests: DIR/promptfooconfig.yaml, DIR/tests.jsonl (one
        test per request, its messages as a variable) and one DIR/format-N.json per distinct
        response_format, which the OpenAI provider loads per test (`file://{{ format }}`).

    prompts.py curl --batch FILE.jsonl --base-url URL --out DIR
        The same requests for `curl --parallel --config DIR/curl.config`: one body file per
        request (streamed, as inncopilot asks), each posted once: the floor of a client that
        does nothing but send them.

Standard library only.
"""

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def preview_body(binary: str, graph: str, pair: dict) -> dict:
    """One Batch API line from `preview --json`: the body the live path sends, not streamed."""
    output = subprocess.run(
        [binary, "--graph", graph, "-q", "preview", "--provider", "openai",
         "--venture", pair["venture"], "--block", pair["block"], "--count", str(pair["count"]),
         "--json"],
        check=True, capture_output=True, text=True).stdout
    preview = json.loads(output)
    params = preview["params"]
    body = {
        "model": preview["model"],
        "messages": [{"role": m["role"], "content": m["content"]} for m in preview["messages"]],
        "temperature": params["temperature"],
        "max_completion_tokens": params["max_tokens"],
        "seed": params["seed"],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "draft", "schema": preview["schema"]}},
    }
    return {"custom_id": f"{pair['venture']} / {pair['block']}", "method": "POST",
            "url": "/v1/chat/completions", "body": body}


def from_preview(arguments) -> None:
    plan = json.loads(subprocess.run(
        [arguments.binary, "--graph", arguments.graph, "-q", "enrich", "--provider", "openai",
         "--plan", "--json"], check=True, capture_output=True, text=True).stdout)
    # Two workers: the machine has two cores, and each call is a short process.
    with ThreadPoolExecutor(max_workers=2) as pool:
        lines = list(pool.map(lambda pair: preview_body(arguments.binary, arguments.graph, pair),
                              plan["pairs"]))
    partial = Path(str(arguments.out) + ".partial")
    with partial.open("w") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    partial.rename(arguments.out)
    print(f"{arguments.out}: {len(lines)} requests built from preview")


def write_promptfoo(arguments) -> None:
    out = arguments.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    formats: dict[str, Path] = {}
    unsupported = set()
    count = 0
    with arguments.batch.open() as batch, (out / "tests.jsonl").open("w") as tests:
        for line in batch:
            if not line.strip():
                continue
            request = json.loads(line)
            body = request["body"]
            known = {"model", "messages", "temperature", "max_completion_tokens", "seed",
                     "response_format", "stream"}
            unsupported |= set(body) - known
            key = json.dumps(body.get("response_format"), sort_keys=True)
            if key not in formats:
                formats[key] = out / f"format-{len(formats)}.json"
                formats[key].write_text(key)
            test = {"description": request["custom_id"],
                    "vars": {"messages": body["messages"], "format": str(formats[key])}}
            tests.write(json.dumps(test) + "\n")
            count += 1
            params = body
    if count == 0:
        sys.exit(f"{arguments.batch}: no requests")
    if unsupported:
        print(f"promptfoo: fields not passed on: {sorted(unsupported)}", file=sys.stderr)
    # The model and parameters are the same for every request of a run, so they are read from
    # the last body; what differs per request (messages, response_format) is in the tests.
    # `omitDefaults` keeps promptfoo from adding max_tokens; max_completion_tokens goes through
    # `passthrough`, as we send it.
    config = {
        "description": "scripts/bench-enrich: the prompts of inncopilot enrich",
        "prompts": ["{{ messages | dump }}"],
        "providers": [{
            "id": f"openai:chat:{params['model']}",
            "config": {
                "apiBaseUrl": arguments.base_url,
                "temperature": params["temperature"],
                "seed": params["seed"],
                "omitDefaults": True,
                "passthrough": {"max_completion_tokens": params["max_completion_tokens"]},
                "response_format": "file://{{ format }}",
            },
        }],
        "tests": f"file://{out / 'tests.jsonl'}",
    }
    # JSON is YAML; promptfoo reads the file as YAML.
    (out / "promptfooconfig.yaml").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{out}/promptfooconfig.yaml: {count} tests, {len(formats)} response format(s)")


def write_curl(arguments) -> None:
    out = arguments.out
    bodies = out / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    url = arguments.base_url.rstrip("/") + "/chat/completions"
    lines = []
    count = 0
    for count, line in enumerate(arguments.batch.read_text().splitlines(), start=1):
        body = json.loads(line)["body"]
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        file = bodies / f"{count}.json"
        file.write_text(json.dumps(body))
        lines += [f'url = "{url}"', f'data-binary = "@{file.resolve()}"',
                  'header = "Content-Type: application/json"',
                  'header = "Authorization: Bearer bench"', 'output = "/dev/null"',
                  'write-out = "%{http_code}\\n"', "next"]
    # No `next` after the last request: curl would read an empty one and fail.
    (out / "curl.config").write_text("\n".join(lines[:-1]) + "\n")
    print(f"{out}/curl.config: {count} requests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser("from-preview")
    preview.add_argument("--binary", required=True)
    preview.add_argument("--graph", required=True)
    preview.add_argument("out", type=Path)
    promptfoo = commands.add_parser("promptfoo")
    promptfoo.add_argument("--batch", type=Path, required=True)
    promptfoo.add_argument("--base-url", required=True)
    promptfoo.add_argument("--out", type=Path, required=True)
    curl = commands.add_parser("curl")
    curl.add_argument("--batch", type=Path, required=True)
    curl.add_argument("--base-url", required=True)
    curl.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    {"from-preview": from_preview, "promptfoo": write_promptfoo,
     "curl": write_curl}[arguments.command](arguments)


if __name__ == "__main__":
    main()

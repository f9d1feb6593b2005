#!/usr/bin/env python3
"""Figures of scripts/bench-serve: a process's memory and CPU, and the summary.

    bench/serve/report.py proc --pid PID
        {"rss_mb", "peak_rss_mb" (VmHWM), "threads", "cpu_seconds"} of a running process.
    bench/serve/report.py summary --meta META.json --wrk WRK.txt --previews PREVIEWS.json \
        --server-before PROC.json --server-after PROC.json (--render BENCH.txt | --render-rate N) \
        --sse SSE.json --sse-control SSE1.json --out results.json
        results.json and a table on stdout.

The preview load's figures come from wrk's own summary (the `bench-serve-wrk` line that
bench/serve/preview.lua prints: every request, latency percentiles in microseconds); the
in-process render rate from the output of `cargo bench --bench render_prompts` (prompts
rendered / median time to render them all, one thread). Standard library only.
"""

import argparse
import json
import os
import re
import sys


def proc(pid: int) -> dict:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key == "VmRSS":
                values["rss_mb"] = round(int(rest.split()[0]) / 1024, 1)
            elif key == "VmHWM":
                values["peak_rss_mb"] = round(int(rest.split()[0]) / 1024, 1)
            elif key == "Threads":
                values["threads"] = int(rest)
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    values["cpu_seconds"] = round((int(fields[11]) + int(fields[12]))
                                  / os.sysconf("SC_CLK_TCK"), 2)
    return values


def parse_wrk(path: str) -> dict:
    text = open(path).read()
    match = re.search(r"^bench-serve-wrk (\{.*\})$", text, re.M)
    if not match:
        sys.exit(f"report: no `bench-serve-wrk` line in {path}: did wrk run "
                 "bench/serve/preview.lua to its end? See that file.")
    return json.loads(match.group(1))


def parse_render(path: str) -> dict:
    text = open(path).read()
    graph = re.search(r"graph: (\d+) pages; (\d+) \(venture, block\) prompts, ([\d.]+) MB", text)
    render = re.search(r"render every prompt:\s+([\d.]+) ms \(([\d.]+) us per prompt\)", text)
    if not (graph and render):
        sys.exit(f"report: {path} has no 'graph: ...' and 'render every prompt: ...' lines; "
                 "has the output of benches/render_prompts.rs changed? Read that file and "
                 "update parse_render in bench/serve/report.py.")
    prompts = int(graph.group(2))
    milliseconds = float(render.group(1))
    return {
        "source": "cargo bench --bench render_prompts (median of 7, one thread)",
        "pages": int(graph.group(1)),
        "prompts": prompts,
        "mb_of_messages": float(graph.group(3)),
        "render_all_ms": milliseconds,
        "us_per_prompt": float(render.group(2)),
        "prompts_per_s": round(prompts / (milliseconds / 1000), 1),
    }


def summary(args) -> None:
    meta = json.load(open(args.meta))
    wrk = parse_wrk(args.wrk)
    previews = json.load(open(args.previews))
    before = json.load(open(args.server_before))
    after = json.load(open(args.server_after))
    if args.render:
        render = parse_render(args.render)
    else:
        render = {"source": "--render-rate (given)", "prompts_per_s": args.render_rate,
                  "us_per_prompt": round(1e6 / args.render_rate, 1)}
    sse = json.load(open(args.sse))
    control = json.load(open(args.sse_control)) if args.sse_control else None

    seconds = wrk["duration_us"] / 1e6
    requests = wrk["requests"]
    rate = requests / seconds
    errors = sum(wrk["errors"].values())
    cpu = after["cpu_seconds"] - before["cpu_seconds"]
    latency = {key: round(value / 1000, 2) for key, value in wrk["latency_us"].items()}
    preview = {
        "endpoint": "POST /v1/preview",
        "connections": meta["connections"],
        "wrk_threads": meta["wrk_threads"],
        "seconds": round(seconds, 2),
        "requests": requests,
        "requests_per_s": round(rate, 1),
        "latency_ms": latency,
        "errors": wrk["errors"],
        "mb_per_s": round(wrk["bytes"] / seconds / 1e6, 1),
        "graph": previews,
        "server": {
            "rss_mb_idle": before["rss_mb"],
            "rss_mb_at_end": after["rss_mb"],
            "peak_rss_mb": after["peak_rss_mb"],
            "threads_idle": before["threads"],
            "threads_at_end": after["threads"],
            "cpu_seconds": round(cpu, 2),
            "cpu_cores_busy": round(cpu / seconds, 2),
            "cpu_us_per_request": round(cpu / requests * 1e6, 1) if requests else None,
        },
        "load_before": meta["load_before_preview"],
    }
    ratio = rate / render["prompts_per_s"]
    same_prompts = ("prompts" not in render
                    or (render["prompts"] == previews["prompts"]
                        and abs(render["mb_of_messages"] - previews["mb_of_messages"]) < 0.2))

    def sse_figures(result: dict) -> dict:
        times = result["seconds_from_202"]
        job_seconds = result["job"]["seconds"]
        last_end = times["end"].get("max")
        return {
            "subscribers": result["subscribers"],
            "ok": result["ok"],
            "subscribers_ok": result["checks"]["subscribers_ok"],
            "events_per_subscriber": result["checks"]["events_per_subscriber"],
            "pairs": result["job"]["pairs"],
            "done": result["checks"]["done"],
            "failed": result["checks"]["failed"],
            "job_state": result["job"]["state"],
            "job_seconds": job_seconds,
            "seconds_202_to_first_end": times["end"].get("min"),
            "seconds_202_to_last_end": last_end,
            "seconds_202_to_all_connected": times["connected"].get("max"),
            "subscribers_connected_after_0.5s": times.get("connected_after_0.5s"),
            "last_end_minus_job_seconds": (round(last_end - job_seconds, 3)
                                           if last_end is not None and job_seconds else None),
            "server": result["server"],
            "client_cpu_seconds": result["client_cpu_seconds"],
            "checks": result["checks"],
        }

    results = {
        "meta": meta,
        "preview": preview,
        "render_in_process": render,
        "ratio_served_to_in_process": round(ratio, 3),
        "same_prompts_as_bench": same_prompts,
        "sse": sse_figures(sse),
        "sse_one_subscriber": sse_figures(control) if control else None,
    }
    if control:
        results["sse_rss_mb_for_subscribers"] = round(
            sse["server"]["peak_rss_mb"] - control["server"]["peak_rss_mb"], 1)
    with open(args.out, "w") as out:
        json.dump(results, out, indent=2)

    rows = [
        ("preview: requests/s", f"{rate:,.0f} ({meta['connections']} connections, "
                                f"{seconds:.0f} s, {requests:,} requests, {errors} errors)"),
        ("preview: latency p50 / p90 / p99 / max",
         f"{latency['p50']} / {latency['p90']} / {latency['p99']} / {latency['max']} ms"),
        ("preview: server RSS idle / peak", f"{before['rss_mb']} / {after['peak_rss_mb']} MB "
                                            f"({after['threads']} threads at the end)"),
        ("preview: server CPU", f"{cpu / seconds:.2f} cores, "
                                f"{preview['server']['cpu_us_per_request']} us per request"),
        ("in-process render (one thread)",
         f"{render['prompts_per_s']:,.0f} prompts/s ({render['us_per_prompt']} us per prompt)"),
        ("ratio served / in-process", f"{ratio:.3f}" + ("" if same_prompts else
                                       "  (NOT the same prompts: see same_prompts_as_bench)")),
    ]
    for label, result in (("sse", sse), ("sse, 1 subscriber", control)):
        if not result:
            continue
        figures = sse_figures(result)
        rows += [
            (f"{label}: subscribers complete",
             f"{figures['subscribers_ok']}/{figures['subscribers']}, "
             f"{figures['events_per_subscriber']} events each, "
             f"{figures['done']} done + {figures['failed']} failed of {figures['pairs']} pairs"),
            (f"{label}: job / 202 to last end",
             f"{figures['job_seconds']:.2f} s / {figures['seconds_202_to_last_end']:.2f} s "
             f"(first end {figures['seconds_202_to_first_end']:.2f} s, all connected at "
             f"{figures['seconds_202_to_all_connected']:.2f} s)"),
            (f"{label}: server / client CPU",
             f"{result['server']['cpu_seconds']} s / {result['client_cpu_seconds']} s"),
            (f"{label}: server RSS before / peak / after",
             f"{result['server']['rss_mb_before']} / {result['server']['peak_rss_mb']} / "
             f"{result['server']['rss_mb_1s_after']} MB"),
        ]
    width = max(len(label) for label, _ in rows)
    print(f"bench-serve: {meta['inncopilot']} ({meta['inncopilot_binary']}), "
          f"{meta['cores']} cores")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print(f"  load before: {meta['load_before_preview']}")
    print(f"results: {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("proc")
    p.add_argument("--pid", type=int, required=True)
    s = commands.add_parser("summary")
    s.add_argument("--meta", required=True)
    s.add_argument("--wrk", required=True)
    s.add_argument("--previews", required=True)
    s.add_argument("--server-before", required=True)
    s.add_argument("--server-after", required=True)
    s.add_argument("--render")
    s.add_argument("--render-rate", type=float)
    s.add_argument("--sse", required=True)
    s.add_argument("--sse-control")
    s.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "proc":
        print(json.dumps(proc(args.pid)))
    else:
        if not (args.render or args.render_rate):
            sys.exit("report: give --render BENCH_OUTPUT or --render-rate N")
        summary(args)


if __name__ == "__main__":
    main()

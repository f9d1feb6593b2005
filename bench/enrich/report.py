#!/usr/bin/env python3
"""Figures of scripts/bench-enrich. Two commands:

    report.py record --tool T --pairs N --concurrency C --time TIME.txt --requests R
                     [--log LOG] [--exit-code E] [--load TEXT] >> RECORDS.jsonl
        One measured run as a JSON line: wall and CPU seconds and peak RSS from
        `/usr/bin/time -v`, the requests the mock served during it, and (inncopilot) the
        engine's own timing from its `-v` log: "N pair(s) in X s; writing the drafts took
        Y s of it (Z ms per pair drafted)".

    report.py summary --records RECORDS.jsonl --latency-ms MS --pairs N --small-pairs M
                      --meta META.json --out RESULTS.json
        The table on stdout and RESULTS.json: per concurrency, the ideal
        ceil(pairs / concurrency) x latency, our wall time against it, promptfoo's and curl's
        against ours, and peak RSS at N pairs against M pairs.

Standard library only.
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path

WRITER_LINE = re.compile(r"(\d+) pair\(s\) in ([\d.]+) s; writing the drafts took ([\d.]+) s "
                         r"of it \(([\d.]+) ms per pair drafted\)")


def read_time(path: Path) -> dict:
    """Wall seconds, CPU seconds (user + system) and peak RSS (kB) from GNU time's -v report."""
    fields = {"Elapsed (wall clock) time": "wall", "User time (seconds)": "user",
              "System time (seconds)": "system", "Maximum resident set size (kbytes)": "rss"}
    found = {}
    for line in path.read_text().splitlines():
        label, _, value = line.strip().rpartition(": ")
        if label.startswith("Elapsed (wall clock) time"):
            label = "Elapsed (wall clock) time"
            clock = value.split(":")
            value = sum(float(part) * 60 ** power for power, part in enumerate(reversed(clock)))
        if label in fields:
            found[fields[label]] = float(value)
    if len(found) != len(fields):
        sys.exit(f"report.py: {path} is not a `/usr/bin/time -v` report")
    return found


def record(arguments) -> None:
    timed = read_time(arguments.time)
    cpu = timed["user"] + timed["system"]
    # CPU time per pair is the overhead that does not depend on the machine's other load.
    entry = {"tool": arguments.tool, "pairs": arguments.pairs,
             "concurrency": arguments.concurrency, "wall_s": round(timed["wall"], 3),
             "cpu_s": round(cpu, 2), "cpu_ms_per_pair": round(1000 * cpu / arguments.pairs, 2),
             "peak_rss_mb": round(timed["rss"] / 1024, 1), "requests": arguments.requests,
             "exit_code": arguments.exit_code, "load_before": arguments.load}
    if arguments.log:
        match = WRITER_LINE.search(arguments.log.read_text(errors="replace"))
        if match:
            entry.update(engine_pairs=int(match[1]), engine_s=float(match[2]),
                         writer_s=float(match[3]), writer_ms_per_pair=float(match[4]))
    print(json.dumps(entry))


def find(records: list[dict], tool: str, pairs: int, concurrency: int) -> dict | None:
    # The last matching record: a re-run within one invocation replaces an earlier one.
    matching = [r for r in records
                if r["tool"] == tool and r["pairs"] == pairs and r["concurrency"] == concurrency]
    return matching[-1] if matching else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarise(arguments) -> None:
    records = [json.loads(line) for line in arguments.records.read_text().splitlines() if line]
    latency = arguments.latency_ms / 1000
    concurrencies = sorted({r["concurrency"] for r in records if r["pairs"] == arguments.pairs})
    rows = []
    for concurrency in concurrencies:
        ours = find(records, "inncopilot", arguments.pairs, concurrency)
        small = find(records, "inncopilot", arguments.small_pairs, concurrency)
        promptfoo = find(records, "promptfoo", arguments.pairs, concurrency)
        curl = find(records, "curl", arguments.pairs, concurrency)
        ideal = math.ceil(arguments.pairs / concurrency) * latency
        row = {
            "concurrency": concurrency,
            "pairs": arguments.pairs,
            "ideal_s": round(ideal, 3),
            "inncopilot": ours,
            "inncopilot_ratio_to_ideal": ratio(ours and ours["wall_s"], ideal),
            "inncopilot_small": small,
            "rss_ratio_pairs_vs_small": ratio(ours and ours["peak_rss_mb"],
                                              small and small["peak_rss_mb"]),
            "promptfoo": promptfoo,
            "promptfoo_ratio_to_ideal": ratio(promptfoo and promptfoo["wall_s"], ideal),
            "ours_over_promptfoo": ratio(ours and ours["wall_s"],
                                         promptfoo and promptfoo["wall_s"]),
            "curl": curl,
            "curl_ratio_to_ideal": ratio(curl and curl["wall_s"], ideal),
            "ours_over_curl": ratio(ours and ours["wall_s"], curl and curl["wall_s"]),
        }
        row["targets"] = {
            "wall_within_5pct_of_ideal": _at_most(row["inncopilot_ratio_to_ideal"], 1.05),
            "rss_within_1_2x_of_small": _at_most(row["rss_ratio_pairs_vs_small"], 1.2),
            "faster_than_promptfoo": _below(row["ours_over_promptfoo"], 1.0),
        }
        rows.append(row)
    meta = json.loads(arguments.meta.read_text()) if arguments.meta else {}
    results = {**meta, "latency_ms": arguments.latency_ms, "pairs": arguments.pairs,
               "small_pairs": arguments.small_pairs, "runs": rows, "records": records}
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(rows, arguments.small_pairs)
    print(f"\nresults: {arguments.out}")


def _at_most(value, limit):
    return None if value is None else value <= limit


def _below(value, limit):
    return None if value is None else value < limit


def cell(value, digits=2, suffix=""):
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def print_table(rows: list[dict], small_pairs: int) -> None:
    header = ("conc", "pairs", "ideal s", "ours s", "/ideal", "writer s", "writer ms/pair",
              "CPU ms/pair", "ours MB", f"MB@{small_pairs}", "MB ratio", "promptfoo s",
              "/ideal", "pf CPU ms/pair", "pf MB", "ours/pf", "curl s", "/ideal", "ours/curl",
              "requests ours/pf/curl")
    table = [header]
    for row in rows:
        ours, small, pf = row["inncopilot"] or {}, row["inncopilot_small"] or {}, \
            row["promptfoo"] or {}
        curl = row.get("curl") or {}
        table.append((
            str(row["concurrency"]), str(row["pairs"]), cell(row["ideal_s"]),
            cell(ours.get("wall_s")), cell(row["inncopilot_ratio_to_ideal"], 3),
            cell(ours.get("writer_s")), cell(ours.get("writer_ms_per_pair"), 1),
            cell(ours.get("cpu_ms_per_pair"), 1),
            cell(ours.get("peak_rss_mb"), 1), cell(small.get("peak_rss_mb"), 1),
            cell(row["rss_ratio_pairs_vs_small"], 3),
            cell(pf.get("wall_s")), cell(row["promptfoo_ratio_to_ideal"], 3),
            cell(pf.get("cpu_ms_per_pair"), 1),
            cell(pf.get("peak_rss_mb"), 1), cell(row["ours_over_promptfoo"], 3),
            cell(curl.get("wall_s")), cell(row["curl_ratio_to_ideal"], 3),
            cell(row["ours_over_curl"], 3),
            f"{ours.get('requests', '-')}/{pf.get('requests', '-')}/{curl.get('requests', '-')}"))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(text.rjust(width) for text, width in zip(line, widths)))
    print("\ntargets: ours/ideal <= 1.05, MB ratio <= 1.2, ours/pf < 1")
    for row in rows:
        verdict = ", ".join(f"{name} {'yes' if ok else 'NO' if ok is False else '-'}"
                            for name, ok in row["targets"].items())
        print(f"  concurrency {row['concurrency']}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("record")
    one.add_argument("--tool", required=True)
    one.add_argument("--pairs", type=int, required=True)
    one.add_argument("--concurrency", type=int, required=True)
    one.add_argument("--time", type=Path, required=True)
    one.add_argument("--requests", type=int, required=True)
    one.add_argument("--log", type=Path)
    one.add_argument("--exit-code", type=int, default=0)
    one.add_argument("--load", default="", help="uptime before the run")
    summary = commands.add_parser("summary")
    summary.add_argument("--records", type=Path, required=True)
    summary.add_argument("--latency-ms", type=float, required=True)
    summary.add_argument("--pairs", type=int, required=True)
    summary.add_argument("--small-pairs", type=int, required=True)
    summary.add_argument("--meta", type=Path)
    summary.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    record(arguments) if arguments.command == "record" else summarise(arguments)


if __name__ == "__main__":
    main()

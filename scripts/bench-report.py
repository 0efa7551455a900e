#!/usr/bin/env python3
"""Merges the bench JSON files into one and renders the bench table.

    scripts/bench-report.py OUT.json IN.json... [--docs docs/benchmarks.md]

Each input is the `cargo bench --bench llmux` document ({"machine", "cases"})
or a list of case objects (bindings/python/bench/bench_host.py). The output
keeps one object per case. The table has one row per checked figure
(figure, value, target, met/missed); with --docs FILE (or its older name
--readme FILE) it replaces the lines between `<!-- bench-table:start -->`
and `<!-- bench-table:end -->` in FILE, and says so on stderr when FILE or
the markers are missing.
"""

import json
import sys
from pathlib import Path


def load(path):
    doc = json.loads(Path(path).read_text())
    if isinstance(doc, list):
        return {}, doc
    return doc.get("machine", {}), doc.get("cases", [])


def table(cases):
    lines = ["| case | figure | value | target | result |", "| --- | --- | --- | --- | --- |"]
    for c in cases:
        for k in c.get("checks", []):
            verdict = {True: "met", False: "missed"}.get(k.get("pass"), "")
            lines.append(f"| {c['case']} | {k['figure']} | {k['value']} | {k['target']} | {verdict} |")
    return "\n".join(lines)


def main(argv):
    docs = None
    for flag in ("--docs", "--readme"):
        if flag in argv:
            i = argv.index(flag)
            docs = argv[i + 1]
            argv = argv[:i] + argv[i + 2:]
    out, inputs = argv[0], argv[1:]
    machine, cases, sources = {}, [], []
    for p in inputs:
        if not Path(p).is_file():
            continue
        m, cs = load(p)
        machine = machine or m
        for c in cs:
            c.setdefault("source", Path(p).name)
        cases.extend(cs)
        sources.append(Path(p).name)
    doc = {"suite": "llmux", "machine": machine, "sources": sources, "cases": cases}
    Path(out).write_text(json.dumps(doc, indent=1))
    t = table(cases)
    print(t)
    if docs:
        start, end = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
        text = Path(docs).read_text() if Path(docs).is_file() else ""
        if start in text and end in text:
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            Path(docs).write_text(f"{head}{start}\n{t}\n{end}{tail}")
            print(f"bench table written to {docs}", file=sys.stderr)
        else:
            print(f"bench-report: no {start} ... {end} block in {docs}; table not written",
                  file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])

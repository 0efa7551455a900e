#!/usr/bin/env python3
"""Runs the code blocks of README.md and docs/*.md that are marked runnable.

A block is marked by an HTML comment on the line right before its fence:

    <!-- run: GROUP [file=NAME] [expect="TEXT"]... [skip-unless="SHELL"] -->

- Blocks of one GROUP (per Markdown file) run in document order, in one bash
  session (so `export`s, shell functions and background jobs carry over), in
  a fresh temporary directory. Background jobs are killed when it ends.
- `file=NAME`: the block is not run but written to NAME (a program, a
  config); a later block of the group runs it.
- `expect="TEXT"`: the block's output (stdout and stderr) must contain TEXT.
- `cwd=repo`: the group runs in the repository root instead (for
  commands the page says to run from the checkout).
- `skip-unless="SHELL"`: the whole group is skipped, with the reason printed,
  when SHELL (run in the repository root) fails.

Every ```sh, ```python and ```c block must be either marked runnable or
marked `<!-- no-run: REASON -->`, so a new snippet cannot slip through
untested. Configuration fragments (```json, ```toml, ```cmake ...) and
excerpts in other languages need no marker.

    tests/docs/run_snippets.py [GROUP...]    # default: every group

Environment: the caller (tests/docs/run.sh) puts target/debug (the `llmux`
and `llmux-fleet` binaries, standing for `cargo install`) and a virtualenv
with the openai SDK first on PATH, and sets LLMUX_LIBRARY.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED_LANGS = {"sh", "bash", "shell", "console", "python", "py", "c"}
MARK = re.compile(r"^<!--\s*(run|no-run):\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
PORT = 4000  # the gateway's default port, used as printed when it is free


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    file: str | None = None
    expect: list[str] = field(default_factory=list)
    skip_unless: str | None = None
    cwd_repo: bool = False


def parse(path: Path) -> tuple[dict[str, list[Block]], list[str]]:
    """The runnable groups of one file, and the unmarked blocks (as problems)."""
    lines = path.read_text().splitlines()
    groups: dict[str, list[Block]] = {}
    problems: list[str] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or lines[i].strip() == "```":
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        text = "\n".join(lines[i + 1 : j]) + "\n"
        mark = MARK.match(lines[start - 1]) if start > 0 else None
        rel = path.relative_to(ROOT)
        if mark and mark.group(1) == "run":
            words = shlex.split(mark.group(2))
            if not words:
                problems.append(f"{rel}:{start + 1}: run marker without a group name")
            else:
                b = Block(path, start + 1, lang, text)
                for w in words[1:]:
                    key, _, value = w.partition("=")
                    if key == "file":
                        b.file = value
                    elif key == "expect":
                        b.expect.append(value)
                    elif key == "cwd" and value == "repo":
                        b.cwd_repo = True
                    elif key == "skip-unless":
                        b.skip_unless = value
                    else:
                        problems.append(f"{rel}:{start + 1}: unknown marker option {key!r}")
                if b.file is None and lang not in ("sh", "bash", "shell"):
                    problems.append(f"{rel}:{start + 1}: a runnable ```{lang} block needs file=NAME")
                groups.setdefault(words[0], []).append(b)
        elif not mark and lang in CHECKED_LANGS:
            problems.append(
                f"{rel}:{start + 1}: ```{lang} block with neither <!-- run: GROUP --> "
                "nor <!-- no-run: REASON --> before it"
            )
        i = j + 1
    return groups, problems


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def script_for(blocks: list[Block], work: Path, port: int) -> str:
    """One bash script: each block's output goes to its own file, then is
    shown and checked."""
    out = [
        "set -euo pipefail",
        "exec 3>&1 4>&2",
        "current=",
        # On failure: back to the real stdout, show what the block printed.
        'on_exit() { rc=$?; exec 1>&3 2>&4; '
        'if [ $rc -ne 0 ] && [ -n "$current" ]; then cat "$current"; '
        'echo "docs test: the block above failed (exit $rc)"; fi; '
        'for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; exit $rc; }',
        "trap on_exit EXIT",
    ]
    for n, b in enumerate(blocks):
        text = b.text
        if port != PORT:
            text = text.replace(str(PORT), str(port))
        where = f"{b.path.relative_to(ROOT)}:{b.line}"
        if b.file is not None:
            (work / b.file).parent.mkdir(parents=True, exist_ok=True)
            (work / b.file).write_text(text)
            out.append(f"echo {shlex.quote(f'--- {where}: wrote {b.file}')}")
            continue
        o = f"{work}/.out.{n}"
        out.append(f"echo {shlex.quote(f'--- {where}')}")
        out.append(f"current={shlex.quote(o)}; exec >{shlex.quote(o)} 2>&1")
        out.append(text.rstrip("\n"))
        out.append("exec 1>&3 2>&4; current=")
        out.append(f"sed 's/^/    /' {shlex.quote(o)}")
        for e in b.expect:
            msg = f"docs test: {where}: the output does not contain {e!r}"
            out.append(f"grep -qF -- {shlex.quote(e)} {shlex.quote(o)} || {{ echo {shlex.quote(msg)}; exit 1; }}")
            out.append(f"echo {shlex.quote(f'    ok: contains {e!r}')}")
    return "\n".join(out) + "\n"


def main() -> int:
    wanted = set(sys.argv[1:])
    files = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    all_groups: list[tuple[Path, str, list[Block]]] = []
    problems: list[str] = []
    for f in files:
        groups, p = parse(f)
        problems += p
        all_groups += [(f, g, bs) for g, bs in groups.items()]
    if problems:
        print("docs test: unmarked or malformed blocks:\n  " + "\n  ".join(problems))
        return 1
    if not any(p.name == "README.md" and p.parent == ROOT for p, _, _ in all_groups):
        print("docs test: README.md has no runnable block")
        return 1

    failed: list[str] = []
    ran = skipped = 0
    for path, name, blocks in all_groups:
        if wanted and name not in wanted:
            continue
        label = f"{path.relative_to(ROOT)} [{name}]"
        cond = next((b.skip_unless for b in blocks if b.skip_unless), None)
        if cond is not None:
            r = subprocess.run(["bash", "-c", cond], cwd=ROOT, capture_output=True)
            if r.returncode != 0:
                print(f"== {label}: SKIPPED, condition failed: {cond}")
                skipped += 1
                continue
        if sum(len(b.expect) for b in blocks) == 0:
            print(f"== {label}: no expect= on any block (a test must assert something)")
            failed.append(label)
            continue
        port = PORT if not port_in_use(PORT) else free_port()
        note = "" if port == PORT else f" (port {PORT} is busy: using {port} instead)"
        print(f"== {label}: {len(blocks)} block(s){note}", flush=True)
        with tempfile.TemporaryDirectory(prefix="llmux-docs-") as tmp:
            work = Path(tmp)
            script = script_for(blocks, work, port)
            (work / ".script.sh").write_text(script)
            t0 = time.monotonic()
            cwd = ROOT if any(b.cwd_repo for b in blocks) else work
            r = subprocess.run(["bash", str(work / ".script.sh")], cwd=cwd, timeout=300)
            took = time.monotonic() - t0
        ran += 1
        if r.returncode != 0:
            print(f"== {label}: FAILED ({took:.1f} s)")
            failed.append(label)
        else:
            print(f"== {label}: ok ({took:.1f} s)")
    print(f"docs test: {ran} group(s) run, {skipped} skipped, {len(failed)} failed")
    for f in failed:
        print(f"  failed: {f}")
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

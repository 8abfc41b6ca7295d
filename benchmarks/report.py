"""Write one benchmark's section of BENCHMARKS.md, leaving every other section as it is.

Each script owns the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->``; a new section is
appended. The file is written atomically, so two benchmarks finishing together cannot corrupt it
(the lock makes their read-modify-write sequential).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hwsearch.io import atomic_write_json, atomic_write_text, file_lock

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery figure below comes from a script in `benchmarks/`; the command is given with each section.\n"


def kept(folder: Path, name: str, key: str, work: Callable[[], Any], compute: bool = True) -> Any:
    """``work()`` once per (``folder/name.json``, ``key``), so a benchmark interrupted or run again with
    more seeds continues where it stopped (None: not kept and not ``compute``)."""
    path = folder / f"{name}.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if key in known:
        return known[key]
    if not compute:
        return None
    value = work()
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / f"{name}.lock"):  # two benchmarks may add keys to one file at once
        known = json.loads(path.read_text()) if path.exists() else {}
        atomic_write_json(path, {**known, key: value})
    return value


def spread(values: Sequence[float], fmt: str = ".1f") -> str:
    """``median [min, max]`` of ``values`` (the median alone for one value)."""
    mid = format(statistics.median(values), fmt)
    return mid if len(values) < 2 else f"{mid} [{format(min(values), fmt)}, {format(max(values), fmt)}]"


def machine() -> str:
    """One line naming this machine: CPU model, cores, Python and torch versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc on macOS: keep platform's answer
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    parts = [cpu, f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    with contextlib.suppress(ImportError):
        import torch

        parts.append(f"torch {torch.__version__}")
    return ", ".join(parts)


def git_rev() -> str:
    """Short commit hash of the working tree, or 'unknown'."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(name: str, body: str, command: str) -> None:
    """Replace (or append) section ``name`` of BENCHMARKS.md with ``body``, headed by the command."""
    text = (
        f"<!-- BEGIN {name} -->\n{body.rstrip()}\n\n"
        f"_Command:_ `{command}` — machine: {machine()}; commit {git_rev()}.\n<!-- END {name} -->"
    )
    with file_lock(ROOT / ".cache" / "benchmarks.lock"):
        old = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
        pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
        new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip() + "\n\n" + text + "\n"
        atomic_write_text(BENCHMARKS_MD, new)

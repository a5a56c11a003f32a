"""Instruction counts of a command under valgrind's callgrind, for the micro-benchmarks.

A count of instructions does not move with the machine's load, unlike a time: the
micro-benchmarks run their command twice, with and without the work measured, and report
the difference per unit of work. The hash seed is fixed so that two runs of the same code
take the same paths through dicts and sets.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path


def instructions(command: list[str], keep: Path | None = None) -> int:
    """Instructions ``command`` ran (callgrind's total); ``keep``: save its profile there."""
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as out:
        path = keep or Path(out.name)
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={path}"]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(valgrind + command, check=True, env=env, capture_output=True)
        text = path.read_text(encoding="utf-8")
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no instruction total in callgrind's output")
    return int(match.group(1))

"""Sampling a running daemon with py-spy and summarising where its time goes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# leading directories that say nothing: site-packages, the stdlib, the repo
_PREFIX = re.compile(
    r"^.*?(?:site-packages/|/python3\.\d+/|"
    + re.escape(str(Path(__file__).resolve().parent.parent))
    + r"/)"
)

# "function (path/to/file.py:123)" -> function, file (line numbers dropped, so
# all samples in one function add up)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy")


def start_recording(
    pid: int, output: Path, seconds: float, *, native: bool = True, rate: int = 500
) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` on ``pid`` in the background (raw collapsed stacks).

    ``native`` also samples C frames, so time spent in syscalls (the socket
    ``write`` behind ``transport.write``) shows apart from Python code; py-spy
    then pauses the process for each sample, which slows it but keeps the
    proportions.  Without it, sampling does not pause the process, but C time is
    charged to the Python function that called it.
    """
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    command = [binary, "record", "--pid", str(pid), "--rate", str(rate)]
    command += ["--duration", str(max(1, round(seconds))), "--format", "raw"]
    command += ["--native" if native else "--nonblocking", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass(frozen=True)
class FunctionCost:
    name: str
    self_share: float  # fraction of all samples with this function on top
    total_share: float  # fraction of all samples with it anywhere on the stack


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = _PREFIX.sub("", match["file"])
    return f"{match['func']} ({path})"


def summarise(raw: Path, top: int = 25) -> tuple[int, list[FunctionCost]]:
    """Total samples and the ``top`` functions by self time, with inclusive time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if f]
        if not raw_frames or not all(_FRAME.match(f.strip()) for f in raw_frames):
            continue  # a torn read (possible with --nonblocking): not a stack
        frames = [_short(f) for f in raw_frames]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return 0, []
    names = [name for name, _ in own.most_common(top)]
    # plus the project's own functions by inclusive time, whatever their self time
    for name, _ in inclusive.most_common():
        if len(names) >= top * 2:
            break
        if "postfix_sts/" in name and name not in names:
            names.append(name)
    costs = [FunctionCost(n, own[n] / total, inclusive[n] / total) for n in names]
    return total, costs

"""A put's encode and commitment phases run in bounded memory (a real subprocess, peak RSS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FILE = 96 << 20
SEGMENT = 1 << 20


def test_put_encoding_memory_is_bounded_by_segments_not_file(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    with src.open("wb") as f:
        f.truncate(FILE)  # zeros; encryption makes every segment's bytes random anyway
    work = tmp_path / "work"
    work.mkdir()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.client.memory_probe", str(src), str(work), str(SEGMENT)],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["size"] == FILE
    assert result["piece_bytes"] >= FILE // 2  # each piece is half the file (k=2)
    # The pipeline holds a few segments (and their shares), comm_d one 1 MiB subtree: far
    # below one piece (48 MiB), let alone the file (96 MiB).
    assert result["growth"] < 40 << 20, result

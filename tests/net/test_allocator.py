"""glibc tuning: frame-sized buffers churned like a transfer's stop costing page faults.

Each case runs in a fresh interpreter: the thresholds are process-wide and this one's are
already set by every Node the other tests built.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A push receiver's pattern: 1 MiB frame bodies joined from 64 KiB reads, queued, freed in
# arrival order.  Prints the minor page faults of the second (warm) pass.
CHURN = textwrap.dedent(
    """
    import resource, sys
    from collections import deque
    from storaged.net.allocator import tune_allocator
    print(tune_allocator() if sys.argv[1] == "tuned" else None)

    def churn():
        queue = deque()
        piece = b"x" * 65536
        for _ in range(400):
            queue.append(b"".join([piece] * 16))
            if len(queue) > 6:
                queue.popleft()

    churn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    churn()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the allocator is only tuned on glibc",
)


def run_churn(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    clean.pop("GLIBC_TUNABLES", None)
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


@glibc_only
def test_tuned_allocator_reuses_frame_buffers() -> None:
    _, plain_faults = run_churn("plain")
    tuned, tuned_faults = run_churn("tuned")
    assert tuned == "True"
    # 400 MiB churned: untuned glibc faults pages back in (1,500 here); tuned, none are.
    assert tuned_faults < 64
    assert plain_faults > 10 * max(tuned_faults, 16)


@glibc_only
def test_user_malloc_settings_win() -> None:
    tuned, _ = run_churn("tuned", MALLOC_ARENA_MAX="2")
    assert tuned == "False"

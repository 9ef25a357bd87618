"""Helper for test_shares_crash: write shares forever, reporting each step on stdout.

Usage: python crash_writer.py ROOT INDEX_DIR.  Prints one line per chunk written ("chunk") and per
share committed ("commit <segment>"), flushed, so the parent can SIGKILL at a chosen step.
"""

from __future__ import annotations

import sys

import blake3

from storaged.store.kv import LevelKV
from storaged.store.shares import ShareKey, ShareStore

CHUNK = 64 * 1024
CHUNKS = 4


def main() -> None:
    root, index = sys.argv[1], sys.argv[2]
    store = ShareStore.open(root, LevelKV(index))
    segment = 0
    while True:
        data = bytes([segment % 251]) * (CHUNK * CHUNKS) + segment.to_bytes(4, "big")
        w = store.writer(ShareKey(b"\x07" * 32, segment, 0), blake3.blake3(data).digest())
        for off in range(0, len(data), CHUNK):
            w.write(data[off : off + CHUNK])
            print("chunk", flush=True)
        w.commit()
        print(f"commit {segment}", flush=True)
        segment += 1


if __name__ == "__main__":
    main()

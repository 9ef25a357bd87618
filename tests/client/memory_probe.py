"""Run as a script: encode a large file into piece files and compute the commitments, then
print the peak RSS growth in bytes (``ru_maxrss`` after minus before) as JSON."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from storaged.client.piecefiles import PieceFiles
from storaged.data.pipeline import encode_file


def main(src: Path, work: Path, segment_size: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    (work / "pieces").mkdir()
    pieces = PieceFiles(work / "pieces", 4)
    with src.open("rb") as f:
        manifest, _ = encode_file(f, pieces, k=2, n=4, segment_size=segment_size)
    pieces.close()
    commits = pieces.commitments()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"growth": after - before, "before": before, "size": manifest.size,
                      "pieces": len(commits), "piece_bytes": pieces.paths[0].stat().st_size}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))

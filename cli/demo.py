"""`make run` for now: a data-layer round trip on a random sample file, with six local
"providers" (directories), two of which are then lost.  Exits non-zero on any mismatch."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from storaged.data.capability import Capability, format_capability, parse_capability
from storaged.data.manifest import decode_manifest
from storaged.data.pipeline import decode_file, encode_file
from storaged.errors import StoragedError

SAMPLE_MIB = 12
K, N = 4, 6


def run(console: Console) -> int:
    """Run the round trip in a temp dir; return the exit code."""
    with tempfile.TemporaryDirectory(prefix="storaged-demo-") as tmp:
        root = Path(tmp)
        sample = root / "sample.bin"
        sample.write_bytes(os.urandom(SAMPLE_MIB * 1024 * 1024))
        providers = [root / f"provider-{i}" for i in range(N)]
        for p in providers:
            p.mkdir()

        def sink(segment: int, shares: list[bytes]) -> None:
            for i, share in enumerate(shares):
                (providers[i] / f"{segment:08d}.share").write_bytes(share)

        t0 = time.perf_counter()
        with sample.open("rb") as src:
            manifest, key = encode_file(src, sink, k=K, n=N)
        put_s = time.perf_counter() - t0
        manifest_bytes = manifest.encode()
        cap_text = format_capability(Capability(manifest.cid(), key))
        for p in providers:
            (p / "manifest.cbor").write_bytes(manifest_bytes)

        lost = providers[1:3]
        for p in lost:
            shutil.rmtree(p)
        alive = [i for i, p in enumerate(providers) if p.exists()]

        cap = parse_capability(cap_text)
        fetched = decode_manifest((providers[alive[0]] / "manifest.cbor").read_bytes(), cap.cid)

        def source(segment: int) -> dict[int, bytes]:
            return {i: (providers[i] / f"{segment:08d}.share").read_bytes() for i in alive[:K]}

        out = root / "restored.bin"
        t0 = time.perf_counter()
        with out.open("wb") as dst:
            decode_file(fetched, cap.key, source, dst)
        get_s = time.perf_counter() - t0

        same = _sha256(sample) == _sha256(out)
        size = sample.stat().st_size
        table = Table(title="storaged data-layer round trip", show_header=False)
        table.add_row("file", f"{size / 2**20:.1f} MiB random")
        table.add_row(
            "segments", f"{len(manifest.segments)} x {manifest.segment_size // 2**20} MiB"
        )
        table.add_row("erasure", f"{K}-of-{N}, stored {N * size / K / 2**20:.1f} MiB in shares")
        table.add_row("manifest", f"{len(manifest_bytes)} bytes, CID {manifest.cid()}")
        table.add_row("lost providers", ", ".join(p.name for p in lost))
        table.add_row("put", f"{put_s:.2f} s, {size / put_s / 1e6:.0f} MB/s")
        table.add_row("get", f"{get_s:.2f} s, {size / get_s / 1e6:.0f} MB/s (from {alive[:K]})")
        table.add_row("result", "[green]byte-identical[/]" if same else "[red]MISMATCH[/]")
        console.print(table)
        console.print(f"capability: {cap_text}", soft_wrap=True, highlight=False)
        return 0 if same else 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    console = Console()
    try:
        code = run(console)
    except StoragedError as exc:
        console.print(f"[red]error:[/] {exc}")
        code = exc.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()

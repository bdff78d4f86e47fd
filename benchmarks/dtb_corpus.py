"""Import every DTB under a directory (e.g. Debian's linux-image-*-arm64 package) and report.

Usage: python benchmarks/dtb_corpus.py DIR

Get the corpus on a Debian machine with:
    dpkg --add-architecture arm64 && apt-get update
    apt-get download linux-image-6.1.0-56-arm64:arm64
    dpkg-deb -x linux-image-*.deb corpus
Prints how many imported, the failures (there should be none), and the time per blob.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from socmem.errors import InputError
from socmem.soc.dt_import import import_dtb
from socmem.soc.loader import dump_soc, soc_from_doc
from socmem.yamlfile import parse_yaml


def main(root: str) -> int:
    blobs = sorted(Path(root).rglob("*.dtb"))
    if not blobs:
        print(f"no .dtb files under {root}")
        return 2
    failures: list[tuple[Path, str]] = []
    kinds: Counter[str] = Counter()
    iommu_models: Counter[str] = Counter()
    t0 = time.perf_counter()
    for blob in blobs:
        try:
            result = import_dtb(blob)
            again = soc_from_doc(parse_yaml(dump_soc(result.soc), str(blob))).soc
            if again != result.soc:
                failures.append((blob, "YAML round trip changed the description"))
            kinds.update(m.kind.value for m in result.soc.masters)
            iommu_models.update(i.model.value for i in result.soc.iommus)
        except InputError as exc:
            failures.append((blob, exc.render()))
        except Exception as exc:  # a bug: report it, keep going
            failures.append((blob, f"BUG {type(exc).__name__}: {exc}"))
    dt = time.perf_counter() - t0
    print(
        f"{len(blobs) - len(failures)}/{len(blobs)} DTBs imported and round-tripped "
        f"in {dt:.1f} s ({dt / len(blobs) * 1e3:.1f} ms each)"
    )
    print("masters by kind:", dict(kinds.most_common()))
    print("IOMMUs by model:", dict(iommu_models.most_common()))
    for blob, why in failures:
        print(f"FAIL {blob}: {why}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))

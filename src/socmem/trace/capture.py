"""``socmem capture``: the shell script a user runs as root on the board.

The script needs nothing but a POSIX shell and busybox: it enables the DMA-related trace
events the running kernel has (``iommu``, ``dma`` (6.12+), ``dma_fence``, ``cma``,
``swiotlb``), adds kprobes on the DMA API, dma-iommu, the IOVA allocator, io-pgtable and
the SMMUv3 command queue where tracepoints are missing (each only if its symbol is in
``/proc/kallsyms``; the outcome of each is written to ``probe-results.txt``), runs the
given command between two ``trace_marker`` lines, and collects the trace, dmesg,
``dma_buf/bufinfo``, the fdinfo of every dma-buf fd, the IOMMU groups, ``/proc/iomem``
and friends, and the device tree blob into one tarball that ``socmem trace analyze`` and
``socmem replay`` read.

Probe arguments use ``$argN`` (``HAVE_FUNCTION_ARG_ACCESS_API``: arm64, x86, riscv ...)
and ``+0(+0($arg1)):string`` for a ``struct device *`` (``dev->kobj.name``, the first
field of the first field), so they do not depend on one kernel's structure layout.
Layout-dependent probes (a domain pointer inside ``struct device``, as in the replay
fixture's ``kprobe_events.txt``) can be added with ``--probes FILE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from socmem.errors import InputError
from socmem.infile import read_text

EVENT_SYSTEMS = ("iommu", "dma", "dma_fence", "cma", "swiotlb")
GROUP = "socmem"


@dataclass(frozen=True)
class Probe:
    """One kprobe (``p``) or kretprobe (``r``): its event name, symbol and fetch args."""

    name: str
    symbol: str
    args: str = ""
    ret: bool = False

    def line(self) -> str:
        """The ``kprobe_events`` definition (Documentation/trace/kprobetrace.rst)."""
        kind = "r" if self.ret else "p"
        return f"{kind}:{GROUP}/{self.name} {self.symbol} {self.args}".rstrip()


_DEV = "dev=+0(+0($arg1)):string"

DEFAULT_PROBES: tuple[Probe, ...] = (
    # kernel/dma/mapping.c: the DMA API itself (tracepoints only since 6.12)
    Probe(
        "dma_map_page_attrs",
        "dma_map_page_attrs",
        f"{_DEV} page=$arg2:x64 offset=$arg3:x64 size=$arg4:u64 dir=$arg5:s32 attrs=$arg6:x64",
    ),
    Probe("dma_map_page_attrs_ret", "dma_map_page_attrs", "dma_addr=$retval:x64", ret=True),
    Probe(
        "dma_unmap_page_attrs",
        "dma_unmap_page_attrs",
        f"{_DEV} dma_addr=$arg2:x64 size=$arg3:u64 dir=$arg4:s32 attrs=$arg5:x64",
    ),
    Probe(
        "dma_map_sg_attrs",
        "__dma_map_sg_attrs",
        f"{_DEV} nents=$arg3:s32 dir=$arg4:s32 attrs=$arg5:x64",
    ),
    Probe("dma_map_sg_attrs_ret", "__dma_map_sg_attrs", "count=$retval:s32", ret=True),
    Probe(
        "dma_unmap_sg_attrs",
        "dma_unmap_sg_attrs",
        f"{_DEV} nents=$arg3:s32 dir=$arg4:s32 attrs=$arg5:x64",
    ),
    Probe(
        "dma_alloc_attrs", "dma_alloc_attrs", f"{_DEV} size=$arg2:u64 gfp=$arg4:x32 attrs=$arg5:x64"
    ),
    Probe("dma_alloc_attrs_ret", "dma_alloc_attrs", "cpu_addr=$retval:x64", ret=True),
    Probe(
        "dma_free_attrs",
        "dma_free_attrs",
        f"{_DEV} size=$arg2:u64 cpu_addr=$arg3:x64 dma_addr=$arg4:x64 attrs=$arg5:x64",
    ),
    Probe("dma_alloc_contiguous", "dma_alloc_contiguous", f"{_DEV} size=$arg2:u64 gfp=$arg3:x32"),
    Probe("dma_alloc_contiguous_ret", "dma_alloc_contiguous", "page=$retval:x64", ret=True),
    Probe("dma_free_contiguous", "dma_free_contiguous", f"{_DEV} page=$arg2:x64 size=$arg3:u64"),
    # drivers/iommu/iova.c: the IOVA allocator, per iova_domain and per CPU
    Probe(
        "init_iova_domain",
        "init_iova_domain",
        "iovad=$arg1:x64 granule=$arg2:u64 start_pfn=$arg3:x64",
    ),
    Probe("reserve_iova", "reserve_iova", "iovad=$arg1:x64 pfn_lo=$arg2:x64 pfn_hi=$arg3:x64"),
    Probe(
        "alloc_iova_fast",
        "alloc_iova_fast",
        "iovad=$arg1:x64 size=$arg2:u64 limit_pfn=$arg3:x64 flush_rcache=$arg4:u8",
    ),
    Probe("alloc_iova_fast_ret", "alloc_iova_fast", "pfn=$retval:x64", ret=True),
    Probe("free_iova_fast", "free_iova_fast", "iovad=$arg1:x64 pfn=$arg2:x64 size=$arg3:u64"),
    Probe(
        "alloc_iova",
        "alloc_iova",
        "iovad=$arg1:x64 size=$arg2:u64 limit_pfn=$arg3:x64 size_aligned=$arg4:u8",
    ),
    Probe("alloc_iova_ret", "alloc_iova", "iova=$retval:x64", ret=True),
    Probe("free_iova", "free_iova", "iovad=$arg1:x64 pfn=$arg2:x64"),
    Probe("free_cpu_cached_iovas", "free_cpu_cached_iovas", "cpu=$arg1:u32 iovad=$arg2:x64"),
    # drivers/iommu/iommu.c, io-pgtable-arm.c, arm-smmu-v3.c
    Probe(
        "__iommu_map",
        "__iommu_map",
        "dom=$arg1:x64 iova=$arg2:x64 paddr=$arg3:x64 size=$arg4:u64 prot=$arg5:x32",
    ),
    Probe("__iommu_unmap", "__iommu_unmap", "dom=$arg1:x64 iova=$arg2:x64 size=$arg3:u64"),
    Probe("arm_lpae_alloc_pages", "__arm_lpae_alloc_pages", "size=$arg1:u64 gfp=$arg2:x32"),
    Probe("arm_lpae_alloc_pages_ret", "__arm_lpae_alloc_pages", "va=$retval:x64", ret=True),
    Probe("arm_lpae_free_pages", "__arm_lpae_free_pages", "va=$arg1:x64 size=$arg2:u64"),
    Probe(
        "arm_smmu_cmdq_issue_cmdlist",
        "arm_smmu_cmdq_issue_cmdlist",
        "n=$arg3:s32 sync=$arg4:u8 cmd0=+0($arg2):x64 cmd0_1=+8($arg2):x64",
    ),
    Probe("arm_smmu_tlb_inv_context", "arm_smmu_tlb_inv_context", "smmu_dom=$arg1:x64"),
    Probe("fq_flush_iotlb", "fq_flush_iotlb", "cookie=$arg1:x64"),
    Probe("fq_flush_timeout", "fq_flush_timeout", "timer=$arg1:x64"),
    # drivers/dma-buf/dma-buf.c
    Probe("dma_buf_export", "dma_buf_export", "exp_name=+0(+0($arg1)):string size=+24($arg1):u64"),
    Probe("dma_buf_attach", "dma_buf_attach", "dev=+0(+0($arg2)):string"),
    Probe("dma_buf_map_attachment", "dma_buf_map_attachment", "dir=$arg2:s32"),
)


def read_probe_file(path: str | Path) -> list[str]:
    """Extra kprobe definitions, one ``kprobe_events`` line each (``#`` comments allowed)."""
    p = Path(path)
    text = read_text(p, "kprobe_events lines")
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split(None, 1)[0]
        if not (head[:2] in ("p:", "r:") or head.startswith(("r64:", "p64:", "r32:"))):
            raise InputError(
                f"not a kprobe definition: {line!r}",
                where=f"{p}:{n}",
                expected="'p:GROUP/NAME SYMBOL ARGS' or 'r:...'",
            )
        lines.append(line)
    return lines


_TEMPLATE = r"""#!/bin/sh
# socmem capture script: run as root on the target, e.g.
#   sh socmem-capture.sh -- my-camera-app --frames 100
# Needs only a POSIX shell and busybox. Writes $OUT.tar.gz (default /tmp/socmem-capture).
set -u
OUT=${OUT:-/tmp/socmem-capture}
BUFFER_KB=${BUFFER_KB:-@BUFFER_KB@}
ROOT=${SOCMEM_ROOT:-}            # for testing the script against a fake /sys and /proc
T=${TRACEFS:-}
if [ "${1:-}" = "--" ]; then shift; fi
[ "$#" -gt 0 ] || set -- sleep @DEFAULT_SECONDS@

say() { echo "socmem-capture: $*" >&2; }

if [ -z "$T" ]; then
  if [ -d "$ROOT/sys/kernel/tracing/events" ]; then T=$ROOT/sys/kernel/tracing
  elif [ -d "$ROOT/sys/kernel/debug/tracing/events" ]; then T=$ROOT/sys/kernel/debug/tracing
  else
    mount -t tracefs nodev "$ROOT/sys/kernel/tracing" 2>/dev/null && T=$ROOT/sys/kernel/tracing
  fi
fi
[ -n "$T" ] && [ -d "$T" ] || { say "no tracefs (need CONFIG_FTRACE, root)"; exit 1; }
DBG=$ROOT/sys/kernel/debug
[ -d "$DBG/dma_buf" ] || mount -t debugfs nodev "$DBG" 2>/dev/null

rm -rf "$OUT"; mkdir -p "$OUT" || exit 1
: > "$OUT/probe-results.txt"
echo 0 > "$T/tracing_on"
echo nop > "$T/current_tracer" 2>/dev/null
echo "$BUFFER_KB" > "$T/buffer_size_kb" 2>/dev/null
cat "$T/trace" > "$OUT/boot-trace.txt" 2>/dev/null  # boot-time events, for socmem replay
: > "$T/trace"

for sys in @SYSTEMS@; do
  if [ -d "$T/events/$sys" ]; then
    echo 1 > "$T/events/$sys/enable" && echo "event $sys: OK" >> "$OUT/probe-results.txt"
  else
    echo "event $sys: ABSENT" >> "$OUT/probe-results.txt"
  fi
done

add_probe() {  # $1 = a kprobe_events line: KIND:GROUP/NAME SYMBOL ARGS...
  def=$(echo "$1" | cut -d' ' -f1)
  sym=$(echo "$1" | cut -d' ' -f2)
  grp=$(echo "$def" | cut -d: -f2 | cut -d/ -f1)
  name=$(echo "$def" | cut -d/ -f2)
  if ! grep -q " $sym\$" "$ROOT/proc/kallsyms" 2>/dev/null \
     && ! grep -q " $sym	" "$ROOT/proc/kallsyms" 2>/dev/null; then
    echo "probe $grp/$name: NO-SYMBOL ($sym)" >> "$OUT/probe-results.txt"; return
  fi
  if echo "$1" >> "$T/kprobe_events" 2>/dev/null; then
    echo 1 > "$T/events/$grp/$name/enable" 2>/dev/null
    echo "$grp/$name" >> "$OUT/.probes-added"
    echo "probe $grp/$name: OK" >> "$OUT/probe-results.txt"
  else
    echo "probe $grp/$name: REFUSED $(tail -n 2 "$T/error_log" 2>/dev/null | tr '\n' ' ')" \
      >> "$OUT/probe-results.txt"
  fi
}
while IFS= read -r line; do
  [ -n "$line" ] && add_probe "$line"
done <<'SOCMEM_PROBES'
@PROBES@
SOCMEM_PROBES
cp "$T/kprobe_events" "$OUT/kprobe_events.txt" 2>/dev/null
cp "$T/set_event" "$OUT/set_event.txt" 2>/dev/null

dmesg > "$OUT/dmesg-before.txt" 2>/dev/null
echo 1 > "$T/tracing_on"
echo "socmem: command start" > "$T/trace_marker"
say "running: $*"
( "$@" ) > "$OUT/command.log" 2>&1
rc=$?
echo "$rc" > "$OUT/command-exit-code.txt"
[ -r "$DBG/dma_buf/bufinfo" ] && cat "$DBG/dma_buf/bufinfo" > "$OUT/dma_buf-bufinfo-live.txt"
echo "socmem: command end" > "$T/trace_marker"
echo 0 > "$T/tracing_on"

cat "$T/trace" > "$OUT/trace.txt"
for c in "$T"/per_cpu/cpu*; do
  [ -r "$c/stats" ] && cp "$c/stats" "$OUT/trace-stats-${c##*/}.txt"
done
dmesg > "$OUT/dmesg.txt" 2>/dev/null
[ -r "$DBG/dma_buf/bufinfo" ] && cat "$DBG/dma_buf/bufinfo" > "$OUT/dma_buf-bufinfo.txt"
for p in "$ROOT"/proc/[0-9]*; do
  for fd in "$p"/fd/*; do
    link=$(readlink "$fd" 2>/dev/null) || continue
    case "$link" in
      *dmabuf*|*dma_buf*|*sync_file*)
        echo "== ${p##*/} fd ${fd##*/} -> $link"
        cat "$p/fdinfo/${fd##*/}" 2>/dev/null ;;
    esac
  done
done > "$OUT/dma_buf-fdinfo.txt"
for g in "$ROOT"/sys/kernel/iommu_groups/*; do
  [ -d "$g" ] || continue
  devs=$(ls "$g/devices" 2>/dev/null | tr '\n' ' ')
  echo "group ${g##*/} type=$(cat "$g/type" 2>/dev/null) devices: $devs"
  sed 's/^/  reserved: /' "$g/reserved_regions" 2>/dev/null
done > "$OUT/iommu_groups.txt"
for f in iomem cmdline version buddyinfo meminfo; do
  cat "$ROOT/proc/$f" > "$OUT/proc-$f.txt" 2>/dev/null
done
for d in "$DBG"/swiotlb "$DBG"/cma/*; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do [ -f "$f" ] && echo "${f#$DBG/}: $(cat "$f" 2>/dev/null | head -c 200)"; done
done > "$OUT/debugfs-dma.txt"
cp "$ROOT/sys/firmware/fdt" "$OUT/fdt.dtb" 2>/dev/null

for sys in @SYSTEMS@; do
  [ -d "$T/events/$sys" ] && echo 0 > "$T/events/$sys/enable"
done
if [ -f "$OUT/.probes-added" ]; then
  while IFS= read -r gn; do
    echo 0 > "$T/events/$gn/enable" 2>/dev/null
    echo "-:$gn" >> "$T/kprobe_events" 2>/dev/null
  done < "$OUT/.probes-added"
  rm -f "$OUT/.probes-added"
fi

echo "socmem capture format 1" > "$OUT/socmem-capture.txt"
tar -czf "$OUT.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")" || exit 1
say "wrote $OUT.tar.gz (command exit code $rc); read it with: socmem trace analyze $OUT.tar.gz"
exit 0
"""


def probe_event_name(line: str) -> str:
    """``p:GROUP/NAME SYMBOL ...`` → ``NAME`` (the event name the trace shows)."""
    return line.split(None, 1)[0].split("/", 1)[-1]


PROFILES = ("linux-6.1-arm64",)


def profile_probes(name: str) -> list[str]:
    """The kprobe lines ``socmem replay`` needs on a given kernel build (struct offsets
    differ between kernels): shipped for Debian's Linux 6.1 arm64, the replay fixture's."""
    if name not in PROFILES:
        raise InputError(f"unknown probe profile {name!r}", expected=" | ".join(PROFILES))
    res = resources.files("socmem.trace") / "probes" / f"{name}.txt"
    text = res.read_text(encoding="utf-8")
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def capture_script(
    extra_probes: list[str] | None = None,
    buffer_kb: int = 32768,
    default_seconds: int = 10,
    probes: tuple[Probe, ...] = DEFAULT_PROBES,
) -> str:
    """The capture script text: the default probes, and ``extra_probes`` lines, which
    replace a default probe of the same event name (so no call is traced twice)."""
    extra = list(extra_probes or [])
    taken = {probe_event_name(x) for x in extra}
    lines = [p.line() for p in probes if p.name not in taken] + extra
    return (
        _TEMPLATE.replace("@BUFFER_KB@", str(buffer_kb))
        .replace("@DEFAULT_SECONDS@", str(default_seconds))
        .replace("@SYSTEMS@", " ".join(EVENT_SYSTEMS))
        .replace("@GROUP@", GROUP)
        .replace("@PROBES@", "\n".join(lines))
    )

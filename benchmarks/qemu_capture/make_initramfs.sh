#!/bin/sh
# Build initramfs.cpio.gz for the lazy-mode (iommu.strict=0) capture.
# Inputs (not in the repo):
#   KDIR : the extracted linux-image-6.1.0-56-arm64_6.1.192-2_arm64.deb (dpkg-deb -x), default /tmp/dtbcorpus/x56
#   BUSYBOX : static arm64 busybox (dpkg-deb -x busybox-static_1:1.35.0-4+deb12u1+b1_arm64.deb), default /tmp/bb/x/bin/busybox
#   SOCMEM : the socmem CLI, default /work/main/.venv/bin/socmem
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
KDIR=${KDIR:-/tmp/dtbcorpus/x56}
BUSYBOX=${BUSYBOX:-/tmp/bb/x/bin/busybox}
SOCMEM=${SOCMEM:-/work/main/.venv/bin/socmem}
WORK=${WORK:-/tmp/qemu-capture}
KV=6.1.0-56-arm64
MODS="kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko
kernel/drivers/virtio/virtio_pci.ko kernel/drivers/block/virtio_blk.ko"
R=$WORK/rootfs
rm -rf "$R"; mkdir -p "$R/bin" "$R/lib/modules" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
cp "$BUSYBOX" "$R/bin/busybox"; chmod 755 "$R/bin/busybox"; ln -s busybox "$R/bin/sh"
for m in $MODS; do
  f=$KDIR/lib/modules/$KV/$m
  case "$f" in *.xz) xz -dc "$f" > "$R/lib/modules/$(basename "${m%.xz}")";; *) cp "$f" "$R/lib/modules/";; esac
done
"$SOCMEM" capture --profile linux-6.1-arm64 -o "$R/capture.sh" -f
cp "$HERE/init.sh" "$R/init"; cp "$HERE/workload.sh" "$R/workload.sh"; chmod 755 "$R/init" "$R/workload.sh"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$WORK/initramfs.cpio.gz"
cp "$KDIR/boot/vmlinuz-$KV" "$WORK/vmlinuz-$KV"
ls -l "$WORK/initramfs.cpio.gz"

#!/bin/sh
# Runs inside socmem's capture window (between its trace markers). Phases are trace_marker lines.
T=/sys/kernel/tracing
mark() { echo "$*" > $T/trace_marker; echo "--- $* $(cat /proc/uptime)"; }
M=/lib/modules
mark "M0 insmod"
for m in failover net_failover virtio_net virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
  insmod $M/$m.ko || echo "insmod $m failed"
done
i=0; while [ ! -b /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
sleep 1
mark "M0 end"
mark "W1 dd /dev/vda"
dd if=/dev/vda of=/dev/null bs=64k count=256
dd if=/dev/vda of=/dev/null bs=1M count=8 iflag=direct
dd if=/dev/vda of=/dev/null bs=4k count=256 iflag=direct
sleep 1
mark "W1 end"
mark "W2 net"
# 10.0.2.2 is the gateway of QEMU's user-mode (slirp) network, emulated inside the QEMU process:
# the ping never leaves this machine.
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ping -c 3 10.0.2.2
sleep 1
mark "W2 end"
# hits/misses per probe, read inside the window (capture.sh deletes its probes afterwards)
mkdir -p /tmp/extra; cat $T/kprobe_profile > /tmp/extra/kprobe_profile.txt

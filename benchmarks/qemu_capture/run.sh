#!/bin/sh
# Boot the capture under QEMU 7.2 (Debian 1:7.2+dfsg-7+deb12u18+b3), lazy invalidation (iommu.strict=0),
# then extract the guest's result tar from out.img into $WORK/result.
# Run make_initramfs.sh first.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/tmp/qemu-capture}
KV=6.1.0-56-arm64
STRICT=${STRICT:-0}
cd "$WORK" || exit 1
[ -f data.img ] || head -c 33554432 /dev/urandom > data.img      # 32 MiB of random bytes
rm -f out.img qemu-host-trace.log console.log qemu-mon.sock
truncate -s 64M out.img

# boot-time probes (group bootkp): CMA with device identity + the SMMU command queue, active from fs_initcall.
# /init saves the boot trace (extra/boot-trace.txt) and removes them before socmem's capture script runs.
KPE='p:bootkp/dma_alloc_contiguous,dma_alloc_contiguous,dev=+0(+0(%x0)):string,size=%x1:u64,gfp=%x2:x32;r64:bootkp/dma_alloc_contiguous_ret,dma_alloc_contiguous,page=$retval:x64;p:bootkp/dma_free_contiguous,dma_free_contiguous,dev=+0(+0(%x0)):string,page=%x1:x64,size=%x2:u64;p:bootkp/arm_smmu_cmdq_issue_cmdlist,arm_smmu_cmdq_issue_cmdlist,n=%x2:s32,sync=%x3:u8,cmd0=+0(%x1):x64,cmd0_1=+8(%x1):x64'
APPEND="console=ttyAMA0 rdinit=/init loglevel=7 panic=-1 iommu.strict=$STRICT trace_event=iommu:*,cma:* trace_buf_size=16M trace_clock=global kprobe_event=$KPE"

set -- qemu-system-aarch64 -M virt,iommu=smmuv3 -cpu cortex-a72 -smp 2 -m 2G -nographic -no-reboot -accel tcg,thread=multi \
  -kernel vmlinuz-$KV -initrd initramfs.cpio.gz -append "$APPEND" \
  -drive file=data.img,if=none,id=d0,format=raw,readonly=on -device virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=on \
  -drive file=out.img,if=none,id=d1,format=raw -device virtio-blk-pci,drive=d1,disable-legacy=on,iommu_platform=on \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0,disable-legacy=on,iommu_platform=on,romfile= \
  -trace enable=smmuv3_record_event -trace enable=smmuv3_translate_abort -trace enable=smmuv3_translate_disable \
  -trace enable=smmuv3_cmdq_opcode -trace enable=smmuv3_config_cache_inv -trace enable=smmuv3_s1_range_inval \
  -trace enable=smmuv3_cmdq_tlbi_nh_asid -trace enable=smmuv3_cmdq_tlbi_nh -trace enable=smmuv3_cmdq_cfgi_ste \
  -trace enable=smmuv3_cmdq_cfgi_ste_range -trace enable=smmuv3_cmdq_cfgi_cd -trace enable=smmu_iotlb_inv_all \
  -D qemu-host-trace.log -monitor unix:qemu-mon.sock,server=on,wait=off
printf '%s\n' "$*" > qemu-cmdline.txt
t0=$(date +%s.%N)
timeout 900 "$@" < /dev/null > console.log 2>&1 &
QPID=$!
# watcher: when the guest says tracing stopped, turn QEMU's SMMU trace events off via HMP
python3 "$HERE/hmp_watch.py" console.log qemu-mon.sock "=== TRACE STOPPED" "trace-event smmu* off" &
WPID=$!
wait $QPID; rc=$?
t1=$(date +%s.%N)
kill $WPID 2>/dev/null
echo "host wall time: $(echo "$t1 - $t0" | bc) s (qemu exit $rc)" | tee -a console.log
rm -rf result; mkdir result && tar -xf out.img -C result && ls -lR result | head -50

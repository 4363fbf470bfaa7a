# Guest-side demo (run chrooted into the host root, as OUTDIR/cmd.sh in the lab
# initrd): counts ttm_bo_vm_reserve() return values and contended
# (blocking) reservations while demo/faulter hammers faults on one bochs BO.
set -x
uname -r; cat /proc/sys/kernel/tainted; cat /sys/module/ttm/srcversion /sys/module/ttm/version /sys/module/ttm/taint 2>&1
grep -E '^(ttm|drm|bochs|drm_vram_helper) ' /proc/modules
ls /sys/kernel/btf/ | grep -E 'ttm|drm'
T=/sys/kernel/tracing
# return value of the reservation step (0x400 = VM_FAULT_RETRY, 0x100 = VM_FAULT_NOPAGE)
echo 'r:ttmret ttm_bo_vm_reserve ret=$retval:x32' > $T/kprobe_events
# contended reservations: blocking lock taken, keyed by caller
echo 'p:wwlock ww_mutex_lock_interruptible caller=+0($stack):x64' >> $T/kprobe_events
echo 'hist:keys=ret' > $T/events/kprobes/ttmret/trigger
echo 'hist:keys=caller.sym' > $T/events/kprobes/wwlock/trigger
echo 1 > $T/events/kprobes/enable
${FAULTER:-/tmp/out/faulter} 4 ${FAULT_SECS:-20}
echo 0 > $T/events/kprobes/enable
cat $T/events/kprobes/ttmret/hist $T/events/kprobes/wwlock/hist | grep -v '^#'

#!/usr/bin/env bash
# The sandbox's cgroup v2 path on a real kernel with a pure cgroup v2
# hierarchy: boots Debian's kernel under qemu (software emulation is enough:
# no /dev/kvm needed), with a small initramfs made here from Debian's
# busybox-static and the kernel package's 9p/virtio/overlay modules. The
# guest sees this machine's root read-only over virtio-9p (a tmpfs overlay on
# top makes it writable in the guest only), mounts cgroup2 alone at
# /sys/fs/cgroup, hands memory, pids and cpu down from the root, and runs
# each test binary given three times:
#
#   alone      the test is the only process of a cgroup of its own, like a
#              service under systemd: the sandbox moves it into a leaf and
#              makes the runs' subtree beside it;
#   wrapped    the same with a second process there (the shell that started
#              the test, as a unit's wrapper script): both move to the leaf;
#   delegated  CU_SANDBOX_TEST_CGROUP_PARENT names a directory made for the
#              runs (sandbox.cgroup_parent).
#
# All with CU_SANDBOX_TEST_CGROUP=2: a run that does not get a cgroup v2
# fails the test. Afterwards no run's cgroup may be left. The guest says each
# result on its serial console ("cu-vm: result NAME rc=N"), then powers off.
#
#   tests/vm/cgroup2.sh --fetch       download Debian's kernel package (apt-get
#                                     download) and keep the kernel and the
#                                     modules needed in $CU_VM_DIR
#   tests/vm/cgroup2.sh TEST...       run the tests in the VM; exit 0 when all
#                                     pass, 1 when one fails, 77 (skip) when
#                                     qemu, busybox-static or the kernel is not
#                                     here
#
# Environment: CU_VM_DIR (kernel cache, default
# /var/cache/codex-universal/vm), CU_VM_TIMEOUT (hang guard in seconds for the
# whole VM, default 900), CU_VM_MEM (MiB, default 1024), CU_VM_SMP (default 1),
# CU_VM_WORK (scratch folder, default a mktemp folder, removed at the end).
set -euo pipefail

VM_DIR=${CU_VM_DIR:-/var/cache/codex-universal/vm}
HANG_GUARD=${CU_VM_TIMEOUT:-900}
MEM=${CU_VM_MEM:-1024}
SMP=${CU_VM_SMP:-1}
# what the guest needs, found in the kernel package by file name
MODULES=(virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
         9pnet 9pnet_virtio netfs fscache 9p overlay)

say() { echo "cgroup2.sh: $*"; }
skip() {
  say "SKIP: $*"
  exit 77
}

fetch() {
  command -v apt-get >/dev/null || { say "apt-get is needed for --fetch"; exit 1; }
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  [ -n "$pkg" ] || { say "apt-cache does not know linux-image-amd64 (run apt-get update)"; exit 1; }
  local ver=${pkg#linux-image-}
  if [ -f "$VM_DIR/$ver/vmlinuz" ] && [ -f "$VM_DIR/$ver/modules.ok" ]; then
    say "kernel $ver already in $VM_DIR/$ver"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt where it can
  (cd "$tmp" && apt-get download -q "$pkg")
  mkdir -p "$VM_DIR/$ver.partial"
  local pats=("./boot/vmlinuz-$ver")
  for m in "${MODULES[@]}"; do pats+=("./lib/modules/$ver/kernel/*/$m.ko*"); done
  dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb |
    tar -x -C "$VM_DIR/$ver.partial" --wildcards "${pats[@]}"
  rm -rf "$tmp"
  local d="$VM_DIR/$ver.partial"
  mkdir -p "$d/modules"
  mv "$d/boot/vmlinuz-$ver" "$d/vmlinuz"
  find "$d/lib" -name '*.ko*' -exec mv {} "$d/modules/" \;
  rm -rf "${d:?}/boot" "${d:?}/lib"
  for f in "$d"/modules/*.ko.xz; do [ -e "$f" ] && xz -d "$f"; done
  for f in "$d"/modules/*.ko.zst; do [ -e "$f" ] && zstd -q -d --rm "$f"; done
  for m in "${MODULES[@]}"; do
    [ -f "$d/modules/$m.ko" ] || echo "$m" >>"$d/builtin" # built into this kernel
  done
  touch "$d/modules.ok"
  rm -rf "${VM_DIR:?}/$ver"
  mv "$d" "$VM_DIR/$ver"
  say "kernel $ver in $VM_DIR/$ver"
}

if [ "${1:-}" = "--fetch" ]; then
  fetch
  exit 0
fi
[ $# -ge 1 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
for t in "$@"; do
  [ -x "$t" ] || { say "not an executable: $t"; exit 2; }
  case "$t" in /*) ;; *) say "give test binaries by absolute path: $t"; exit 2 ;; esac
done

QEMU=$(command -v qemu-system-x86_64 || true)
[ -n "$QEMU" ] || skip "qemu-system-x86_64 not installed (Debian: qemu-system-x86)"
BUSYBOX=""
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi # static only
done
[ -n "$BUSYBOX" ] || skip "no static busybox (Debian: busybox-static)"
KDIR=""
for d in "$VM_DIR"/*; do # the newest complete one
  if [ ! -f "$d/modules.ok" ] || [ ! -f "$d/vmlinuz" ]; then continue; fi
  if [ -z "$KDIR" ] || [ "$(printf '%s\n%s\n' "$KDIR" "$d" | sort -V | tail -n 1)" = "$d" ]; then
    KDIR=$d
  fi
done
[ -n "$KDIR" ] || skip "no kernel in $VM_DIR: run 'bash tests/vm/cgroup2.sh --fetch'"
[ "$(uname -m)" = x86_64 ] || skip "the guest is x86_64; this machine is $(uname -m)"

WORK=${CU_VM_WORK:-}
own_work=0
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /tmp/cu-vm-XXXXXX)
  own_work=1
fi
if [ "$own_work" = 1 ]; then
  trap 'rm -rf "$WORK"' EXIT
fi

# ---- the initramfs ----
IR="$WORK/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,host,rw,newroot,modules,cu-vm}
cp "$BUSYBOX" "$IR/bin/busybox"
ln -s busybox "$IR/bin/sh"
cp "$KDIR"/modules/*.ko "$IR/modules/" 2>/dev/null || true

# the tests the guest runs, one line each: NAME CONFIG BINARY
: >"$IR/cu-vm/tests"
for t in "$@"; do
  for config in alone wrapped delegated; do echo "$(basename "$t")-$config $config $t" >>"$IR/cu-vm/tests"; done
done

cat >"$IR/init" <<'INIT'
#!/bin/sh
# The guest's first process (busybox sh): see tests/vm/cgroup2.sh.
export PATH=/bin
/bin/busybox --install -s /bin
say() { echo "cu-vm: $*"; }
fail() {
  say "error: $*"
  say "done rc=1"
  poweroff -f
}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say "kernel $(uname -r)"

# modules in dependency order: load what loads until nothing is left
left=$(echo $(ls /modules/*.ko 2>/dev/null))
while [ -n "$left" ]; do
  next=""
  for m in $left; do insmod "$m" 2>/dev/null || next="$next $m"; done
  next=$(echo $next)
  [ "$next" != "$left" ] || fail "cannot load $next"
  left=$next
done

# this machine's root, read-only; the 9p channel appears once virtio probed
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 60 ] || fail "cannot mount the host's root over virtio-9p"
  sleep 1
done
mount -t tmpfs -o size=256m tmpfs /rw
mkdir -p /rw/upper /rw/work
R=/newroot
if mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work $R; then
  say "root: the host's, read-only over 9p, with a tmpfs overlay"
else
  say "root: the host's, read-only over 9p (no overlay: /tmp is a tmpfs)"
  mount --bind /host $R
  mount -t tmpfs -o mode=1777 tmpfs $R/tmp
fi
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mount -t tmpfs tmpfs $R/run
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail "cannot mount cgroup2"
CG=$R/sys/fs/cgroup
say "cgroup mounts: $(grep cgroup /proc/mounts | cut -d' ' -f1-3 | tr '\n' ';')"
say "controllers: $(cat $CG/cgroup.controllers)"
for c in memory pids cpu; do
  echo "+$c" >$CG/cgroup.subtree_control || fail "cannot enable $c at the root"
done
mkdir $CG/delegated

# Each test runs in a service's cgroup, as a unit's processes sit in theirs
# under systemd: alone there ("alone"), or with the shell that started it
# ("wrapped"), which the sandbox must move into the leaf too; or with the
# runs under a delegated directory ("delegated").
rc=0
while read -r name config bin; do
  say "run $name: $bin"
  if [ ! -x "$R$bin" ]; then
    say "result $name rc=1 (not visible in the guest: $bin)"
    rc=1
    continue
  fi
  env=""
  unit=$CG/codex-$config.service
  mkdir $unit
  [ "$config" = delegated ] && env="CU_SANDBOX_TEST_CGROUP_PARENT=/sys/fs/cgroup/delegated"
  t0=$(date +%s)
  run="chroot $R /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root"
  run="$run CU_SANDBOX_TEST_CGROUP=2 CU_SANDBOX_TEST_SLACK=5 $env $bin"
  if [ "$config" = alone ]; then
    sh -c "echo \$\$ >$unit/cgroup.procs || exit 90; exec $run </dev/null 2>&1"
  else
    sh -c "echo \$\$ >$unit/cgroup.procs || exit 90; $run </dev/null 2>&1; exit \$?"
  fi
  r=$?
  [ $r -ne 90 ] || say "cannot move into $unit"
  left=$(find $CG -name 'run-*' -type d | tr '\n' ' ')
  if [ -n "$left" ]; then
    say "cgroups left behind by $name: $left"
    [ $r -ne 0 ] || r=1
  fi
  nested=$(find $CG -path '*/cu-service/*' -type d | tr '\n' ' ')
  if [ -n "$nested" ]; then
    say "cgroups nested below the service's leaf: $nested"
    [ $r -ne 0 ] || r=1
  fi
  say "result $name rc=$r ($(($(date +%s) - t0)) s)"
  [ $r -eq 0 ] || rc=1
done </cu-vm/tests
say "cgroup tree: $(cd $CG && find . -type d | tr '\n' ' ')"
if [ $rc -ne 0 ]; then
  say "kernel messages (errors):"
  dmesg | grep -i -E 'error|fail|oom|denied|cgroup' | tail -n 40
fi
say "done rc=$rc"
sync
poweroff -f
INIT
chmod 755 "$IR/init"
(cd "$IR" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 >"$WORK/initramfs.cpio.gz")

# ---- the VM ----
say "kernel $(basename "$KDIR"), $(basename "$QEMU") under TCG, ${MEM} MiB, $SMP CPU(s); hang guard ${HANG_GUARD} s"
LOG="$WORK/console.log"
t0=$(date +%s)
set +e
timeout -k 10 "$HANG_GUARD" "$QEMU" \
  -accel tcg -cpu max -smp "$SMP" -m "$MEM" \
  -nodefaults -no-user-config -display none -no-reboot \
  -chardev stdio,id=con,signal=off -serial chardev:con \
  -kernel "$KDIR/vmlinuz" -initrd "$WORK/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  </dev/null 2>&1 | tr -d '\r' | tee "$LOG"
qrc=${PIPESTATUS[0]}
set -e
secs=$(($(date +%s) - t0))
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  say "FAIL: the VM did not power off within ${HANG_GUARD} s (hang guard)"
  exit 1
fi
if ! grep -q '^cu-vm: done rc=' "$LOG"; then
  say "FAIL: the VM ended (qemu exit $qrc) without a result on its console"
  exit 1
fi
grep '^cu-vm: result ' "$LOG" | sed 's/^/  /'
if grep -q '^cu-vm: done rc=0$' "$LOG"; then
  say "PASS: boot and tests took $secs s"
  exit 0
fi
say "FAIL: a test failed in the VM ($secs s)"
exit 1

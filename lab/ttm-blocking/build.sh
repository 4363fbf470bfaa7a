#!/bin/bash
# Build the "blocking reserve" variant of Debian's 6.1 or 6.12 ttm.ko (see
# ttm-blocking-<major.minor>.patch and README.md next to this script).
#
# usage: build.sh KERNEL_ABI OUTPUT_KO
#   e.g. build.sh 6.1.0-56-amd64 /work/main/target/lab/ttm-blocking/6.1.0-56-amd64/ttm.ko
#        build.sh 6.12.117+deb12-amd64 .../ttm-blocking/6.12.117+deb12-amd64/ttm.ko
#
# Idempotent: exits at once if OUTPUT_KO is newer than the patch and this
# script. Needs root (apt-get) on Debian bookworm.
set -euo pipefail

usage() { echo "usage: $0 KERNEL_ABI OUTPUT_KO" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
ABI=$1
OUT=$2
# 6.1.0-56-amd64 (bookworm's numbering) or 6.12.117+deb12-amd64 (later kernels').
[[ $ABI =~ ^([0-9]+\.[0-9]+)\.[0-9]+(-[0-9]+|\+deb[0-9]+)-[a-z0-9]+$ ]] || { echo "bad KERNEL_ABI: $ABI" >&2; exit 2; }
MAJMIN=${BASH_REMATCH[1]}                      # 6.1, 6.12
[[ $OUT == /* ]] || OUT=$PWD/$OUT

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
PATCH=$HERE/ttm-blocking-$MAJMIN.patch
REPO=$(cd "$HERE/../.." && pwd)
LAB=$REPO/target/lab
DEBS=$LAB/debs
WROOT=$LAB/ttm-blocking
STOCK_KO=$LAB/kernels/$ABI/lib/modules/$ABI/kernel/drivers/gpu/drm/ttm/ttm.ko
# 6.1 ships it uncompressed, 6.12 as ttm.ko.xz (modinfo reads either).
[[ -f $STOCK_KO || ! -f $STOCK_KO.xz ]] || STOCK_KO=$STOCK_KO.xz

fresh() { [[ -f $OUT && $OUT -nt $PATCH && $OUT -nt $SELF ]]; }

[[ -f $PATCH ]] || { echo "missing patch $PATCH" >&2; exit 1; }
if fresh; then echo "ttm-blocking: up to date: $OUT"; exit 0; fi

log() { echo "ttm-blocking: $*" >&2; }
has_section() { [[ $(readelf -SW "$1") == *" $2 "* ]]; }
T0=$SECONDS
mkdir -p "$WROOT" "$DEBS"
# Serialise concurrent builds; re-check freshness once we hold the lock.
exec 9>"$WROOT/.lock"
flock 9
if fresh; then echo "ttm-blocking: up to date: $OUT"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive

# 1. linux-headers-$ABI (ships Module.symvers and the kbuild glue).
HDRPKG=linux-headers-$ABI
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
if ! installed "$HDRPKG"; then
    log "installing $HDRPKG"
    if ! apt-get install -y --no-install-recommends "$HDRPKG"; then
        log "install failed; running apt-get update and retrying"
        apt-get update
        apt-get install -y --no-install-recommends "$HDRPKG"
    fi
fi
KDIR=/usr/src/linux-headers-$ABI
[[ -f $KDIR/Module.symvers ]] || { log "no $KDIR/Module.symvers"; exit 1; }

# 2. Matching Debian source version -> linux-source-$MAJMIN .deb (cached).
SRCVER=$(dpkg-query -W -f='${Version}' "$HDRPKG")
SRCPKG=linux-source-$MAJMIN
DEB=$DEBS/${SRCPKG}_${SRCVER//:/%3a}_all.deb
if [[ ! -f $DEB ]]; then
    log "downloading $SRCPKG=$SRCVER"
    # As root into a dir _apt cannot write, apt warns "Download is performed
    # unsandboxed as root"; harmless.
    if ! (cd "$DEBS" && apt-get download "$SRCPKG=$SRCVER"); then
        apt-get update
        (cd "$DEBS" && apt-get download "$SRCPKG=$SRCVER")
    fi
fi
[[ -f $DEB ]] || { log "download did not produce $DEB"; exit 1; }

# 3. Pristine drivers/gpu/drm/ttm (+ include/drm/ttm for cross-checking),
#    extracted selectively once per source version. The whole tarball still
#    has to be decompressed (~20 s), but nothing big is written.
SRC=$WROOT/src/$SRCVER
MEMBERS=(drivers/gpu/drm/ttm/ include/drm/ttm/)
if [[ $(cat "$SRC/.complete" 2>/dev/null) != "${MEMBERS[*]}" ]]; then
    log "extracting ${MEMBERS[*]} from $(basename "$DEB")"
    rm -rf "$SRC" "$SRC.tmp"
    mkdir -p "$SRC.tmp"
    dpkg-deb --fsys-tarfile "$DEB" \
        | tar -xOf - "./usr/src/$SRCPKG.tar.xz" \
        | tar -xJf - -C "$SRC.tmp" --strip-components=1 "${MEMBERS[@]/#/$SRCPKG/}"
    echo "${MEMBERS[*]}" > "$SRC.tmp/.complete"
    mv "$SRC.tmp" "$SRC"
fi

# The external build takes <drm/ttm/*.h> from the headers package; make sure
# they are the same files as in the source we patch.
for h in "$SRC"/include/drm/ttm/*.h; do
    hh=
    for d in "$KDIR/include" "/usr/src/linux-headers-${ABI%-*}-common/include"; do
        [[ -f $d/drm/ttm/${h##*/} ]] && { hh=$d/drm/ttm/${h##*/}; break; }
    done
    [[ -n $hh ]] || { log "header drm/ttm/${h##*/} missing from linux-headers"; exit 1; }
    cmp -s "$h" "$hh" || { log "header $hh differs from linux-source"; exit 1; }
done

# 4. Patch and build as an external module with the in-tree Makefile.
B=$WROOT/build/$ABI
rm -rf "$B"
mkdir -p "$B"
cp -a "$SRC/drivers" "$B/"
patch -d "$B" -p1 --forward --no-backup-if-mismatch -s < "$PATCH"
M=$B/drivers/gpu/drm/ttm
log "building in $M"
set +e
make -C "$KDIR" M="$M" -j"$(nproc)" modules > "$B/build.log" 2>&1
rc=$?
set -e
if [[ $rc -ne 0 ]]; then cat "$B/build.log" >&2; log "make failed ($rc)"; exit 1; fi
grep -E 'warning|WARNING' "$B/build.log" >&2 || true
if grep -q 'undefined!' "$B/build.log"; then log "modpost reported undefined symbols"; exit 1; fi
KO=$M/ttm.ko
[[ -f $KO ]] || { log "no $KO"; exit 1; }

# 5. No module BTF on purpose: kbuild skips it for M= builds (the headers have no
#    vmlinux), as for any self-built module. ttmlat must work without ttm BTF, and this
#    variant is how the lab proves it. Strip debug info as Debian does (INSTALL_MOD_STRIP).
cp "$KO" "$KO.debug"
strip --strip-debug "$KO"

# 6. Checks: variant tag and vermagic identical to the stock module.
VM=$(modinfo -F vermagic "$KO")
[[ $(modinfo -F version "$KO") == blocking-reserve ]] || { log "built module lacks version tag"; exit 1; }
echo "ttm-blocking: vermagic: $VM"
if [[ -f $STOCK_KO ]]; then
    SVM=$(modinfo -F vermagic "$STOCK_KO")
    if [[ $VM != "$SVM" ]]; then
        log "vermagic mismatch: built '$VM' vs stock '$SVM' ($STOCK_KO)"
        exit 1
    fi
    echo "ttm-blocking: vermagic matches stock $STOCK_KO"
else
    log "stock module $STOCK_KO not present (unpack the kernel first: scripts/setup.sh)"
    exit 1
fi
echo "ttm-blocking: srcversion: $(modinfo -F srcversion "$KO")"

# 7. Install atomically.
mkdir -p "$(dirname "$OUT")"
cp "$KO" "$OUT.tmp.$$"
mv -f "$OUT.tmp.$$" "$OUT"
echo "ttm-blocking: wrote $OUT ($SRCPKG $SRCVER, $((SECONDS - T0)) s)"

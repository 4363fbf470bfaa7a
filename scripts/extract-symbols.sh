#!/usr/bin/env bash
# Regenerates probe-user/tests/data/symbols/<release>/*.gz: the function symbols (t/T, no
# __pfx_/__cfi_ thunks, no compiler clones) of the TTM-using GPU modules (nm on the .ko files of
# the Debian kernels unpacked by scripts/setup.sh) and of vmlinux (the lab guest's
# /proc/kallsyms: Debian ships no System.map). The attach-point discovery is unit tested
# against them (probe-user/src/discovery.rs). Arguments, if any: the releases to regenerate.
set -euo pipefail
ONLY=("$@")
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$REPO/probe-user/tests/data/symbols
MODULES=(amdgpu radeon nouveau vmwgfx i915 xe qxl drm_vram_helper bochs ttm)
funcs() { awk '$2=="t"||$2=="T"{print $3}' | grep -v -E '^__(pfx|cfi)_|\.' | LC_ALL=C sort -u; }
for root in "$REPO"/target/lab/kernels/*/; do
    release=$(basename "$root")
    if (( ${#ONLY[@]} )) && [[ ! " ${ONLY[*]} " == *" $release "* ]]; then continue; fi
    grep -q "\"$release\"" "$REPO/target/lab/kernels.json" || continue
    dir=$OUT/$release
    mkdir -p "$dir"
    alias=$(python3 -c "import json,sys; print([k['alias'] for k in json.load(open('$REPO/target/lab/kernels.json'))['kernels'] if k['release']=='$release'][0])")
    (cd "$REPO" && cargo xtask lab --kernel "$alias" -- sh -c 'grep -v "\[" /proc/kallsyms') \
        | funcs | gzip -9n > "$dir/vmlinux.gz"
    for m in "${MODULES[@]}"; do
        ko=$(find "$root/lib/modules/$release" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
        [[ -n $ko ]] || continue
        case $ko in
            *.xz) xz -dc "$ko" > /tmp/extract-symbols.ko ;;
            *) cp "$ko" /tmp/extract-symbols.ko ;;
        esac
        nm --defined-only /tmp/extract-symbols.ko | funcs | gzip -9n > "$dir/$m.gz"
    done
    echo "$release: $(ls "$dir" | wc -l) lists"
done
rm -f /tmp/extract-symbols.ko

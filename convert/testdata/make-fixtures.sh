#!/bin/bash
# Regenerates the qemu-made fixtures and their golden facts. The fixtures
# are tiny disks (1 MiB + 1536 bytes, a little data) in every format we
# read, gzipped: mostly zeros, so each is a few KiB. The golden file holds
# what qemu-img says about each: format, virtual size, and the sha256 of
# its `qemu-img convert -O raw` output. Tests then need no qemu-img.
#
# usage: convert/testdata/make-fixtures.sh   (needs qemu-img, python3)
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Deterministic content: text at 0, a pseudo-random run across the first
# 64 KiB boundary, and a tail in the last sector.
python3 - "$tmp/base.raw" <<'PY'
import random, sys
r = random.Random(4)
size = (1 << 20) + 1536
b = bytearray(size)
b[0:64] = b"glimpse fixture: every format reads back these same bytes.\n".ljust(64)
b[65536 - 700:65536 + 700] = bytes(r.getrandbits(8) for _ in range(1400))
b[size - 300:size] = bytes(r.getrandbits(8) for _ in range(300))
open(sys.argv[1], "wb").write(b)
PY

make() { # name format-for-reading convert-args...
	local name=$1 fmt=$2
	shift 2
	qemu-img convert -f raw "$@" "$tmp/base.raw" "$tmp/$name"
	vsize=$(qemu-img info -f "$fmt" --output json "$tmp/$name" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
	qemu-img convert -f "$fmt" -O raw "$tmp/$name" "$tmp/$name.raw"
	sum=$(sha256sum <"$tmp/$name.raw" | cut -d' ' -f1)
	gzip -9n <"$tmp/$name" >"$name.gz"
	echo "$name $fmt $vsize $sum" >>fixtures.golden
}

: >fixtures.golden
make raw.img raw -O raw
make v2.qcow2 qcow2 -O qcow2 -o compat=0.10
make v3.qcow2 qcow2 -O qcow2 -o compat=1.1,cluster_size=4096
make zlib.qcow2 qcow2 -c -O qcow2
make zstd.qcow2 qcow2 -c -O qcow2 -o compression_type=zstd
make sparse.vmdk vmdk -O vmdk
make stream.vmdk vmdk -O vmdk -o subformat=streamOptimized
make dynamic.vdi vdi -O vdi
make static.vdi vdi -O vdi -o static=on
make dynamic.vhd vpc -O vpc
make fixed.vhd vpc -O vpc -o subformat=fixed
make dynamic.vhdx vhdx -O vhdx -o block_size=1M,log_size=1M

#!/bin/sh
# bench-rest.sh: REST upload and download throughput of glimpse against
# plain curl copying the same file (curl file:// to a file).
#
#   scripts/bench-rest.sh [SIZE_MIB]      (default 1024)
#
# Builds glimpse, starts `glimpse serve --mount ''` on a free loopback port
# with its data in a temporary directory, and prints MB/s and the ratios.
set -eu
size_mib=${1:-1024}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/glimpse" "$here/cmd/glimpse"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$work/glimpse" serve --data "$work/data" --mount '' --listen "127.0.0.1:$port" --log-level warn &
pid=$!
url="http://127.0.0.1:$port"
i=0
until curl -sf "$url/healthcheck" >/dev/null; do
	i=$((i + 1)); [ $i -lt 200 ] || { echo "daemon did not start" >&2; exit 1; }
	sleep 0.05
done
head -c $((size_mib * 1048576)) /dev/urandom >"$work/src.raw"
sync

plain=$(curl -s -o "$work/copy.raw" -w '%{speed_download}' "file://$work/src.raw")
id=$(curl -s -X POST -H 'Content-Type: application/json' \
	-d '{"name": "bench", "disk_format": "raw", "container_format": "bare"}' "$url/v2/images" |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
up=$(curl -s -o /dev/null -w '%{speed_upload}' -T "$work/src.raw" \
	-H 'Content-Type: application/octet-stream' -H 'Transfer-Encoding: chunked' "$url/v2/images/$id/file")
down=$(curl -s -o "$work/down.raw" -w '%{speed_download}' "$url/v2/images/$id/file")
cmp -s "$work/src.raw" "$work/down.raw" || { echo "downloaded content differs" >&2; exit 1; }

python3 - "$plain" "$up" "$down" "$size_mib" <<'PY'
import sys
plain, up, down, mib = (float(x) for x in sys.argv[1:])
mb = lambda b: b / 1e6
print(f"{mib:.0f} MiB, load {open('/proc/loadavg').read().split()[0]}")
print(f"curl file:// to a file : {mb(plain):8.1f} MB/s")
print(f"REST upload (chunked)  : {mb(up):8.1f} MB/s  ratio {up / plain:.2f}  (md5 + sha512 + fsync + inspection)")
print(f"REST download          : {mb(down):8.1f} MB/s  ratio {down / plain:.2f}")
PY

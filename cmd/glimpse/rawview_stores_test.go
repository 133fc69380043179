package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/glimpse-project/glimpse/backend/backendtest"
)

// The raw view on every store: a small read of raw/NAME fetches a little of
// the image through ranged reads, never the whole object, and the whole
// view still equals the source (qemu-img compare).

const (
	rawStoreDiskSize = 96 << 20
	// rawStoreReadAt is where the small read lands: far from the header,
	// the L1 and the L2 table, so that its cluster is fetched for itself.
	rawStoreReadAt = 61<<20 + 12345
)

// rawStoreImage writes a disk whose every 64 KiB cluster is half random
// bytes and half zeros, and its zlib qcow2 (about half the disk: a download
// of it whole cannot hide in the count of a small read). It returns the
// paths of the source disk and of the qcow2.
func rawStoreImage(t *testing.T) (src, img string) {
	t.Helper()
	dir := t.TempDir()
	disk := make([]byte, rawStoreDiskSize)
	for off := 0; off < len(disk); off += 64 << 10 {
		rand.Read(disk[off : off+32<<10])
	}
	src, img = filepath.Join(dir, "source.raw"), filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(src, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", src, img)
	return src, img
}

// checkRawViewRead reads 4 KiB of view at rawStoreReadAt and checks it
// against src, and that fetched (the bytes the store has sent so far)
// grew by at most a quarter of the stored image of imgSize bytes; then
// qemu-img compare checks the whole view against src.
func checkRawViewRead(t *testing.T, view, src string, imgSize int64, fetched func() int64) {
	t.Helper()
	before := fetched()
	f, err := os.Open(view)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	_, err = f.ReadAt(got, rawStoreReadAt)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	sent := fetched() - before
	want := make([]byte, len(got))
	s, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ReadAt(want, rawStoreReadAt); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("4 KiB of %s at %d differ from the source", view, rawStoreReadAt)
	}
	t.Logf("a 4 KiB read of raw/ of a %d KiB qcow2 fetched %d KiB from the store", imgSize>>10, sent>>10)
	if sent > imgSize/4 {
		t.Fatalf("a 4 KiB read of raw/ fetched %d bytes of a %d-byte image from the store", sent, imgSize)
	}
	mustRun(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", view, src)
}

// storeReadBytes is the daemon's count of bytes read from store (the
// glimpse_store_read_bytes_total metric). It counts what the store's
// readers deliver, which for Swift and RBD (no cache below the reader)
// is what came over the wire.
func storeReadBytes(t *testing.T, d *daemon, store string) int64 {
	t.Helper()
	v := metricValue(scrape(t, d.addr), "glimpse_store_read_bytes_total", `store="`+store+`"`)
	return int64(max(v, 0))
}

// rawViewOnStore uploads the qcow2 through the mount of a daemon on the
// store that flags name, restarts it (so that no cache holds anything of
// the image), and checks the raw view. fetched, given the daemon, counts
// the bytes the store has sent.
func rawViewOnStore(t *testing.T, fetched func(d *daemon) int64, store ...string) {
	t.Helper()
	needTool(t, "qemu-img")
	src, img := rawStoreImage(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, store...)
	mustRun(t, "cp", img, filepath.Join(mnt, "active", "disk.qcow2"))
	d.stop()
	d = startDaemon(t, data, mnt, store...)
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	checkRawViewRead(t, filepath.Join(mnt, "raw", "disk.qcow2"), src, st.Size(), func() int64 { return fetched(d) })
}

// On S3 the bytes are counted on the wire, by a proxy between the daemon
// and MinIO: the block cache's readahead, below the daemon's readers,
// counts too.
func TestRawViewOnS3(t *testing.T) {
	needMount(t)
	startMinIO(t)
	addr, sent := countingProxy(t, strings.TrimPrefix(os.Getenv("AWS_ENDPOINT_URL"), "http://"))
	t.Setenv("AWS_ENDPOINT_URL", "http://"+addr)
	rawViewOnStore(t, func(*daemon) int64 { return sent.Load() }, "--store", "s3://images/glimpse")
}

func TestRawViewOnSwift(t *testing.T) {
	needMount(t)
	startSwift(t)
	rawViewOnStore(t, func(d *daemon) int64 { return storeReadBytes(t, d, "swift") }, "--store", "swift://images/glimpse")
}

// An HTTP location: the web server counts the bytes it sends. The image's
// checksum is computed by reading it whole once, at registration; the
// restart that follows empties the block cache.
func TestRawViewOnLocation(t *testing.T) {
	needMount(t)
	needTool(t, "qemu-img")
	src, img := rawStoreImage(t)
	content, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	web := backendtest.NewWebOrigin(t)
	loc := web.Put("/disk.qcow2", content)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, "--web-download-allow-private")
	url := "http://" + d.addr
	out := mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "disk.qcow2", "--disk-format", "qcow2",
		"--container-format", "bare", "--location", loc)
	waitChecksum(t, url, field(t, out, "id"))
	d.stop()
	startDaemon(t, data, mnt, "--web-download-allow-private")
	checkRawViewRead(t, filepath.Join(mnt, "raw", "disk.qcow2"), src, int64(len(content)), web.Served.Load)
}

// countingProxy forwards TCP connections on a loopback port to upstream,
// counting the bytes upstream sends back as they pass.
func countingProxy(t *testing.T, upstream string) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	sent := &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() {
				io.Copy(u, c)
				u.(*net.TCPConn).CloseWrite()
			}()
			go func() {
				io.Copy(countingTo{c, sent}, u)
				c.Close()
				u.Close()
			}()
		}
	}()
	return l.Addr().String(), sent
}

type countingTo struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingTo) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

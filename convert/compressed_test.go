package convert

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/glimpse-project/glimpse/convert/internal/libdeflate"
)

// Every compressed cluster of qemu's zlib qcow2 and every grain of its
// streamOptimized vmdk decodes on libdeflate's fast path (whole or in
// part), to the bytes Go's decoder gives. The last block may be short and
// left to Go.
func TestCompressedFastPath(t *testing.T) {
	if !libdeflate.Available {
		t.Skip("built without cgo: Go's decoders run alone")
	}
	base := makeSamples(t, "")
	for _, name := range []string{"qcow2zlib", "vmdkstream"} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(filepath.Dir(base), name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			img, err := Open(f, st.Size(), "")
			if err != nil {
				t.Fatal(err)
			}
			bi := img.(*blockImage)
			blocks := (bi.size + bi.blockSize - 1) / bi.blockSize
			var fast, compressed int64
			for idx := range blocks {
				loc, err := bi.m.lookup(idx)
				if err != nil {
					t.Fatal(err)
				}
				if loc.kind != blockCompressed {
					continue
				}
				compressed++
				var bp *[]byte
				var stored []byte
				var decodeGo func([]byte) error
				var decodeFast func([]byte) bool
				switch m := bi.m.(type) {
				case *qcow2Mapper:
					bp, stored, err = readCompressed(m.r, loc.off, loc.n)
					decodeGo = func(dst []byte) error { return m.inflateGo(stored, dst) }
					decodeFast = func(dst []byte) bool { return inflateFast(stored, dst, bi.blockSize, nil) }
				case *vmdkMapper:
					bp, stored, err = m.readGrain(loc)
					decodeGo = func(dst []byte) error { return m.inflateGo(stored, dst) }
					decodeFast = func(dst []byte) bool { return inflateZlibFast(stored, dst, bi.blockSize) }
				}
				if err != nil {
					t.Fatal(err)
				}
				want := make([]byte, bi.blockSize)
				if err := decodeGo(want); err != nil {
					t.Fatalf("block %d: %v", idx, err)
				}
				got := make([]byte, bi.blockSize)
				if decodeFast(got) {
					fast++
					if !bytes.Equal(got, want) {
						t.Fatalf("block %d: the fast path decoded other bytes", idx)
					}
					part := make([]byte, 1000)
					if !decodeFast(part) || !bytes.Equal(part, want[:1000]) {
						t.Fatalf("block %d: a partial read did not decode on the fast path to the same bytes", idx)
					}
				}
				putCompressed(bp)
			}
			if compressed == 0 || fast < compressed-1 {
				t.Fatalf("%d of %d compressed blocks decoded on the fast path", fast, compressed)
			}
			t.Logf("%d of %d compressed blocks on the fast path", fast, compressed)
		})
	}
}

package libdeflate_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/klauspost/compress/flate"

	"github.com/glimpse-project/glimpse/convert/internal/libdeflate"
)

func deflate(t testing.TB, p []byte, level int) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(p)
	w.Close()
	return b.Bytes()
}

// sample is 64 KiB of an executable: compressible, but not trivially.
func sample(t testing.TB) []byte {
	p, err := os.ReadFile(os.Args[0])
	if err != nil || len(p) < 1<<20 {
		t.Fatalf("test binary: %v", err)
	}
	return p[len(p)/2 : len(p)/2+64<<10]
}

func TestInflate(t *testing.T) {
	if !libdeflate.Available {
		t.Skip("built without cgo: the callers' Go decoders run alone")
	}
	plain := sample(t)
	random := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{1}).Read(random)
	for _, tc := range []struct {
		name  string
		data  []byte
		level int
	}{
		{"stored", plain, flate.NoCompression},
		{"fast", plain, flate.BestSpeed},
		{"best", plain, flate.BestCompression},
		{"huffman only", plain, flate.HuffmanOnly},
		{"incompressible", random, flate.DefaultCompression},
		{"zeros", make([]byte, 64<<10), flate.DefaultCompression},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := deflate(t, tc.data, tc.level)
			// Trailing bytes after the stream, as in a qcow2's
			// sector-rounded compressed size, are not taken.
			src := append(append([]byte{}, z...), 0xde, 0xad, 0xbe, 0xef)
			dst := make([]byte, len(tc.data))
			used, ok := libdeflate.Inflate(src, dst)
			if !ok || used != len(z) || !bytes.Equal(dst, tc.data) {
				t.Fatalf("ok %v, used %d of %d, equal %v", ok, used, len(z), bytes.Equal(dst, tc.data))
			}
			// A stream that does not end exactly at dst's end is
			// left to the Go decoder, either way.
			if _, ok := libdeflate.Inflate(src, make([]byte, len(tc.data)-1)); ok {
				t.Error("a stream longer than dst decoded")
			}
			if _, ok := libdeflate.Inflate(src, make([]byte, len(tc.data)+1)); ok {
				t.Error("a stream shorter than dst decoded")
			}
			if _, ok := libdeflate.Inflate(z[:len(z)/2], dst); ok {
				t.Error("half a stream decoded")
			}
		})
	}
	if _, ok := libdeflate.Inflate(nil, make([]byte, 10)); ok {
		t.Error("no input decoded")
	}
	if _, ok := libdeflate.Inflate([]byte{0xff, 0xff, 0xff}, make([]byte, 10)); ok {
		t.Error("garbage decoded")
	}
}

// Whatever libdeflate accepts, Go's decoder decodes to the same bytes:
// the fast path never changes what a reader sees.
func FuzzInflate(f *testing.F) {
	plain := sample(f)
	for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.BestCompression, flate.HuffmanOnly} {
		f.Add(deflate(f, plain[:4096], level), uint16(4096))
	}
	f.Add([]byte{0x03, 0x00}, uint16(1))
	f.Fuzz(func(t *testing.T, src []byte, n uint16) {
		dst := make([]byte, int(n)+1)
		used, ok := libdeflate.Inflate(src, dst)
		if !ok {
			return
		}
		if used <= 0 || used > len(src) {
			t.Fatalf("used %d of %d", used, len(src))
		}
		want := make([]byte, len(dst))
		if _, err := io.ReadFull(flate.NewReader(bytes.NewReader(src)), want); err != nil {
			t.Fatalf("libdeflate decoded %d bytes, Go's decoder: %v", len(dst), err)
		}
		if !bytes.Equal(dst, want) {
			t.Fatal("libdeflate and Go's decoder disagree")
		}
	})
}

func BenchmarkInflate(b *testing.B) {
	plain := sample(b)
	z := deflate(b, plain, flate.DefaultCompression)
	dst := make([]byte, len(plain))
	b.Run("libdeflate", func(b *testing.B) {
		if !libdeflate.Available {
			b.Skip("no cgo")
		}
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			if _, ok := libdeflate.Inflate(z, dst); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("klauspost", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		zr := flate.NewReader(nil)
		rd := bytes.NewReader(z)
		for b.Loop() {
			rd.Reset(z)
			zr.(flate.Resetter).Reset(rd, nil)
			if _, err := io.ReadFull(zr, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}

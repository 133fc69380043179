package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
)

// Seeded returns a backend that holds exactly the given objects. Writable
// backends get them through Create (SeedByPut); read-only ones (http) are
// handed a server that serves them.
type Seeded func(t *testing.T, objects map[string][]byte) backend.Backend

// SeedByPut turns a constructor of empty, writable backends into a Seeded.
func SeedByPut(newBackend func(t *testing.T) backend.Backend) Seeded {
	return func(t *testing.T, objects map[string][]byte) backend.Backend {
		b := newBackend(t)
		keys := make([]string, 0, len(objects))
		for k := range objects {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := Put(context.Background(), b, k, objects[k]); err != nil {
				b.Close()
				t.Fatalf("seed %s: %v", k, err)
			}
		}
		return b
	}
}

// readObjects are the objects every read case starts from: sizes around the
// edges of blocks and parts (the remote stores read in 4 MiB blocks).
func readObjects(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"empty": {},
		"one":   {'x'},
		"small": randomBytes(t, 1000),
		"mid":   randomBytes(t, 300_001),
		"big":   randomBytes(t, 9<<20+12345),
	}
}

// RunRead runs the reading cases: whole and ranged reads, reads past the
// end, missing keys, small sequential reads as the mount makes them, and
// concurrent readers. Run includes them for writable backends; a read-only
// backend calls RunRead alone.
func RunRead(t *testing.T, seed Seeded) {
	cases := []struct {
		name string
		fn   func(*testing.T, backend.Backend, map[string][]byte)
	}{
		{"Whole", testReadWhole},
		{"Ranges", testReadRanges},
		{"PastEnd", testReadPastEnd},
		{"Missing", testReadMissing},
		{"Sequential128K", testReadSequential},
		{"ConcurrentReaders", testReadConcurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objects := readObjects(t)
			b := seed(t, objects)
			t.Cleanup(func() { b.Close() })
			c.fn(t, b, objects)
		})
	}
}

func testReadWhole(t *testing.T, b backend.Backend, objects map[string][]byte) {
	ctx := context.Background()
	for k, want := range objects {
		info, err := b.Stat(ctx, k)
		if err != nil {
			t.Fatalf("stat %s: %v", k, err)
		}
		if info.Size != int64(len(want)) {
			t.Fatalf("stat %s: size %d, want %d", k, info.Size, len(want))
		}
		got, err := Get(ctx, b, k)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("get %s: %d bytes differ from the %d stored", k, len(got), len(want))
		}
	}
}

func testReadRanges(t *testing.T, b backend.Backend, objects map[string][]byte) {
	data := objects["big"]
	r, err := b.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rng := mrand.New(mrand.NewPCG(1, 2))
	// Edges of 4 MiB blocks and 5/16 MiB parts, then random ranges,
	// visited out of order.
	ranges := [][2]int{{4<<20 - 1, 2}, {5<<20 - 3, 10}, {0, 1}, {8<<20 - 100, 4<<20 + 200}, {len(data) - 1, 1}}
	for i := 0; i < 40; i++ {
		off := rng.IntN(len(data))
		ranges = append(ranges, [2]int{off, rng.IntN(min(len(data)-off, 1<<20)) + 1})
	}
	for _, rg := range ranges {
		off, n := rg[0], min(rg[1], len(data)-rg[0])
		p := make([]byte, n)
		got, err := r.ReadAt(p, int64(off))
		if got != n || (err != nil && !(err == io.EOF && off+n == len(data))) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, got, err)
		}
		if !bytes.Equal(p, data[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d): content differs", off, n)
		}
	}
}

func testReadPastEnd(t *testing.T, b backend.Backend, objects map[string][]byte) {
	ctx := context.Background()
	for _, k := range []string{"small", "big"} {
		data := objects[k]
		r, err := b.Open(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 64)
		n, err := r.ReadAt(p, int64(len(data)-5))
		if n != 5 || err == nil || !bytes.Equal(p[:5], data[len(data)-5:]) {
			t.Fatalf("%s: read across the end: n=%d err=%v, want 5 bytes and an error", k, n, err)
		}
		if n, err := r.ReadAt(p, int64(len(data))+100); n != 0 || err == nil {
			t.Fatalf("%s: read beyond the end: n=%d err=%v", k, n, err)
		}
		if n, err := r.ReadAt(p[:0], 0); n != 0 || err != nil {
			t.Fatalf("%s: empty read: n=%d err=%v", k, n, err)
		}
		r.Close()
	}
	r, err := b.Open(ctx, "empty")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != 0 {
		t.Fatalf("empty object has size %d", r.Size())
	}
	if n, err := r.ReadAt(make([]byte, 1), 0); n != 0 || err == nil {
		t.Fatalf("read of an empty object: n=%d err=%v", n, err)
	}
}

func testReadMissing(t *testing.T, b backend.Backend, _ map[string][]byte) {
	ctx := context.Background()
	for _, k := range []string{"absent", "bigger"} {
		if _, err := b.Open(ctx, k); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("open %s: %v, want ErrNotFound", k, err)
		}
		if _, err := b.Stat(ctx, k); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("stat %s: %v, want ErrNotFound", k, err)
		}
	}
}

// testReadSequential reads as cat through the mount does: 128 KiB at a
// time, in order, through one reader.
func testReadSequential(t *testing.T, b backend.Backend, objects map[string][]byte) {
	data := objects["big"]
	r, err := b.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got bytes.Buffer
	// struct{io.Writer} hides ReadFrom, so the 128 KiB buffer is used.
	if _, err := io.CopyBuffer(struct{ io.Writer }{&got}, io.NewSectionReader(r, 0, r.Size()), make([]byte, 128<<10)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("sequential read: %d bytes differ from the %d stored", got.Len(), len(data))
	}
}

func testReadConcurrent(t *testing.T, b backend.Backend, objects map[string][]byte) {
	data := objects["big"]
	r, err := b.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(g), 7))
			p := make([]byte, 200_000)
			for i := 0; i < 10; i++ {
				off := rng.IntN(len(data) - len(p))
				if _, err := r.ReadAt(p, int64(off)); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p, data[off:off+len(p)]) {
					errs <- fmt.Errorf("reader %d: ReadAt(%d) content differs", g, off)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

package convert

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCachedReadsMatch reads every fixture through one shared cache far
// smaller than the fixtures, twice, in parallel: the bytes are qemu-img's,
// and the cache never holds more than its budget.
func TestCachedReadsMatch(t *testing.T) {
	const budget = 1 << 20
	cache := NewBlockCache(budget)
	var wg sync.WaitGroup
	for _, fx := range loadFixtures(t) {
		for round := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				img, err := OpenWith(bytes.NewReader(fx.data), int64(len(fx.data)), fx.format, OpenOptions{Cache: cache, Key: fx.name})
				if err != nil {
					t.Errorf("%s: %v", fx.name, err)
					return
				}
				buf := make([]byte, img.Size())
				// Odd-sized reads, so blocks are taken from the cache in pieces.
				for off := int64(0); off < img.Size(); off += 12345 {
					if _, err := img.ReadAt(buf[off:min(off+12345, img.Size())], off); err != nil && !errors.Is(err, io.EOF) {
						t.Errorf("%s round %d: ReadAt %d: %v", fx.name, round, off, err)
						return
					}
				}
				if sum := sha256.Sum256(buf); hex.EncodeToString(sum[:]) != fx.sha256 {
					t.Errorf("%s round %d: content differs from qemu-img convert -O raw", fx.name, round)
				}
				if used, _ := cache.Used(); used > budget {
					t.Errorf("cache holds %d bytes, budget %d", used, budget)
				}
			}()
		}
	}
	wg.Wait()
	if _, n := cache.Used(); n == 0 {
		t.Fatal("nothing was cached")
	}
}

// TestCacheSingleFlight: concurrent misses on one block decode it once,
// even with nothing kept (budget 0), and all get the decoded bytes.
func TestCacheSingleFlight(t *testing.T) {
	cache := NewBlockCache(0)
	key := cacheKey{image: "img", index: 7}
	gate := make(chan struct{})
	var fills atomic.Int32
	fill := func(dst []byte) error {
		fills.Add(1)
		<-gate
		copy(dst, "decoded")
		return nil
	}
	const readers = 8
	var wg sync.WaitGroup
	results := make([]string, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := cache.get(key, 7, fill)
			if err != nil {
				t.Error(err)
			}
			results[i] = string(b)
		}()
	}
	// Release the decoder once every reader waits on it.
	for cache.waiting(key) < readers-1 {
		runtime.Gosched()
	}
	close(gate)
	wg.Wait()
	if n := fills.Load(); n != 1 {
		t.Fatalf("%d decodes for one block", n)
	}
	for i, r := range results {
		if r != "decoded" {
			t.Fatalf("reader %d got %q", i, r)
		}
	}
	// A failed decode is not kept: the next reader tries again.
	if _, err := cache.get(cacheKey{image: "img", index: 8}, 1, func([]byte) error { return errors.New("bad block") }); err == nil {
		t.Fatal("decode error lost")
	}
	if _, err := cache.get(cacheKey{image: "img", index: 8}, 1, func([]byte) error { return nil }); err != nil {
		t.Fatalf("after a failed decode: %v", err)
	}
}

// TestCacheShare: one image cannot take more than a quarter of the budget;
// the least recently used of its blocks go first.
func TestCacheShare(t *testing.T) {
	cache := NewBlockCache(64 << 10)
	fill := func(dst []byte) error { return nil }
	for i := range int64(64) {
		cache.get(cacheKey{image: "big", index: i}, 1<<10, fill)
	}
	cache.get(cacheKey{image: "small", index: 0}, 1<<10, fill)
	cache.mu.Lock()
	big, small := cache.byImage["big"], cache.byImage["small"]
	_, newest := cache.entries[cacheKey{image: "big", index: 63}]
	_, oldest := cache.entries[cacheKey{image: "big", index: 0}]
	cache.mu.Unlock()
	if big != 16<<10 || small != 1<<10 || !newest || oldest {
		t.Fatalf("big holds %d (newest kept %v, oldest kept %v), small %d", big, newest, oldest, small)
	}
}

// FuzzCachedRead: a hostile image read through a small shared cache
// stays within bounds, and the cache within its budget.
func FuzzCachedRead(f *testing.F) {
	addSeeds(f, "")
	f.Fuzz(func(t *testing.T, b []byte) {
		s := decodeSparse(b)
		const budget = 256 << 10
		cache := NewBlockCache(budget)
		img, err := OpenWith(s, s.size, "", OpenOptions{Cache: cache, Key: "fuzz"})
		if err != nil {
			return
		}
		exerciseImage(t, img)
		exerciseImage(t, img) // again, from the cache
		if used, _ := cache.Used(); used > budget {
			t.Fatalf("cache holds %d bytes, budget %d", used, budget)
		}
	})
}

// TestEmptyQCOW2ExtentIsCheap: the extent map of an empty 1 TiB qcow2 is
// one hole, found without a read per cluster (ls -l and SEEK_DATA of a
// big sparse image in raw/ ask for it).
func TestEmptyQCOW2ExtentIsCheap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.qcow2")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Create(f, QCOW2, 1<<40, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReader{r: bytes.NewReader(data)}
	img, err := OpenWith(cr, int64(len(data)), QCOW2, OpenOptions{Cache: NewBlockCache(1 << 20), Key: "big"})
	if err != nil {
		t.Fatal(err)
	}
	before := cr.n.Load()
	ext, err := img.Extent(0, img.Size())
	if err != nil || ext != (Extent{Start: 0, Length: 1 << 40, Zero: true}) {
		t.Fatalf("Extent = %+v, %v; want one hole of 1 TiB", ext, err)
	}
	// The L1 table is 16 KiB; an 8-byte read per cluster would be 128 MiB.
	if n := cr.n.Load() - before; n > 1<<20 {
		t.Fatalf("%d bytes read for the extent map of an empty image", n)
	}
}

// TestCacheAdmitsOnSecondRead: a compressed block read once is decoded
// for the read alone and not kept (random reads over more than the cache
// would only churn it); read again, it is kept, and later reads of it come
// from the cache with the same bytes.
func TestCacheAdmitsOnSecondRead(t *testing.T) {
	for _, fx := range loadFixtures(t) {
		if fx.name != "zlib.qcow2" && fx.name != "zstd.qcow2" && fx.name != "stream.vmdk" {
			continue
		}
		t.Run(fx.name, func(t *testing.T) {
			cache := NewBlockCache(64 << 20)
			img, err := OpenWith(bytes.NewReader(fx.data), int64(len(fx.data)), fx.format, OpenOptions{Cache: cache, Key: fx.name})
			if err != nil {
				t.Fatal(err)
			}
			plain, err := Open(bytes.NewReader(fx.data), int64(len(fx.data)), fx.format)
			if err != nil {
				t.Fatal(err)
			}
			// The first compressed block past the first 4 KiB of data.
			b := img.(*blockImage)
			var off int64 = -1
			for idx := int64(0); idx*b.blockSize < b.size; idx++ {
				if loc, err := b.m.lookup(idx); err == nil && loc.kind == blockCompressed {
					off = idx*b.blockSize + 4096
					break
				}
			}
			if off < 0 {
				t.Fatal("no compressed block in the fixture")
			}
			want := make([]byte, 4096)
			if _, err := plain.ReadAt(want, off); err != nil {
				t.Fatal(err)
			}
			cachedAfter := []int{0, 1, 1}
			for i, entries := range cachedAfter {
				got := make([]byte, 4096)
				if _, err := img.ReadAt(got, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("read %d: bytes differ from an uncached read", i+1)
				}
				cache.mu.Lock()
				n := 0
				for k := range cache.entries {
					if k.kind == cachedBlock {
						n++
					}
				}
				cache.mu.Unlock()
				if n != entries {
					t.Fatalf("after read %d the cache holds %d blocks, want %d", i+1, n, entries)
				}
			}
		})
	}
}

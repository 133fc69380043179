package swift_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"

	ncw "github.com/ncw/swift/v2"

	"github.com/glimpse-project/glimpse/backend/swift"
)

// BenchmarkPut puts the same GLIMPSE_BENCH_MIB (default 1024) MiB of random
// data through the store's Writer (in 128 KiB writes, as the mount gets
// them, with the default 64 MiB segments) and through ncw/swift directly:
// one streamed PUT (what a client does up to Swift's 5 GiB max_file_size),
// and ncw/swift's own static large object writer with the same segments.
//
//	go test -run '^$' -bench Put -benchtime 3x ./backend/swift
func BenchmarkPut(b *testing.B) {
	s := need(b)
	mib := 1024
	if v, err := strconv.Atoi(os.Getenv("GLIMPSE_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	data := make([]byte, mib<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	sum := md5.Sum(data)
	etag := hex.EncodeToString(sum[:])
	ctx := context.Background()
	cfg := s.config(randomName(b), "")
	cfg.SegmentSize = swift.DefaultSegmentSize
	st := open(b, cfg)
	c := st.Connection()

	b.Run("glimpse-writer", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			w, err := st.Create(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			for p := data; len(p) > 0; p = p[min(len(p), 128<<10):] {
				if _, err := w.Write(p[:min(len(p), 128<<10)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := st.Delete(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("ncw-put", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			if _, err := c.ObjectPut(ctx, cfg.Container, "direct", bytes.NewReader(data), true, etag, "application/octet-stream", nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := c.ObjectDelete(ctx, cfg.Container, "direct"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("ncw-slo", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			f, err := c.StaticLargeObjectCreateFile(ctx, &ncw.LargeObjectOpts{
				Container: cfg.Container, ObjectName: "slo", ChunkSize: swift.DefaultSegmentSize,
				SegmentContainer: cfg.Container + "_segments", SegmentPrefix: fmt.Sprintf("slo/%d", i),
				ContentType: "application/octet-stream",
			})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			if err := f.CloseWithContext(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := c.StaticLargeObjectDelete(ctx, cfg.Container, "slo"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

//go:build ceph

package rbd_test

import (
	"context"
	"crypto/rand"
	"os"
	"strconv"
	"testing"

	cephrbd "github.com/ceph/go-ceph/rbd"
)

// BenchmarkPut puts the same GLIMPSE_BENCH_MIB (default 1024) MiB of random
// data through the store's Writer (in 128 KiB writes, as the mount gets
// them, gathered into 4 MiB chunks; with Commit's flush, snapshot, protect
// and rename) and through go-ceph directly (an image of the full size,
// sequential 4 MiB WriteAt, Flush).
//
//	go test -tags ceph,pacific -run '^$' -bench Put -benchtime 3x ./backend/rbd
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
	ctx := context.Background()
	cfg := s.config(randomName(b))
	cfg.ChunkSize = 4 << 20
	st := open(b, cfg)
	ioctx := st.IOContext()

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
	b.Run("go-ceph-direct", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			opts := cephrbd.NewRbdImageOptions()
			if err := cephrbd.CreateImage(ioctx, "direct", uint64(len(data)), opts); err != nil {
				b.Fatal(err)
			}
			opts.Destroy()
			img, err := cephrbd.OpenImage(ioctx, "direct", cephrbd.NoSnapshot)
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < len(data); off += 4 << 20 {
				if _, err := img.WriteAt(data[off:min(len(data), off+4<<20)], int64(off)); err != nil {
					b.Fatal(err)
				}
			}
			if err := img.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := img.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := cephrbd.RemoveImage(ioctx, "direct"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

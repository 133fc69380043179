package s3_test

import (
	"context"
	"io"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/glimpse-project/glimpse/backend/s3"
)

// Benchmarks, side by side against direct minio-go calls to the same MinIO
// (not timed tests; run them on purpose):
//
//	go test -run '^$' -bench . -benchtime 3x ./backend/s3/
//
// Each reports MB/s (b.SetBytes) and the peak live Go heap during the run
// (runtime/metrics /gc/heap/live:bytes, sampled every 5 ms) as
// peak-live-heap-MiB. The process's RSS can reach about twice that (GOGC).

const benchSize = 512 << 20

// pattern is an endless, cheap, incompressible-enough source.
type pattern struct{ n int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.n*2654435761>>13) ^ byte(i)
		p.n++
	}
	return len(b), nil
}

// peakHeap samples the live heap (as of the latest GC, so garbage not yet
// collected does not count) until stop is called and returns the peak.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

func benchStore(b *testing.B) *s3.S3 {
	m := sharedMinio(b)
	cfg := config(m)
	cfg.PartSize = 0 // the defaults the daemon uses: 16 MiB parts, 4 threads
	ctx := context.Background()
	s, err := s3.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkPut(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	chunk := make([]byte, 128<<10) // cp's write size
	b.Run("store", func(b *testing.B) {
		b.SetBytes(benchSize)
		runtime.GC()
		stop := peakHeap()
		for i := 0; i < b.N; i++ {
			w, err := s.Create(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			src := io.LimitReader(&pattern{}, benchSize)
			if _, err := io.CopyBuffer(w, src, chunk); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(stop())/(1<<20), "peak-live-heap-MiB")
	})
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(benchSize)
		runtime.GC()
		stop := peakHeap()
		for i := 0; i < b.N; i++ {
			// What a caller who knows the size does: minio-go picks its
			// own part size and concurrency.
			src := io.LimitReader(&pattern{}, benchSize)
			if _, err := s.Client().PutObject(ctx, s.Bucket(), "images/direct", src, benchSize, minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(stop())/(1<<20), "peak-live-heap-MiB")
	})
}

func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	w, err := s.Create(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(w, io.LimitReader(&pattern{}, benchSize)); err != nil {
		b.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128<<10) // the kernel's FUSE read size
	b.Run("store", func(b *testing.B) {
		b.SetBytes(benchSize)
		runtime.GC()
		stop := peakHeap()
		for i := 0; i < b.N; i++ {
			r, err := s.Open(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, io.NewSectionReader(r, 0, r.Size()), buf); err != nil {
				b.Fatal(err)
			}
			r.Close()
		}
		b.ReportMetric(float64(stop())/(1<<20), "peak-live-heap-MiB")
	})
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(benchSize)
		runtime.GC()
		stop := peakHeap()
		for i := 0; i < b.N; i++ {
			o, err := s.Client().GetObject(ctx, s.Bucket(), "images/bench", minio.GetObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, o, buf); err != nil {
				b.Fatal(err)
			}
			o.Close()
		}
		b.ReportMetric(float64(stop())/(1<<20), "peak-live-heap-MiB")
	})
}

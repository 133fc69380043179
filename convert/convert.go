package convert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// Options tune Convert.
type Options struct {
	// Workers is the number of concurrent copiers; 0 means one per CPU,
	// at least 4, since the work is mostly waiting on I/O.
	Workers int
	// SegmentSize is the unit of work a copier takes at a time; it is
	// rounded up to a multiple of the writer's block size. 0 means 1 MiB.
	// Whatever its size, a copier reads and writes at most ioSize (or one
	// block, if larger) per call.
	SegmentSize int64
	// Progress, if set, is called after each segment with the bytes of
	// the virtual disk done so far; calls are serialised.
	Progress func(done, total int64)
}

func (o *Options) validate(blockSize int64) error {
	if o.Workers < 0 || o.SegmentSize < 0 {
		return fmt.Errorf("negative workers or segment size")
	}
	if o.Workers == 0 {
		o.Workers = max(runtime.NumCPU(), 4)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = ioSize
	}
	o.SegmentSize = (o.SegmentSize + blockSize - 1) / blockSize * blockSize
	return nil
}

// ioSize caps the bytes a copier reads per call, and so its buffer
// (writers split their writes further, see maxWrite). Measured on the
// 2-vCPU development VM with scripts/bench-convert: 4 MiB segments, read
// and written whole, cost 1.3-4 s of kernel time where 1 MiB cost 0.4 s,
// mostly because of the write size; with writes capped at 256 KiB, 4 MiB
// reads still made raw -> qcow2 slower (0.92-1.15 s against 0.68-0.85 s).
const ioSize = 1 << 20

// Convert copies every non-zero block of src into dst, in parallel. Holes
// the source reports are never read, and blocks that read as zeros are
// never written, so the output stays sparse. It does not Close dst.
func Convert(ctx context.Context, dst Writer, src Image, opts Options) error {
	bs := dst.BlockSize()
	if err := opts.validate(bs); err != nil {
		return err
	}
	size := src.Size()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		done     atomic.Int64
		firstErr error
		errOnce  sync.Once
		progMu   sync.Mutex
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for range opts.Workers {
		wg.Go(func() {
			buf := make([]byte, min(opts.SegmentSize, max(ioSize/bs, 1)*bs))
			for ctx.Err() == nil {
				start := next.Add(opts.SegmentSize) - opts.SegmentSize
				if start >= size {
					return
				}
				end := min(start+opts.SegmentSize, size)
				if err := copySegment(dst, src, buf, start, end, bs); err != nil {
					fail(err)
					return
				}
				d := done.Add(end - start)
				if opts.Progress != nil {
					progMu.Lock()
					opts.Progress(d, size)
					progMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// copySegment copies [start, end), which begins on a block boundary.
func copySegment(dst Writer, src Image, buf []byte, start, end, bs int64) error {
	pos := start
	for pos < end {
		// Skip holes, then take the data run and widen it to whole
		// blocks: a block is written whole or not at all.
		ext, err := src.Extent(pos, end-pos)
		if err != nil {
			return err
		}
		if ext.Zero {
			pos += ext.Length
			continue
		}
		from := pos / bs * bs
		to := min((ext.Start+ext.Length+bs-1)/bs*bs, end, from+int64(len(buf)))
		if from < to {
			n := to - from
			if _, err := src.ReadAt(buf[:n], from); err != nil && !(errors.Is(err, io.EOF) && to == src.Size()) {
				return fmt.Errorf("read at %d: %w", from, err)
			}
			// Hand the writer maximal runs of non-zero blocks.
			for off := int64(0); off < n; {
				if isZero(buf[off:min(off+bs, n)]) {
					off += bs
					continue
				}
				run := off + bs
				for run < n && !isZero(buf[run:min(run+bs, n)]) {
					run += bs
				}
				run = min(run, n)
				if err := dst.WriteBlock(buf[off:run], from+off); err != nil {
					return fmt.Errorf("write at %d: %w", from+off, err)
				}
				off = run
			}
		}
		pos = to // > pos: to covers at least the block holding pos
	}
	return nil
}

// FileOptions are the options of ConvertFile, qemu-img convert's.
type FileOptions struct {
	// InFormat is the source format; empty means detect. Detection
	// refuses unsafe images; "raw" reads any file as plain bytes.
	InFormat string
	// OutFormat is the target format.
	OutFormat string
	Create    CreateOptions
	Options
	// Sync makes the output durable before returning.
	Sync bool
}

// ConvertFile converts the image file in to a new file out.
func ConvertFile(ctx context.Context, in, out string, opts FileOptions) (err error) {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	img, err := Open(src, st.Size(), opts.InFormat)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	// Opening the output truncates it: never let that be the input.
	if ost, err := os.Stat(out); err == nil && os.SameFile(st, ost) {
		return fmt.Errorf("%s: the output is the input file", out)
	}
	dst, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out)
		}
	}()
	if opts.Create.Name == "" {
		opts.Create.Name = out
	}
	w, err := Create(dst, opts.OutFormat, img.Size(), opts.Create)
	if err != nil {
		return err
	}
	if err := Convert(ctx, w, img, opts.Options); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("finish %s: %w", out, err)
	}
	if opts.Sync {
		return dst.Sync()
	}
	return nil
}

package convert

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// compressedBufs holds buffers for the stored bytes of one compressed
// block. A decoder given a plain io.Reader wraps it in a 4 KiB bufio.Reader,
// which made a pread per 4 KiB of every cluster (seven for a typical zlib
// qcow2 cluster) and a copy of each byte; a block's bytes read with one
// call and decoded from memory cost one pread.
var compressedBufs sync.Pool

// readCompressed reads the n bytes at off that hold one compressed block,
// with one call. n must be bounded by the caller (by the format's largest
// compressed block); the buffer goes back with putCompressed.
func readCompressed(r io.ReaderAt, off, n int64) (*[]byte, []byte, error) {
	bp, _ := compressedBufs.Get().(*[]byte)
	if bp == nil || int64(cap(*bp)) < n {
		b := make([]byte, n)
		bp = &b
	}
	buf := (*bp)[:n]
	got, err := r.ReadAt(buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
		compressedBufs.Put(bp)
		if errors.Is(err, io.EOF) {
			// The decoder would have met the same end of the file.
			return nil, nil, fmt.Errorf("%w: a compressed block runs past the end of the file", ErrCorrupt)
		}
		return nil, nil, fmt.Errorf("read compressed block at %d: %w", off, err)
	}
	return bp, buf, nil
}

func putCompressed(bp *[]byte) { compressedBufs.Put(bp) }

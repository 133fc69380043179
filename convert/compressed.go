package convert

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/glimpse-project/glimpse/convert/internal/libdeflate"
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

// blockBufs holds whole-block buffers for inflateFast's partial reads.
var blockBufs sync.Pool

// inflateFast decodes the raw DEFLATE stream at the start of src into dst,
// the first len(dst) bytes of a block of blockLen bytes, with libdeflate
// (see its package), and reports whether it did. It must decode whole
// blocks, so a partial dst is decoded through a block-sized buffer; it
// succeeds only for a stream that fills the block exactly and that check,
// if set, accepts (given the block and the bytes of src the stream took).
// On false dst is undefined and the format's Go decoder decides: it also
// reads streams libdeflate refuses (one going on past the block, as qemu
// accepts) and says why a bad one is bad.
func inflateFast(src, dst []byte, blockLen int64, check func(block []byte, used int) bool) bool {
	if !libdeflate.Available || int64(len(dst)) > blockLen {
		return false
	}
	block := dst
	if int64(len(dst)) < blockLen {
		bp, _ := blockBufs.Get().(*[]byte)
		if bp == nil || int64(cap(*bp)) < blockLen {
			b := make([]byte, blockLen)
			bp = &b
		}
		defer blockBufs.Put(bp)
		block = (*bp)[:blockLen]
	}
	used, ok := libdeflate.Inflate(src, block)
	if !ok || (check != nil && !check(block, used)) {
		return false
	}
	if len(block) != len(dst) {
		copy(dst, block)
	}
	return true
}

package convert

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// Image is a read-only random-access view of the virtual disk an image
// describes: ReadAt returns guest bytes (zeros for holes), and Extent says
// where the data and the holes are, so a copy can skip the holes without
// reading them.
type Image interface {
	io.ReaderAt
	// Size is the virtual size in bytes.
	Size() int64
	// Format is the qemu name of the on-disk format.
	Format() string
	// Extent describes the run starting at off that is stored the same
	// way (data or zero), at most length bytes long and never past Size.
	Extent(off, length int64) (Extent, error)
}

// Extent is a run of the virtual disk.
type Extent struct {
	Start, Length int64
	// Zero is set when the run is known to read as zeros without being
	// read (a hole, an unallocated cluster, a zero flag).
	Zero bool
}

// ErrUnsupported marks a well-formed image that this package can inspect
// but not read or write (for example zstd-compressed qcow2 clusters).
var ErrUnsupported = errors.New("unsupported image")

// Open inspects the size bytes readable through r and returns a view of
// the virtual disk. A non-empty format must agree with the content, except
// that "raw" reads any content as plain bytes, which is always safe.
func Open(r io.ReaderAt, size int64, format string) (Image, error) {
	if format == Raw {
		return newRawImage(r, size), nil
	}
	rep, err := Inspect(r, size)
	if err != nil {
		return nil, err
	}
	if format != "" && !rep.Matches(format) {
		return nil, fmt.Errorf("%w: the image is %s, not %s", ErrUnsafe, rep.Format, format)
	}
	switch rep.Format {
	case QCOW2:
		return openQCOW2(r, size)
	case VMDK:
		return openVMDK(r, size)
	case VDI:
		return openVDI(r, size)
	case VPC:
		if rep.FixedVHD {
			return openFixedVHD(r, size)
		}
		return openVPC(r, size)
	case VHDX:
		return openVHDX(r, size)
	}
	return newRawImage(r, size), nil
}

// rawImage is the identity view; over an *os.File it finds holes with
// SEEK_DATA/SEEK_HOLE so that sparse raw files are not read in full.
type rawImage struct {
	r    io.ReaderAt
	size int64
	// last is the last run lseek found. SEEK_HOLE and SEEK_DATA scan
	// to the end of the run, which is often far past the segment that
	// asked, and copiers take neighbouring segments, so most questions
	// are answered by the previous one.
	mu   sync.Mutex
	last Extent
}

func newRawImage(r io.ReaderAt, size int64) *rawImage { return &rawImage{r: r, size: size} }

func (i *rawImage) Size() int64    { return i.size }
func (i *rawImage) Format() string { return Raw }

func (i *rawImage) ReadAt(p []byte, off int64) (int, error) {
	return readClamped(i.r, p, off, i.size)
}

const (
	seekData = 3 // SEEK_DATA, Linux and the BSDs
	seekHole = 4 // SEEK_HOLE
)

func (i *rawImage) Extent(off, length int64) (Extent, error) {
	if off < 0 || off >= i.size || length <= 0 {
		return Extent{}, fmt.Errorf("extent at %d out of range", off)
	}
	length = min(length, i.size-off)
	f, ok := seekerOf(i.r)
	if !ok {
		return Extent{Start: off, Length: length}, nil
	}
	i.mu.Lock()
	last := i.last
	i.mu.Unlock()
	if off >= last.Start && off < last.Start+last.Length {
		return Extent{Start: off, Length: min(length, last.Start+last.Length-off), Zero: last.Zero}, nil
	}
	run, err := i.seekRun(f, off)
	if err != nil {
		return Extent{Start: off, Length: length}, nil
	}
	i.mu.Lock()
	i.last = run
	i.mu.Unlock()
	return Extent{Start: off, Length: min(length, run.Length), Zero: run.Zero}, nil
}

// seekerOf returns what lseek(2) can ask about r's holes: the file
// itself, or the descriptor of a store's reader over a local file (which
// has Fd, as os.File has, but no Seek of its own).
func seekerOf(r io.ReaderAt) (io.Seeker, bool) {
	switch f := r.(type) {
	case *os.File:
		return f, true
	case interface{ Fd() uintptr }:
		return fdSeeker(f.Fd()), true
	}
	return nil, false
}

// fdSeeker seeks a descriptor it does not own.
type fdSeeker uintptr

func (fd fdSeeker) Seek(off int64, whence int) (int64, error) {
	return syscall.Seek(int(fd), off, whence)
}

// seekRun returns the whole run of data or hole at off, up to the end of
// the file; an error means lseek cannot tell (no SEEK_DATA support).
func (i *rawImage) seekRun(f io.Seeker, off int64) (Extent, error) {
	// lseek answers atomically, so concurrent workers may share the file
	// offset: each call reads back only its own result.
	data, err := f.Seek(off, seekData)
	if err != nil {
		// ENXIO: nothing but a hole from off to EOF.
		if errors.Is(err, syscall.ENXIO) {
			return Extent{Start: off, Length: i.size - off, Zero: true}, nil
		}
		return Extent{}, err
	}
	if data > off {
		return Extent{Start: off, Length: min(data, i.size) - off, Zero: true}, nil
	}
	hole, err := f.Seek(off, seekHole)
	if err != nil {
		return Extent{}, err
	}
	if hole <= off {
		return Extent{}, fmt.Errorf("SEEK_HOLE at %d returned %d", off, hole)
	}
	return Extent{Start: off, Length: min(hole, i.size) - off}, nil
}

// readClamped reads p at off from r, treating size as the end: it
// returns io.EOF with a short count when p runs past size, and zero-fills
// bytes that lie inside size but past the end of what r holds.
func readClamped(r io.ReaderAt, p []byte, off, size int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p = p[:size-off]
		eof = io.EOF
	}
	n, err := r.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, err
	}
	clear(p[n:])
	return len(p), eof
}

// Block-mapped formats (qcow2, vmdk, vdi, vpc, vhdx) share one reader: a
// format only says where each fixed-size guest block lives.

type blockKind uint8

const (
	blockZero       blockKind = iota // reads as zeros
	blockData                        // stored plainly at off
	blockCompressed                  // compressed stream at off, at most n bytes
)

type blockLoc struct {
	kind blockKind
	off  int64
	n    int64
	// zeroRun, for a blockZero, is how many blocks from this one are
	// known to be zero without asking (an unallocated qcow2 L2 table
	// covers thousands); 0 means just this one.
	zeroRun int64
}

// blocksKnown is how many blocks, from the one loc describes, an extent
// scan may skip at once.
func (loc blockLoc) blocksKnown() int64 {
	if loc.kind == blockZero && loc.zeroRun > 1 {
		return loc.zeroRun
	}
	return 1
}

type blockMapper interface {
	// lookup returns where guest block idx lives; it checks the location
	// against the file size so a read never follows a table out of bounds.
	lookup(idx int64) (blockLoc, error)
	// inflate decompresses a blockCompressed block into dst, which is at
	// most one block long: the first len(dst) bytes of the block.
	inflate(loc blockLoc, dst []byte) error
}

type blockImage struct {
	r         io.ReaderAt
	fileSize  int64
	size      int64
	format    string
	blockSize int64
	m         blockMapper
	bufs      sync.Pool // block-sized buffers for decompression

	// cache, if set, keeps decompressed blocks, shared with every other
	// image open with it, under key.
	cache *BlockCache
	key   string
}

func newBlockImage(r io.ReaderAt, fileSize, size int64, format string, blockSize int64, m blockMapper) *blockImage {
	bi := &blockImage{r: r, fileSize: fileSize, size: size, format: format, blockSize: blockSize, m: m}
	bi.bufs.New = func() any { b := make([]byte, blockSize); return &b }
	return bi
}

func (b *blockImage) Size() int64    { return b.size }
func (b *blockImage) Format() string { return b.format }

func (b *blockImage) ReadAt(p []byte, off int64) (int, error) {
	return b.readAt(p, off, false)
}

// ReadAtKeep implements Prefetcher: ReadAt, keeping every compressed
// block it decodes, read before or not.
func (b *blockImage) ReadAtKeep(p []byte, off int64) (int, error) {
	return b.readAt(p, off, true)
}

func (b *blockImage) readAt(p []byte, off int64, keep bool) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > b.size-off {
		p = p[:b.size-off]
		eof = io.EOF
	}
	// Blocks adjacent both in p and in the file are read with one call
	// (a zero block between them breaks the run even if the file does not).
	var pendStart, pendLen int
	var pendHost int64
	flush := func() error {
		if pendLen == 0 {
			return nil
		}
		_, err := readClamped(b.r, p[pendStart:pendStart+pendLen], pendHost, b.fileSize)
		pendLen = 0
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read at %d: %w", pendHost, err)
		}
		return nil
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		idx, in := pos/b.blockSize, pos%b.blockSize
		n := int(min(int64(len(p)-done), b.blockSize-in))
		dst := p[done : done+n]
		loc, err := b.m.lookup(idx)
		if err != nil {
			return done, err
		}
		switch loc.kind {
		case blockZero:
			clear(dst)
		case blockData:
			if host := loc.off + in; pendLen > 0 && pendStart+pendLen == done && pendHost+int64(pendLen) == host {
				pendLen += n
			} else {
				if err := flush(); err != nil {
					return done, err
				}
				pendStart, pendHost, pendLen = done, host, n
			}
		case blockCompressed:
			key := cacheKey{image: b.key, kind: cachedBlock, index: idx}
			if b.cache != nil && (keep || b.cache.budget == 0 || b.cache.admit(key)) {
				block, err := b.cache.get(key, b.blockSize, func(dst []byte) error {
					return b.m.inflate(loc, dst)
				})
				if err != nil {
					return done, fmt.Errorf("block %d: %w", idx, err)
				}
				copy(dst, block[in:])
				break
			}
			// Decoded only as far as the read needs.
			bp := b.bufs.Get().(*[]byte)
			err := b.m.inflate(loc, (*bp)[:in+int64(n)])
			if err == nil {
				copy(dst, (*bp)[in:])
			}
			b.bufs.Put(bp)
			if err != nil {
				return done, fmt.Errorf("block %d: %w", idx, err)
			}
		}
		done += n
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return done, eof
}

func (b *blockImage) Extent(off, length int64) (Extent, error) {
	if off < 0 || off >= b.size || length <= 0 {
		return Extent{}, fmt.Errorf("extent at %d out of range", off)
	}
	end := off + min(length, b.size-off)
	first, err := b.m.lookup(off / b.blockSize)
	if err != nil {
		return Extent{}, err
	}
	zero := first.kind == blockZero
	pos := (off/b.blockSize + first.blocksKnown()) * b.blockSize
	for pos < end {
		loc, err := b.m.lookup(pos / b.blockSize)
		if err != nil {
			return Extent{}, err
		}
		if (loc.kind == blockZero) != zero {
			break
		}
		pos += loc.blocksKnown() * b.blockSize
	}
	return Extent{Start: off, Length: min(pos, end) - off, Zero: zero}, nil
}

// readUint reads one little- or big-endian table entry of width 4 or 8.
func readEntry(r io.ReaderAt, off int64, width int, bigEndian bool) (uint64, error) {
	var buf [8]byte
	if _, err := r.ReadAt(buf[:width], off); err != nil {
		return 0, err
	}
	var v uint64
	for i := range width {
		if bigEndian {
			v = v<<8 | uint64(buf[i])
		} else {
			v |= uint64(buf[i]) << (8 * i)
		}
	}
	return v, nil
}

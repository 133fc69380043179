package convert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// qcow2Header is the fixed part of a qcow2 header (version 2 layout, which
// version 3 extends), big-endian on disk (qemu docs/interop/qcow2.txt).
type qcow2Header struct {
	Magic                 uint32
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
}

// qcow2V3Header follows qcow2Header in version 3 images.
type qcow2V3Header struct {
	IncompatibleFeatures uint64
	CompatibleFeatures   uint64
	AutoclearFeatures    uint64
	RefcountOrder        uint32
	HeaderLength         uint32
}

const (
	qcow2V2HeaderLen = 72
	qcow2V3HeaderLen = 104

	qcow2IncompatDirty        = 1 << 0
	qcow2IncompatCorrupt      = 1 << 1
	qcow2IncompatExternalData = 1 << 2
	qcow2IncompatCompression  = 1 << 3
	qcow2IncompatExtendedL2   = 1 << 4
	qcow2IncompatKnown        = qcow2IncompatDirty | qcow2IncompatCorrupt | qcow2IncompatExternalData | qcow2IncompatCompression | qcow2IncompatExtendedL2

	qcow2ExtEnd          = 0
	qcow2ExtBackingFmt   = 0xe2792aca
	qcow2ExtDataFile     = 0x44415441
	qcow2ExtFDE          = 0x0537be77
	qcow2MaxL1Bytes      = 32 << 20 // qemu's QCOW_MAX_L1_SIZE
	qcow2MaxRefTable     = 8 << 20  // qemu's QCOW_MAX_REFTABLE_SIZE
	qcow2MaxSnapshots    = 65536    // qemu's QCOW_MAX_SNAPSHOTS
	qcow2OffsetMask      = 0x00fffffffffffe00
	qcow2FlagCompressed  = 1 << 62
	qcow2FlagZero        = 1 << 0
	qcow2CompressionZlib = 0
	qcow2CompressionZstd = 1
)

// qcow2Meta is a validated qcow2 header.
type qcow2Meta struct {
	h           qcow2Header
	h3          qcow2V3Header
	clusterSize int64
	zstd        bool
}

func parseQCOW2(r io.ReaderAt, size int64) (*qcow2Meta, error) {
	buf, err := readHeader(r, size, 0, qcow2V2HeaderLen, "qcow2 header")
	if err != nil {
		return nil, err
	}
	m := &qcow2Meta{}
	h := &m.h
	_ = binary.Read(bytes.NewReader(buf), binary.BigEndian, h)
	if h.Version != 2 && h.Version != 3 {
		return nil, fmt.Errorf("%w: qcow2 version %d is not 2 or 3", ErrCorrupt, h.Version)
	}
	if h.ClusterBits < 9 || h.ClusterBits > 21 {
		return nil, fmt.Errorf("%w: qcow2 cluster_bits %d is outside 9..21", ErrCorrupt, h.ClusterBits)
	}
	m.clusterSize = 1 << h.ClusterBits
	if h.BackingFileOffset != 0 {
		return nil, fmt.Errorf("%w: the qcow2 image has a backing file", ErrUnsafe)
	}
	if h.CryptMethod != 0 {
		return nil, fmt.Errorf("%w: the qcow2 image is encrypted", ErrUnsafe)
	}
	if h.Size > MaxVirtualSize {
		return nil, fmt.Errorf("%w: the qcow2 virtual size %d is absurd", ErrCorrupt, h.Size)
	}
	headerLen := int64(qcow2V2HeaderLen)
	if h.Version == 3 {
		buf, err := readHeader(r, size, qcow2V2HeaderLen, qcow2V3HeaderLen-qcow2V2HeaderLen, "qcow2 v3 header")
		if err != nil {
			return nil, err
		}
		h3 := &m.h3
		_ = binary.Read(bytes.NewReader(buf), binary.BigEndian, h3)
		if h3.HeaderLength < qcow2V3HeaderLen || h3.HeaderLength%8 != 0 || int64(h3.HeaderLength) > m.clusterSize {
			return nil, fmt.Errorf("%w: qcow2 header_length %d is invalid", ErrCorrupt, h3.HeaderLength)
		}
		headerLen = int64(h3.HeaderLength)
		if h3.IncompatibleFeatures&qcow2IncompatExternalData != 0 {
			return nil, fmt.Errorf("%w: the qcow2 image has an external data file", ErrUnsafe)
		}
		if unknown := h3.IncompatibleFeatures &^ qcow2IncompatKnown; unknown != 0 {
			return nil, fmt.Errorf("%w: the qcow2 image has unknown incompatible features %#x", ErrUnsafe, unknown)
		}
		if h3.IncompatibleFeatures&qcow2IncompatCorrupt != 0 {
			return nil, fmt.Errorf("%w: the qcow2 image is marked corrupt", ErrCorrupt)
		}
		if h3.RefcountOrder > 6 {
			return nil, fmt.Errorf("%w: qcow2 refcount_order %d is above 6", ErrCorrupt, h3.RefcountOrder)
		}
		// qemu's validate_compression_type: the byte is read whenever
		// the header holds it, must name zlib or zstd, and the feature
		// bit must be set exactly when it is not zlib.
		var compression byte
		if headerLen > qcow2V3HeaderLen {
			ct, err := readHeader(r, size, qcow2V3HeaderLen, 1, "qcow2 compression type")
			if err != nil {
				return nil, err
			}
			compression = ct[0]
		}
		if compression != qcow2CompressionZlib && compression != qcow2CompressionZstd {
			return nil, fmt.Errorf("%w: qcow2 compression type %d is unknown", ErrUnsafe, compression)
		}
		if (compression != qcow2CompressionZlib) != (h3.IncompatibleFeatures&qcow2IncompatCompression != 0) {
			return nil, fmt.Errorf("%w: the qcow2 compression type feature bit disagrees with compression type %d", ErrCorrupt, compression)
		}
		m.zstd = compression == qcow2CompressionZstd
		if h3.IncompatibleFeatures&qcow2IncompatExtendedL2 != 0 && h.ClusterBits < 14 {
			return nil, fmt.Errorf("%w: qcow2 extended L2 needs clusters of at least 16 KiB", ErrCorrupt)
		}
	}
	if err := m.checkExtensions(r, size, headerLen); err != nil {
		return nil, err
	}
	// Every table the header points at must lie inside the file: a
	// truncated image is refused here rather than half-read later.
	l1Bytes := int64(h.L1Size) * 8
	if l1Bytes > qcow2MaxL1Bytes {
		return nil, fmt.Errorf("%w: the qcow2 L1 table of %d entries is absurd", ErrCorrupt, h.L1Size)
	}
	l2Entries := m.clusterSize / m.l2EntrySize()
	need := (int64(h.Size) + m.clusterSize*l2Entries - 1) / (m.clusterSize * l2Entries)
	if int64(h.L1Size) < need {
		return nil, fmt.Errorf("%w: the qcow2 L1 table is too small for the virtual size", ErrCorrupt)
	}
	if l1Bytes > 0 && (int64(h.L1TableOffset)%m.clusterSize != 0 || !inFile(int64(h.L1TableOffset), l1Bytes, size)) {
		return nil, fmt.Errorf("%w: the qcow2 L1 table lies past the end of the file", ErrCorrupt)
	}
	rtBytes := int64(h.RefcountTableClusters) * m.clusterSize
	if rtBytes > qcow2MaxRefTable || int64(h.RefcountTableOffset)%m.clusterSize != 0 || !inFile(int64(h.RefcountTableOffset), rtBytes, size) {
		return nil, fmt.Errorf("%w: the qcow2 refcount table is misplaced or absurd", ErrCorrupt)
	}
	if h.NbSnapshots > qcow2MaxSnapshots || (h.NbSnapshots > 0 && !inFile(int64(h.SnapshotsOffset), 40*int64(h.NbSnapshots), size)) {
		return nil, fmt.Errorf("%w: the qcow2 snapshot table is misplaced or absurd", ErrCorrupt)
	}
	if err := m.checkL1(r, size); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *qcow2Meta) l2EntrySize() int64 {
	if m.h3.IncompatibleFeatures&qcow2IncompatExtendedL2 != 0 {
		return 16
	}
	return 8
}

// checkExtensions walks the header extensions, which must end inside the
// first cluster, and refuses those that point outside the image.
func (m *qcow2Meta) checkExtensions(r io.ReaderAt, size, off int64) error {
	end := min(m.clusterSize, size)
	for off+8 <= end {
		buf, err := readHeader(r, size, off, 8, "qcow2 header extension")
		if err != nil {
			return err
		}
		typ, n := binary.BigEndian.Uint32(buf), int64(binary.BigEndian.Uint32(buf[4:]))
		switch typ {
		case qcow2ExtEnd:
			return nil
		case qcow2ExtDataFile:
			return fmt.Errorf("%w: the qcow2 image names an external data file", ErrUnsafe)
		case qcow2ExtBackingFmt:
			return fmt.Errorf("%w: the qcow2 image names a backing file format", ErrUnsafe)
		case qcow2ExtFDE:
			return fmt.Errorf("%w: the qcow2 image is encrypted", ErrUnsafe)
		}
		off += 8 + (n+7)/8*8
	}
	if m.h.Version == 2 {
		// Version 2 images need not end their extension list.
		return nil
	}
	return fmt.Errorf("%w: the qcow2 header extensions run past the first cluster", ErrCorrupt)
}

// checkL1 verifies that every L2 table the L1 names lies inside the file;
// the L1 is at most 32 MiB and is read in small pieces.
func (m *qcow2Meta) checkL1(r io.ReaderAt, size int64) error {
	buf := make([]byte, min(int64(m.h.L1Size)*8, 64<<10))
	for i := int64(0); i < int64(m.h.L1Size); {
		n := min(int64(len(buf)/8), int64(m.h.L1Size)-i)
		if _, err := r.ReadAt(buf[:n*8], int64(m.h.L1TableOffset)+i*8); err != nil {
			return fmt.Errorf("read qcow2 L1 table: %w", err)
		}
		for j := range n {
			l2 := int64(binary.BigEndian.Uint64(buf[j*8:]) & qcow2OffsetMask)
			if l2 != 0 && (l2%m.clusterSize != 0 || !inFile(l2, m.clusterSize, size)) {
				return fmt.Errorf("%w: a qcow2 L2 table lies past the end of the file", ErrCorrupt)
			}
		}
		i += n
	}
	return nil
}

func inspectQCOW2(r io.ReaderAt, size int64) (Report, error) {
	m, err := parseQCOW2(r, size)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Format: QCOW2, VirtualSize: int64(m.h.Size), ClusterSize: m.clusterSize, Compat: "0.10", Compression: "zlib"}
	if m.h.Version == 3 {
		rep.Compat = "1.1"
	}
	if m.zstd {
		rep.Compression = "zstd"
	}
	return rep, nil
}

// qcow2Mapper maps guest clusters through the L1 and L2 tables, reading
// one entry of each per lookup (pread is cheap next to a 64 KiB cluster,
// and no table is ever held whole).
type qcow2Mapper struct {
	r        io.ReaderAt
	fileSize int64
	m        *qcow2Meta

	// A few decoded L2 tables, so a sequential copy reads each table
	// once instead of two entries per cluster. Bounded by count and
	// bytes; evicted first in, first out.
	mu    sync.Mutex
	l2    map[int64][]byte // L1 index -> table; nil: not allocated
	order []int64
	maxL2 int

	// cache, if set, holds the tables instead, shared with every other
	// image open with it, under key.
	cache *BlockCache
	key   string

	inflaters sync.Pool // flate readers, reset for each cluster
	unzstders sync.Pool // *zstd.Decoder, reset for each cluster
}

func openQCOW2(r io.ReaderAt, size int64) (Image, error) {
	m, err := parseQCOW2(r, size)
	if err != nil {
		return nil, err
	}
	if m.l2EntrySize() != 8 {
		return nil, fmt.Errorf("%w: qcow2 extended L2 entries cannot be read yet", ErrUnsupported)
	}
	q := &qcow2Mapper{r: r, fileSize: size, m: m, l2: map[int64][]byte{}, maxL2: int(max(8, (4<<20)/m.clusterSize))}
	return newBlockImage(r, size, int64(m.h.Size), QCOW2, m.clusterSize, q), nil
}

// table returns the L2 table of L1 entry l1i as stored (big-endian
// entries), nil if none is allocated.
func (q *qcow2Mapper) table(l1i int64) ([]byte, error) {
	if q.cache == nil {
		return q.ownTable(l1i)
	}
	l2, err := q.l2Offset(l1i)
	if err != nil || l2 == 0 {
		return nil, err
	}
	return q.cache.get(cacheKey{image: q.key, kind: cachedL2, index: l1i}, q.m.clusterSize, func(dst []byte) error {
		return q.readTable(l2, dst)
	})
}

// ownTable is table without a shared cache: a few tables of this image
// alone, evicted first in, first out.
func (q *qcow2Mapper) ownTable(l1i int64) ([]byte, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t, ok := q.l2[l1i]; ok {
		return t, nil
	}
	l2, err := q.l2Offset(l1i)
	if err != nil {
		return nil, err
	}
	var t []byte
	if l2 != 0 {
		t = make([]byte, q.m.clusterSize)
		if err := q.readTable(l2, t); err != nil {
			return nil, err
		}
	}
	if len(q.order) >= q.maxL2 {
		delete(q.l2, q.order[0])
		q.order = q.order[1:]
	}
	q.l2[l1i] = t
	q.order = append(q.order, l1i)
	return t, nil
}

// l2Offset reads L1 entry l1i: where its L2 table lies, 0 if nowhere.
func (q *qcow2Mapper) l2Offset(l1i int64) (int64, error) {
	l1e, err := readEntry(q.r, int64(q.m.h.L1TableOffset)+l1i*8, 8, true)
	if err != nil {
		return 0, fmt.Errorf("read qcow2 L1 entry: %w", err)
	}
	l2 := int64(l1e & qcow2OffsetMask)
	if l2 != 0 && !inFile(l2, q.m.clusterSize, q.fileSize) {
		return 0, fmt.Errorf("%w: a qcow2 L2 table lies past the end of the file", ErrCorrupt)
	}
	return l2, nil
}

func (q *qcow2Mapper) readTable(l2 int64, dst []byte) error {
	if _, err := q.r.ReadAt(dst, l2); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read qcow2 L2 table: %w", err)
	}
	return nil
}

func (q *qcow2Mapper) lookup(idx int64) (blockLoc, error) {
	l2Entries := q.m.clusterSize / 8
	l1i, l2i := idx/l2Entries, idx%l2Entries
	if l1i >= int64(q.m.h.L1Size) {
		return blockLoc{}, fmt.Errorf("%w: qcow2 cluster %d is beyond the L1 table", ErrCorrupt, idx)
	}
	t, err := q.table(l1i)
	if err != nil {
		return blockLoc{}, err
	}
	if t == nil {
		// No L2 table: every cluster it would map is zero.
		return blockLoc{kind: blockZero, zeroRun: l2Entries - l2i}, nil
	}
	e := binary.BigEndian.Uint64(t[l2i*8:])
	if e&qcow2FlagCompressed != 0 {
		x := 62 - (q.m.h.ClusterBits - 8)
		off := int64(e & (1<<x - 1))
		sectors := int64(e>>x) & (1<<(62-x) - 1)
		n := (sectors+1)*512 - off%512
		if off >= q.fileSize {
			return blockLoc{}, fmt.Errorf("%w: a qcow2 compressed cluster lies past the end of the file", ErrCorrupt)
		}
		return blockLoc{kind: blockCompressed, off: off, n: min(n, q.fileSize-off)}, nil
	}
	if q.m.h.Version == 3 && e&qcow2FlagZero != 0 {
		return blockLoc{kind: blockZero}, nil
	}
	host := int64(e & qcow2OffsetMask)
	if host == 0 {
		return blockLoc{kind: blockZero}, nil
	}
	if host%q.m.clusterSize != 0 || host >= q.fileSize {
		return blockLoc{}, fmt.Errorf("%w: a qcow2 data cluster lies past the end of the file", ErrCorrupt)
	}
	return blockLoc{kind: blockData, off: host}, nil
}

func (q *qcow2Mapper) inflate(loc blockLoc, dst []byte) error {
	// The compressed size is an upper bound rounded to sectors: both
	// decoders stop once they have produced one cluster, as qemu's do,
	// and never read past loc.n, which is at most two clusters (the L2
	// entry's sector count).
	bp, stored, err := readCompressed(q.r, loc.off, loc.n)
	if err != nil {
		return err
	}
	defer putCompressed(bp)
	if q.m.zstd {
		return q.unzstd(bytes.NewReader(stored), dst)
	}
	// qemu writes raw deflate (no zlib header).
	if inflateFast(stored, dst, q.m.clusterSize, nil) {
		return nil
	}
	return q.inflateGo(stored, dst)
}

// inflateGo decodes a deflate cluster with Go, for the streams libdeflate
// leaves to it. Decoders are reused: a new one per cluster costs more
// than the inflating of a small one.
func (q *qcow2Mapper) inflateGo(stored, dst []byte) error {
	src := bytes.NewReader(stored)
	zr, _ := q.inflaters.Get().(io.ReadCloser)
	if zr == nil {
		zr = flate.NewReader(src)
	} else if err := zr.(flate.Resetter).Reset(src, nil); err != nil {
		return fmt.Errorf("%w: qcow2 compressed cluster: %v", ErrCorrupt, err)
	}
	_, err := io.ReadFull(zr, dst)
	q.inflaters.Put(zr)
	if err != nil {
		return fmt.Errorf("%w: qcow2 compressed cluster: %v", ErrCorrupt, err)
	}
	return nil
}

// qcow2ZstdMaxWindow bounds the memory a zstd frame may ask the decoder
// for: qemu compresses one cluster (at most 2 MiB) per frame, so a frame
// that wants more is hostile.
const qcow2ZstdMaxWindow = 8 << 20

func (q *qcow2Mapper) unzstd(src io.Reader, dst []byte) error {
	zr, _ := q.unzstders.Get().(*zstd.Decoder)
	if zr == nil {
		// One goroutine-free decoder per concurrent reader, its memory
		// bounded by the window limit.
		var err error
		zr, err = zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(qcow2ZstdMaxWindow), zstd.WithDecoderMaxMemory(qcow2ZstdMaxWindow))
		if err != nil {
			return fmt.Errorf("qcow2 zstd decoder: %w", err)
		}
	} else if err := zr.Reset(src); err != nil {
		return fmt.Errorf("%w: qcow2 zstd cluster: %v", ErrCorrupt, err)
	}
	_, err := io.ReadFull(zr, dst)
	// A decoder that failed mid-frame is reset by the next use.
	q.unzstders.Put(zr)
	if err != nil {
		return fmt.Errorf("%w: qcow2 zstd cluster: %v", ErrCorrupt, err)
	}
	return nil
}

package convert

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zlib"
)

// vmdkHeader is the SparseExtentHeader of VMware's "Virtual Disk Format
// 1.1", little-endian and packed; sizes and offsets are in 512-byte sectors.
type vmdkHeader struct {
	Magic              uint32
	Version            uint32
	Flags              uint32
	Capacity           uint64
	GrainSize          uint64
	DescriptorOffset   uint64
	DescriptorSize     uint64
	NumGTEsPerGT       uint32
	RGDOffset          uint64
	GDOffset           uint64
	OverHead           uint64
	UncleanShutdown    uint8
	SingleEndLineChar  uint8
	NonEndLineChar     uint8
	DoubleEndLineChar1 uint8
	DoubleEndLineChar2 uint8
	CompressAlgorithm  uint16
}

const (
	vmdkMagic          = 0x564d444b // "KDMV" read little-endian
	vmdkFlagZeroGrain  = 1 << 2
	vmdkFlagCompressed = 1 << 16
	vmdkFlagMarkers    = 1 << 17
	vmdkGDAtEnd        = 0xffffffffffffffff
	vmdkMaxDescriptor  = 1 << 20
	vmdkMaxGDBytes     = 32 << 20
	vmdkMarkerHeader   = 12 // u64 lba, u32 size before a grain's data
)

type vmdkMeta struct {
	h          vmdkHeader
	createType string
	grainSize  int64 // bytes
	gdOffset   int64 // bytes
	gdEntries  int64
	compressed bool
}

func parseVMDK(r io.ReaderAt, size int64) (*vmdkMeta, error) {
	magic, err := readHeader(r, size, 0, 4, "vmdk header")
	if err != nil {
		return nil, err
	}
	if string(magic) == "COWD" {
		return nil, fmt.Errorf("%w: the legacy COWD vmdk format is not accepted", ErrUnsafe)
	}
	if string(magic) != "KDMV" {
		// A text descriptor is nothing but references to other files.
		return nil, fmt.Errorf("%w: the vmdk is a descriptor that names other files", ErrUnsafe)
	}
	buf, err := readHeader(r, size, 0, 512, "vmdk header")
	if err != nil {
		return nil, err
	}
	m := &vmdkMeta{}
	h := &m.h
	_ = binary.Read(bytes.NewReader(buf), binary.LittleEndian, h)
	if h.Version < 1 || h.Version > 3 {
		return nil, fmt.Errorf("%w: vmdk version %d is not 1 to 3", ErrCorrupt, h.Version)
	}
	if h.GrainSize < 8 || h.GrainSize > 2048 || h.GrainSize&(h.GrainSize-1) != 0 {
		return nil, fmt.Errorf("%w: vmdk grain size %d sectors is invalid", ErrCorrupt, h.GrainSize)
	}
	m.grainSize = int64(h.GrainSize) * 512
	if h.NumGTEsPerGT == 0 || h.NumGTEsPerGT > 512 {
		return nil, fmt.Errorf("%w: vmdk grain tables of %d entries are invalid", ErrCorrupt, h.NumGTEsPerGT)
	}
	if h.Capacity > MaxVirtualSize/512 {
		return nil, fmt.Errorf("%w: the vmdk capacity of %d sectors is absurd", ErrCorrupt, h.Capacity)
	}
	m.compressed = h.Flags&vmdkFlagCompressed != 0
	if m.compressed && h.CompressAlgorithm != 1 {
		return nil, fmt.Errorf("%w: vmdk compression algorithm %d is unknown", ErrUnsafe, h.CompressAlgorithm)
	}
	if err := m.parseDescriptor(r, size); err != nil {
		return nil, err
	}
	gd := h.GDOffset
	if gd == vmdkGDAtEnd {
		// streamOptimized: the real header is the footer, 1024 bytes
		// before EOF (then the end-of-stream marker).
		fb, err := readHeader(r, size, size-1024, 512, "vmdk footer")
		if err != nil {
			return nil, err
		}
		var f vmdkHeader
		_ = binary.Read(bytes.NewReader(fb), binary.LittleEndian, &f)
		if f.Magic != vmdkMagic || f.Version != h.Version || f.Capacity != h.Capacity || f.GrainSize != h.GrainSize ||
			f.NumGTEsPerGT != h.NumGTEsPerGT || f.GDOffset == vmdkGDAtEnd {
			return nil, fmt.Errorf("%w: the vmdk footer does not match its header", ErrCorrupt)
		}
		gd = f.GDOffset
	}
	gtCover := m.grainSize * int64(h.NumGTEsPerGT)
	m.gdEntries = (int64(h.Capacity)*512 + gtCover - 1) / gtCover
	if gd > uint64(size/512) || m.gdEntries*4 > vmdkMaxGDBytes || !inFile(int64(gd)*512, m.gdEntries*4, size) {
		return nil, fmt.Errorf("%w: the vmdk grain directory lies past the end of the file", ErrCorrupt)
	}
	m.gdOffset = int64(gd) * 512
	if err := m.checkGD(r, size); err != nil {
		return nil, err
	}
	return m, nil
}

// parseDescriptor checks the embedded descriptor strictly: only the two
// self-contained create types, one SPARSE extent naming a plain file (the
// image itself), no parent.
func (m *vmdkMeta) parseDescriptor(r io.ReaderAt, size int64) error {
	h := &m.h
	if h.DescriptorSize == 0 {
		return fmt.Errorf("%w: the vmdk has no embedded descriptor", ErrCorrupt)
	}
	if h.DescriptorOffset != 1 || h.DescriptorSize > vmdkMaxDescriptor/512 {
		return fmt.Errorf("%w: the vmdk descriptor is misplaced", ErrCorrupt)
	}
	buf, err := readHeader(r, size, 512, int(h.DescriptorSize)*512, "vmdk descriptor")
	if err != nil {
		return err
	}
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	extents := 0
	for line := range strings.Lines(string(buf)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "ddb."):
		case strings.HasPrefix(line, "RW ") || strings.HasPrefix(line, "RDONLY ") || strings.HasPrefix(line, "NOACCESS "):
			extents++
			f := strings.Fields(line)
			if len(f) != 4 || f[2] != "SPARSE" {
				return fmt.Errorf("%w: a vmdk extent names another file", ErrUnsafe)
			}
			name := strings.Trim(f[3], `"`)
			if strings.ContainsAny(name, `/\`) {
				return fmt.Errorf("%w: a vmdk extent names another file", ErrUnsafe)
			}
			if n, err := strconv.ParseUint(f[1], 10, 64); err != nil || n != h.Capacity {
				return fmt.Errorf("%w: the vmdk extent size does not match the capacity", ErrCorrupt)
			}
		case strings.Contains(line, "="):
			k, v, _ := strings.Cut(line, "=")
			k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(k) {
			case "createtype":
				m.createType = v
			case "parentfilenamehint":
				return fmt.Errorf("%w: the vmdk has a parent disk", ErrUnsafe)
			case "parentcid":
				if strings.ToLower(v) != "ffffffff" {
					return fmt.Errorf("%w: the vmdk has a parent disk", ErrUnsafe)
				}
			}
		default:
			return fmt.Errorf("%w: the vmdk descriptor has an unexpected line", ErrCorrupt)
		}
	}
	switch strings.ToLower(m.createType) {
	case "monolithicsparse", "streamoptimized":
	default:
		return fmt.Errorf("%w: vmdk create type %q is not monolithicSparse or streamOptimized", ErrUnsafe, m.createType)
	}
	if extents != 1 {
		return fmt.Errorf("%w: the vmdk has %d extents, not one", ErrUnsafe, extents)
	}
	return nil
}

// checkGD verifies that every grain table lies inside the file.
func (m *vmdkMeta) checkGD(r io.ReaderAt, size int64) error {
	gtBytes := int64(m.h.NumGTEsPerGT) * 4
	buf := make([]byte, min(m.gdEntries*4, 64<<10))
	for i := int64(0); i < m.gdEntries; {
		n := min(int64(len(buf)/4), m.gdEntries-i)
		if _, err := r.ReadAt(buf[:n*4], m.gdOffset+i*4); err != nil {
			return fmt.Errorf("read vmdk grain directory: %w", err)
		}
		for j := range n {
			gt := int64(binary.LittleEndian.Uint32(buf[j*4:])) * 512
			if gt != 0 && !inFile(gt, gtBytes, size) {
				return fmt.Errorf("%w: a vmdk grain table lies past the end of the file", ErrCorrupt)
			}
		}
		i += n
	}
	return nil
}

func inspectVMDK(r io.ReaderAt, size int64) (Report, error) {
	m, err := parseVMDK(r, size)
	if err != nil {
		return Report{}, err
	}
	return Report{Format: VMDK, VirtualSize: int64(m.h.Capacity) * 512, ClusterSize: m.grainSize, CreateType: m.createType}, nil
}

type vmdkMapper struct {
	r         io.ReaderAt
	fileSize  int64
	m         *vmdkMeta
	inflaters sync.Pool // zlib readers, reset for each grain
}

func openVMDK(r io.ReaderAt, size int64) (Image, error) {
	m, err := parseVMDK(r, size)
	if err != nil {
		return nil, err
	}
	return newBlockImage(r, size, int64(m.h.Capacity)*512, VMDK, m.grainSize, &vmdkMapper{r: r, fileSize: size, m: m}), nil
}

func (v *vmdkMapper) lookup(idx int64) (blockLoc, error) {
	per := int64(v.m.h.NumGTEsPerGT)
	gdi, gti := idx/per, idx%per
	if gdi >= v.m.gdEntries {
		return blockLoc{}, fmt.Errorf("%w: vmdk grain %d is beyond the grain directory", ErrCorrupt, idx)
	}
	gt, err := readEntry(v.r, v.m.gdOffset+gdi*4, 4, false)
	if err != nil {
		return blockLoc{}, fmt.Errorf("read vmdk grain directory: %w", err)
	}
	if gt == 0 {
		return blockLoc{kind: blockZero}, nil
	}
	if !inFile(int64(gt)*512, per*4, v.fileSize) {
		return blockLoc{}, fmt.Errorf("%w: a vmdk grain table lies past the end of the file", ErrCorrupt)
	}
	e, err := readEntry(v.r, int64(gt)*512+gti*4, 4, false)
	if err != nil {
		return blockLoc{}, fmt.Errorf("read vmdk grain table: %w", err)
	}
	if e == 0 || (e == 1 && v.m.h.Flags&vmdkFlagZeroGrain != 0) {
		return blockLoc{kind: blockZero}, nil
	}
	off := int64(e) * 512
	if off >= v.fileSize {
		return blockLoc{}, fmt.Errorf("%w: a vmdk grain lies past the end of the file", ErrCorrupt)
	}
	if v.m.compressed {
		return blockLoc{kind: blockCompressed, off: off}, nil
	}
	return blockLoc{kind: blockData, off: off}, nil
}

// zlibHeaderPlain reports whether a zlib stream's two header bytes say
// DEFLATE with no preset dictionary (RFC 1950), the raw stream following.
func zlibHeaderPlain(cmf, flg byte) bool {
	return cmf&0x0f == 8 && cmf>>4 <= 7 && (uint16(cmf)<<8|uint16(flg))%31 == 0 && flg&0x20 == 0
}

func (v *vmdkMapper) inflate(loc blockLoc, dst []byte) error {
	bp, stored, err := v.readGrain(loc)
	if err != nil {
		return err
	}
	defer putCompressed(bp)
	if inflateZlibFast(stored, dst, v.m.grainSize) {
		return nil
	}
	return v.inflateGo(stored, dst)
}

// readGrain reads the stored bytes of the compressed grain at loc, its
// length bounded by the grain size; the buffer goes back with
// putCompressed.
func (v *vmdkMapper) readGrain(loc blockLoc) (*[]byte, []byte, error) {
	var mh [vmdkMarkerHeader]byte
	if _, err := v.r.ReadAt(mh[:], loc.off); err != nil {
		return nil, nil, fmt.Errorf("read vmdk grain marker: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(mh[8:]))
	// A compressed grain can exceed the grain only by zlib's framing.
	if n == 0 || n > v.m.grainSize+v.m.grainSize/8+1024 || !inFile(loc.off+vmdkMarkerHeader, n, v.fileSize) {
		return nil, nil, fmt.Errorf("%w: a vmdk compressed grain has a bad size", ErrCorrupt)
	}
	return readCompressed(v.r, loc.off+vmdkMarkerHeader, n)
}

// inflateZlibFast is inflateFast for a zlib stream (RFC 1950): a header
// asking for DEFLATE without a preset dictionary, and the Adler-32 after
// the stream matching the block. Anything else is the Go decoder's to
// judge.
func inflateZlibFast(stored, dst []byte, blockLen int64) bool {
	if len(stored) < 2 || !zlibHeaderPlain(stored[0], stored[1]) {
		return false
	}
	return inflateFast(stored[2:], dst, blockLen, func(block []byte, used int) bool {
		sum := stored[2+used:]
		return len(sum) >= 4 && binary.BigEndian.Uint32(sum) == adler32.Checksum(block)
	})
}

// inflateGo decodes a grain with Go, for the streams libdeflate leaves to
// it. Decoders are reused, as for qcow2: a new one per grain allocates
// more than the grain.
func (v *vmdkMapper) inflateGo(stored, dst []byte) error {
	src := bytes.NewReader(stored)
	zr, _ := v.inflaters.Get().(io.ReadCloser)
	var err error
	if zr == nil {
		zr, err = zlib.NewReader(src)
	} else {
		err = zr.(zlib.Resetter).Reset(src, nil)
	}
	if err != nil {
		return fmt.Errorf("%w: vmdk compressed grain: %v", ErrCorrupt, err)
	}
	defer v.inflaters.Put(zr)
	// The last grain of a disk may be short: zero-fill what the stream
	// does not produce, but never read more than one grain.
	k, err := io.ReadFull(zr, dst)
	if err != nil && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: vmdk compressed grain: %v", ErrCorrupt, err)
	}
	clear(dst[k:])
	return nil
}

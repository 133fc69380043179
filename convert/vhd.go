package convert

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// vhdFooter is the VHD hard disk footer (Microsoft "Virtual Hard Disk
// Image Format Specification" 1.0), big-endian, 512 bytes.
type vhdFooter struct {
	Cookie             [8]byte
	Features           uint32
	FileFormatVersion  uint32
	DataOffset         uint64
	TimeStamp          uint32
	CreatorApplication [4]byte
	CreatorVersion     uint32
	CreatorHostOS      uint32
	OriginalSize       uint64
	CurrentSize        uint64
	Cylinders          uint16
	Heads              uint8
	SectorsPerTrack    uint8
	DiskType           uint32
	Checksum           uint32
	UniqueID           [16]byte
	SavedState         uint8
	Reserved           [427]byte
}

// vhdDynamicHeader follows the footer copy in dynamic disks, 1024 bytes.
type vhdDynamicHeader struct {
	Cookie            [8]byte
	DataOffset        uint64
	TableOffset       uint64
	HeaderVersion     uint32
	MaxTableEntries   uint32
	BlockSize         uint32
	Checksum          uint32
	ParentUniqueID    [16]byte
	ParentTimeStamp   uint32
	Reserved1         uint32
	ParentUnicodeName [512]byte
	ParentLocators    [8][24]byte
	Reserved2         [256]byte
}

const (
	vhdTypeFixed       = 2
	vhdTypeDynamic     = 3
	vhdTypeDiff        = 4
	vhdMaxSectors      = 2040 << 21       // qemu's VHD_MAX_SECTORS: 2040 GiB
	vhdMaxGeometry     = 65535 * 16 * 255 // CHS at its maximum
	vhdUnallocated     = 0xffffffff
	vhdChecksumOff     = 64
	vhdDynChecksumOff  = 36
	vhdMaxBATBytes     = 4 << 20 // 2040 GiB in 2 MiB blocks; bounds what Inspect scans
	vhdMinBlockSize    = 512
	vhdMaxBlockSizeLog = 28
)

// vhdChecksum is the one's complement of the byte sum, with the checksum
// field (4 bytes at at) counted as zero.
func vhdChecksum(b []byte, at int) uint32 {
	var s uint32
	for i, c := range b {
		if i < at || i >= at+4 {
			s += uint32(c)
		}
	}
	return ^s
}

func parseVHDFooter(buf []byte) (*vhdFooter, error) {
	f := &vhdFooter{}
	_ = binary.Read(bytes.NewReader(buf), binary.BigEndian, f)
	if string(f.Cookie[:]) != "conectix" {
		return nil, fmt.Errorf("%w: not a vhd footer", ErrCorrupt)
	}
	if vhdChecksum(buf, vhdChecksumOff) != f.Checksum {
		return nil, fmt.Errorf("%w: the vhd footer checksum is wrong", ErrCorrupt)
	}
	return f, nil
}

// vhdVirtualSize follows qemu's vpc_open: CHS geometry unless the creator
// is known to use current_size, or the geometry is at its maximum.
func vhdVirtualSize(f *vhdFooter) int64 {
	sectors := int64(f.Cylinders) * int64(f.Heads) * int64(f.SectorsPerTrack)
	switch string(f.CreatorApplication[:]) {
	case "win ", "qem2", "d2v ", "CTXS", "tap\x00":
		sectors = int64(f.CurrentSize / 512)
	default:
		if sectors == vhdMaxGeometry {
			sectors = int64(f.CurrentSize / 512)
		}
	}
	return sectors * 512
}

// isFixedVHDFooter reports whether tail, a file's last sector, is a valid
// footer of a fixed VHD, which qemu's probe sees as raw.
func isFixedVHDFooter(tail []byte) bool {
	if len(tail) != 512 {
		return false
	}
	f, err := parseVHDFooter(tail)
	return err == nil && f.DiskType == vhdTypeFixed
}

// inspectFixedVHD reports a fixed VHD, its virtual size from the footer.
func inspectFixedVHD(r io.ReaderAt, size int64, gpt bool) (Report, error) {
	f, err := parseFixedVHD(r, size)
	if err != nil {
		return Report{}, err
	}
	return Report{Format: VPC, VirtualSize: vhdVirtualSize(f), FixedVHD: true, GPT: gpt}, nil
}

// parseFixedVHD checks the footer of a fixed VHD: its virtual size must
// fit in the data before it.
func parseFixedVHD(r io.ReaderAt, size int64) (*vhdFooter, error) {
	buf, err := readHeader(r, size, size-512, 512, "vhd footer")
	if err != nil {
		return nil, err
	}
	f, err := parseVHDFooter(buf)
	if err != nil {
		return nil, err
	}
	if vsize := vhdVirtualSize(f); vsize > size-512 {
		return nil, fmt.Errorf("%w: the fixed vhd is shorter than its virtual size", ErrCorrupt)
	} else if vsize/512 > vhdMaxSectors {
		return nil, fmt.Errorf("%w: the vhd virtual size %d is above 2040 GiB", ErrCorrupt, vsize)
	}
	return f, nil
}

// openFixedVHD reads a fixed VHD: raw data followed by its footer, with
// the virtual size the footer gives (qemu's rule), which must fit.
func openFixedVHD(r io.ReaderAt, size int64) (Image, error) {
	f, err := parseFixedVHD(r, size)
	if err != nil {
		return nil, err
	}
	return newRawImage(r, vhdVirtualSize(f)), nil
}

type vpcMeta struct {
	f         *vhdFooter
	d         vhdDynamicHeader
	size      int64
	blockSize int64
	bitmap    int64 // bytes of sector bitmap before each block's data
}

func parseVPC(r io.ReaderAt, size int64) (*vpcMeta, error) {
	buf, err := readHeader(r, size, 0, 512, "vhd footer")
	if err != nil {
		return nil, err
	}
	f, err := parseVHDFooter(buf)
	if err != nil {
		return nil, err
	}
	m := &vpcMeta{f: f, size: vhdVirtualSize(f)}
	switch f.DiskType {
	case vhdTypeDynamic:
	case vhdTypeDiff:
		return nil, fmt.Errorf("%w: the vhd is a differencing disk with a parent", ErrUnsafe)
	case vhdTypeFixed:
		// A fixed disk with a footer copy at 0 is not something qemu or
		// Hyper-V write; refuse rather than guess.
		return nil, fmt.Errorf("%w: the vhd is fixed but has a footer at its start", ErrCorrupt)
	default:
		return nil, fmt.Errorf("%w: vhd disk type %d is unknown", ErrCorrupt, f.DiskType)
	}
	if m.size/512 > vhdMaxSectors {
		return nil, fmt.Errorf("%w: the vhd virtual size %d is above 2040 GiB", ErrCorrupt, m.size)
	}
	if f.DataOffset > uint64(size) {
		return nil, fmt.Errorf("%w: the vhd dynamic header lies past the end of the file", ErrCorrupt)
	}
	dbuf, err := readHeader(r, size, int64(f.DataOffset), 1024, "vhd dynamic header")
	if err != nil {
		return nil, err
	}
	d := &m.d
	_ = binary.Read(bytes.NewReader(dbuf), binary.BigEndian, d)
	if string(d.Cookie[:]) != "cxsparse" {
		return nil, fmt.Errorf("%w: the vhd dynamic header is missing", ErrCorrupt)
	}
	if vhdChecksum(dbuf, vhdDynChecksumOff) != d.Checksum {
		return nil, fmt.Errorf("%w: the vhd dynamic header checksum is wrong", ErrCorrupt)
	}
	if d.ParentUniqueID != [16]byte{} || d.ParentLocators != [8][24]byte{} {
		return nil, fmt.Errorf("%w: the vhd names a parent disk", ErrUnsafe)
	}
	bs := int64(d.BlockSize)
	if bs < vhdMinBlockSize || bs > 1<<vhdMaxBlockSizeLog || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("%w: vhd block size %d is invalid", ErrCorrupt, bs)
	}
	m.blockSize = bs
	m.bitmap = (bs/512/8 + 511) / 512 * 512
	batBytes := int64(d.MaxTableEntries) * 4
	if batBytes > vhdMaxBATBytes || int64(d.MaxTableEntries)*bs < m.size {
		return nil, fmt.Errorf("%w: the vhd block table does not cover the disk", ErrCorrupt)
	}
	if d.TableOffset > uint64(size) || !inFile(int64(d.TableOffset), batBytes, size) {
		return nil, fmt.Errorf("%w: the vhd block table lies past the end of the file", ErrCorrupt)
	}
	if err := m.checkBAT(r, size); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *vpcMeta) checkBAT(r io.ReaderAt, size int64) error {
	n := int64(m.d.MaxTableEntries)
	buf := make([]byte, min(n*4, 64<<10))
	for i := int64(0); i < n; {
		k := min(int64(len(buf)/4), n-i)
		if _, err := r.ReadAt(buf[:k*4], int64(m.d.TableOffset)+i*4); err != nil {
			return fmt.Errorf("read vhd block table: %w", err)
		}
		for j := range k {
			e := binary.BigEndian.Uint32(buf[j*4:])
			if e != vhdUnallocated && int64(e)*512 >= size {
				return fmt.Errorf("%w: a vhd block lies past the end of the file", ErrCorrupt)
			}
		}
		i += k
	}
	return nil
}

func inspectVPC(r io.ReaderAt, size int64) (Report, error) {
	m, err := parseVPC(r, size)
	if err != nil {
		return Report{}, err
	}
	return Report{Format: VPC, VirtualSize: m.size, ClusterSize: m.blockSize}, nil
}

type vpcMapper struct {
	r        io.ReaderAt
	fileSize int64
	m        *vpcMeta
}

func openVPC(r io.ReaderAt, size int64) (Image, error) {
	m, err := parseVPC(r, size)
	if err != nil {
		return nil, err
	}
	return newBlockImage(r, size, m.size, VPC, m.blockSize, &vpcMapper{r: r, fileSize: size, m: m}), nil
}

func (v *vpcMapper) lookup(idx int64) (blockLoc, error) {
	if idx >= int64(v.m.d.MaxTableEntries) {
		return blockLoc{}, fmt.Errorf("%w: vhd block %d is beyond the block table", ErrCorrupt, idx)
	}
	e, err := readEntry(v.r, int64(v.m.d.TableOffset)+idx*4, 4, true)
	if err != nil {
		return blockLoc{}, fmt.Errorf("read vhd block table: %w", err)
	}
	if e == vhdUnallocated {
		return blockLoc{kind: blockZero}, nil
	}
	// qemu ignores the sector bitmap and reads the whole block.
	off := int64(e)*512 + v.m.bitmap
	if off >= v.fileSize {
		return blockLoc{}, fmt.Errorf("%w: a vhd block lies past the end of the file", ErrCorrupt)
	}
	return blockLoc{kind: blockData, off: off}, nil
}

func (v *vpcMapper) inflate(blockLoc, []byte) error {
	return fmt.Errorf("vhd has no compressed blocks")
}

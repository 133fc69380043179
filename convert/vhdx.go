package convert

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// VHDX structures follow [MS-VHDX] 1.0, little-endian; checksums are
// CRC-32C over the structure with the checksum field zeroed.

// vhdxHeader is one of the two 4 KiB headers at 64 KiB and 128 KiB.
type vhdxHeader struct {
	Signature      uint32
	Checksum       uint32
	SequenceNumber uint64
	FileWriteGUID  [16]byte
	DataWriteGUID  [16]byte
	LogGUID        [16]byte
	LogVersion     uint16
	Version        uint16
	LogLength      uint32
	LogOffset      uint64
}

type vhdxRegionTableHeader struct {
	Signature  uint32
	Checksum   uint32
	EntryCount uint32
	Reserved   uint32
}

type vhdxRegionEntry struct {
	GUID       [16]byte
	FileOffset uint64
	Length     uint32
	Required   uint32
}

type vhdxMetadataTableHeader struct {
	Signature  [8]byte
	Reserved   uint16
	EntryCount uint16
	Reserved2  [20]byte
}

type vhdxMetadataEntry struct {
	ItemID   [16]byte
	Offset   uint32
	Length   uint32
	Flags    uint32
	Reserved uint32
}

const (
	vhdxHeaderSig      = 0x64616568 // "head"
	vhdxRegionSig      = 0x69676572 // "regi"
	vhdxHeaderSize     = 4 << 10
	vhdxRegionSize     = 64 << 10
	vhdxMaxEntries     = 2047
	vhdxMetaRequired   = 1 << 2
	vhdxHasParent      = 1 << 1
	vhdxStateFull      = 6
	vhdxStatePartial   = 7
	vhdxOffsetMask     = ^uint64(1<<20 - 1)
	vhdxMaxMetaItemLen = 64 << 10
)

// msGUID encodes a GUID as Microsoft stores it: the first three groups
// little-endian, the rest as written.
func msGUID(s string) [16]byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("bad GUID literal " + s)
	}
	var g [16]byte
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g
}

var (
	vhdxRegionBAT      = msGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	vhdxRegionMetadata = msGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vhdxItemFileParams = msGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vhdxItemDiskSize   = msGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vhdxItemPage83     = msGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	vhdxItemLogical    = msGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	vhdxItemPhysical   = msGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	vhdxItemParent     = msGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
	crc32c             = crc32.MakeTable(crc32.Castagnoli)
)

// vhdxChecksumOK checks the CRC-32C of buf whose checksum is at bytes 4..8.
func vhdxChecksumOK(buf []byte) bool {
	want := binary.LittleEndian.Uint32(buf[4:])
	c := crc32.Update(0, crc32c, buf[:4])
	c = crc32.Update(c, crc32c, []byte{0, 0, 0, 0})
	c = crc32.Update(c, crc32c, buf[8:])
	return c == want
}

type vhdxMeta struct {
	batOffset  int64
	batEntries int64
	blockSize  int64
	size       int64
	sectorSize int64
	chunkRatio int64
	dataBlocks int64
}

func parseVHDX(r io.ReaderAt, size int64) (*vhdxMeta, error) {
	m := &vhdxMeta{}
	// The valid header with the higher sequence number is current.
	var cur *vhdxHeader
	for _, off := range []int64{64 << 10, 128 << 10} {
		buf, err := readHeader(r, size, off, vhdxHeaderSize, "vhdx header")
		if err != nil {
			return nil, err
		}
		var h vhdxHeader
		_ = binary.Read(bytes.NewReader(buf), binary.LittleEndian, &h)
		if h.Signature != vhdxHeaderSig || !vhdxChecksumOK(buf) {
			continue
		}
		if cur == nil || h.SequenceNumber > cur.SequenceNumber {
			cur = &h
		}
	}
	if cur == nil {
		return nil, fmt.Errorf("%w: neither vhdx header is valid", ErrCorrupt)
	}
	if cur.Version != 1 {
		return nil, fmt.Errorf("%w: vhdx version %d is not 1", ErrCorrupt, cur.Version)
	}
	if cur.LogGUID != [16]byte{} {
		// Replaying the log means writing where the log says; refuse.
		return nil, fmt.Errorf("%w: the vhdx has a log that needs replaying", ErrUnsafe)
	}
	var regions []vhdxRegionEntry
	for _, off := range []int64{192 << 10, 256 << 10} {
		buf, err := readHeader(r, size, off, vhdxRegionSize, "vhdx region table")
		if err != nil {
			return nil, err
		}
		var rh vhdxRegionTableHeader
		_ = binary.Read(bytes.NewReader(buf), binary.LittleEndian, &rh)
		if rh.Signature != vhdxRegionSig || !vhdxChecksumOK(buf) || rh.EntryCount > vhdxMaxEntries {
			continue
		}
		regions = make([]vhdxRegionEntry, rh.EntryCount)
		_ = binary.Read(bytes.NewReader(buf[16:]), binary.LittleEndian, regions)
		break
	}
	if regions == nil {
		return nil, fmt.Errorf("%w: neither vhdx region table is valid", ErrCorrupt)
	}
	var bat, meta *vhdxRegionEntry
	for i := range regions {
		e := &regions[i]
		if e.FileOffset%(1<<20) != 0 || e.Length%(1<<20) != 0 || !inFile(int64(min(e.FileOffset, 1<<62)), int64(e.Length), size) {
			return nil, fmt.Errorf("%w: a vhdx region lies past the end of the file", ErrCorrupt)
		}
		switch e.GUID {
		case vhdxRegionBAT:
			bat = e
		case vhdxRegionMetadata:
			meta = e
		default:
			if e.Required&1 != 0 {
				return nil, fmt.Errorf("%w: the vhdx has an unknown required region", ErrUnsafe)
			}
		}
	}
	if bat == nil || meta == nil {
		return nil, fmt.Errorf("%w: the vhdx lacks its block table or metadata", ErrCorrupt)
	}
	if err := m.parseMetadata(r, size, int64(meta.FileOffset), int64(meta.Length)); err != nil {
		return nil, err
	}
	m.chunkRatio = (1 << 23) * m.sectorSize / m.blockSize
	m.dataBlocks = (m.size + m.blockSize - 1) / m.blockSize
	// Non-differencing disks interleave one sector-bitmap entry after
	// every chunkRatio payload entries.
	m.batEntries = m.dataBlocks + (m.dataBlocks-1)/m.chunkRatio
	if m.dataBlocks == 0 {
		m.batEntries = 0
	}
	if m.batEntries*8 > int64(bat.Length) {
		return nil, fmt.Errorf("%w: the vhdx block table is too small for the disk", ErrCorrupt)
	}
	m.batOffset = int64(bat.FileOffset)
	return m, nil
}

func (m *vhdxMeta) parseMetadata(r io.ReaderAt, size, off, length int64) error {
	buf, err := readHeader(r, size, off, 32+vhdxMaxEntries*32, "vhdx metadata table")
	if err != nil {
		return err
	}
	var th vhdxMetadataTableHeader
	_ = binary.Read(bytes.NewReader(buf), binary.LittleEndian, &th)
	if string(th.Signature[:]) != "metadata" || th.EntryCount > vhdxMaxEntries {
		return fmt.Errorf("%w: the vhdx metadata table is invalid", ErrCorrupt)
	}
	entries := make([]vhdxMetadataEntry, th.EntryCount)
	_ = binary.Read(bytes.NewReader(buf[32:]), binary.LittleEndian, entries)
	item := func(e vhdxMetadataEntry, n int) ([]byte, error) {
		if int64(e.Length) != int64(n) || int64(e.Offset) < 64<<10 || !inFile(int64(e.Offset), int64(e.Length), length) {
			return nil, fmt.Errorf("%w: a vhdx metadata item is misplaced", ErrCorrupt)
		}
		return readHeader(r, size, off+int64(e.Offset), n, "vhdx metadata item")
	}
	var haveParams, haveSize, haveSector bool
	for _, e := range entries {
		switch e.ItemID {
		case vhdxItemFileParams:
			b, err := item(e, 8)
			if err != nil {
				return err
			}
			m.blockSize = int64(binary.LittleEndian.Uint32(b))
			if binary.LittleEndian.Uint32(b[4:])&vhdxHasParent != 0 {
				return fmt.Errorf("%w: the vhdx is a differencing disk with a parent", ErrUnsafe)
			}
			haveParams = true
		case vhdxItemDiskSize:
			b, err := item(e, 8)
			if err != nil {
				return err
			}
			v := binary.LittleEndian.Uint64(b)
			if v > MaxVirtualSize {
				return fmt.Errorf("%w: the vhdx virtual size %d is absurd", ErrCorrupt, v)
			}
			m.size = int64(v)
			haveSize = true
		case vhdxItemLogical:
			b, err := item(e, 4)
			if err != nil {
				return err
			}
			m.sectorSize = int64(binary.LittleEndian.Uint32(b))
			haveSector = true
		case vhdxItemParent:
			return fmt.Errorf("%w: the vhdx names a parent disk", ErrUnsafe)
		case vhdxItemPage83, vhdxItemPhysical:
		default:
			if e.Flags&vhdxMetaRequired != 0 {
				return fmt.Errorf("%w: the vhdx has an unknown required metadata item", ErrUnsafe)
			}
		}
	}
	if !haveParams || !haveSize || !haveSector {
		return fmt.Errorf("%w: the vhdx lacks required metadata", ErrCorrupt)
	}
	if m.blockSize < 1<<20 || m.blockSize > 256<<20 || m.blockSize&(m.blockSize-1) != 0 {
		return fmt.Errorf("%w: vhdx block size %d is invalid", ErrCorrupt, m.blockSize)
	}
	if m.sectorSize != 512 && m.sectorSize != 4096 {
		return fmt.Errorf("%w: vhdx logical sector size %d is invalid", ErrCorrupt, m.sectorSize)
	}
	return nil
}

func inspectVHDX(r io.ReaderAt, size int64) (Report, error) {
	m, err := parseVHDX(r, size)
	if err != nil {
		return Report{}, err
	}
	return Report{Format: VHDX, VirtualSize: m.size, ClusterSize: m.blockSize}, nil
}

type vhdxMapper struct {
	r        io.ReaderAt
	fileSize int64
	m        *vhdxMeta
}

func openVHDX(r io.ReaderAt, size int64) (Image, error) {
	m, err := parseVHDX(r, size)
	if err != nil {
		return nil, err
	}
	return newBlockImage(r, size, m.size, VHDX, m.blockSize, &vhdxMapper{r: r, fileSize: size, m: m}), nil
}

func (v *vhdxMapper) lookup(idx int64) (blockLoc, error) {
	if idx >= v.m.dataBlocks {
		return blockLoc{}, fmt.Errorf("%w: vhdx block %d is beyond the block table", ErrCorrupt, idx)
	}
	e, err := readEntry(v.r, v.m.batOffset+(idx+idx/v.m.chunkRatio)*8, 8, false)
	if err != nil {
		return blockLoc{}, fmt.Errorf("read vhdx block table: %w", err)
	}
	switch e & 7 {
	case vhdxStateFull:
		off := int64(e & vhdxOffsetMask)
		if e>>63 != 0 || off < 1<<20 || off >= v.fileSize {
			return blockLoc{}, fmt.Errorf("%w: a vhdx block lies past the end of the file", ErrCorrupt)
		}
		return blockLoc{kind: blockData, off: off}, nil
	case vhdxStatePartial:
		return blockLoc{}, fmt.Errorf("%w: a vhdx block is partially present in a disk without a parent", ErrCorrupt)
	default:
		// Not present, undefined, zero and unmapped all read as zeros
		// when there is no parent.
		return blockLoc{kind: blockZero}, nil
	}
}

func (v *vhdxMapper) inflate(blockLoc, []byte) error {
	return fmt.Errorf("vhdx has no compressed blocks")
}

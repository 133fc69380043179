package convert

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// vdiHeader is VirtualBox's VDI 1.1 header (VDICore.h; qemu block/vdi.c),
// little-endian, starting after 64 bytes of free text.
type vdiHeader struct {
	Text            [64]byte
	Signature       uint32
	Version         uint32
	HeaderSize      uint32
	ImageType       uint32
	ImageFlags      uint32
	Description     [256]byte
	OffsetBmap      uint32
	OffsetData      uint32
	Cylinders       uint32
	Heads           uint32
	Sectors         uint32
	SectorSize      uint32
	Unused1         uint32
	DiskSize        uint64
	BlockSize       uint32
	BlockExtra      uint32
	BlocksInImage   uint32
	BlocksAllocated uint32
	UUIDImage       [16]byte
	UUIDLastSnap    [16]byte
	UUIDLink        [16]byte
	UUIDParent      [16]byte
	Unused2         [7]uint64
}

const (
	vdiSignature   = 0xbeda107f
	vdiVersion11   = 0x00010001
	vdiTypeDynamic = 1
	vdiTypeStatic  = 2
	vdiBlockSize   = 1 << 20 // the only block size qemu accepts
	vdiUnallocated = 0xffffffff
	vdiDiscarded   = 0xfffffffe
)

func parseVDI(r io.ReaderAt, size int64) (*vdiHeader, error) {
	buf, err := readHeader(r, size, 0, 512, "vdi header")
	if err != nil {
		return nil, err
	}
	h := &vdiHeader{}
	_ = binary.Read(bytes.NewReader(buf), binary.LittleEndian, h)
	switch {
	case h.Signature != vdiSignature:
		return nil, fmt.Errorf("%w: not a vdi image", ErrCorrupt)
	case h.Version != vdiVersion11:
		return nil, fmt.Errorf("%w: vdi version %#x is not 1.1", ErrCorrupt, h.Version)
	case h.ImageType != vdiTypeDynamic && h.ImageType != vdiTypeStatic:
		return nil, fmt.Errorf("%w: vdi image type %d is not dynamic or static", ErrUnsafe, h.ImageType)
	case h.OffsetBmap%512 != 0 || h.OffsetData%512 != 0:
		return nil, fmt.Errorf("%w: vdi tables are not sector-aligned", ErrCorrupt)
	case h.SectorSize != 512:
		return nil, fmt.Errorf("%w: vdi sector size %d is not 512", ErrCorrupt, h.SectorSize)
	case h.BlockSize != vdiBlockSize || h.BlockExtra != 0:
		return nil, fmt.Errorf("%w: vdi block size %d is not 1 MiB", ErrCorrupt, h.BlockSize)
	case h.DiskSize > MaxVirtualSize:
		return nil, fmt.Errorf("%w: the vdi disk size %d is absurd", ErrCorrupt, h.DiskSize)
	case h.DiskSize > uint64(h.BlocksInImage)*vdiBlockSize:
		return nil, fmt.Errorf("%w: the vdi disk size exceeds its blocks", ErrCorrupt)
	case uint64(h.BlocksInImage)*vdiBlockSize > MaxVirtualSize:
		return nil, fmt.Errorf("%w: the vdi block count %d is absurd", ErrCorrupt, h.BlocksInImage)
	case h.BlocksAllocated > h.BlocksInImage:
		return nil, fmt.Errorf("%w: the vdi allocates more blocks than it has", ErrCorrupt)
	case h.UUIDParent != [16]byte{}:
		return nil, fmt.Errorf("%w: the vdi is a differencing image with a parent", ErrUnsafe)
	}
	bmapBytes := int64(h.BlocksInImage) * 4
	if !inFile(int64(h.OffsetBmap), bmapBytes, size) || int64(h.OffsetBmap)+bmapBytes > int64(h.OffsetData) {
		return nil, fmt.Errorf("%w: the vdi block map lies past the end of the file", ErrCorrupt)
	}
	return h, nil
}

func inspectVDI(r io.ReaderAt, size int64) (Report, error) {
	h, err := parseVDI(r, size)
	if err != nil {
		return Report{}, err
	}
	return Report{Format: VDI, VirtualSize: int64(h.DiskSize), ClusterSize: vdiBlockSize}, nil
}

type vdiMapper struct {
	r        io.ReaderAt
	fileSize int64
	h        *vdiHeader
}

func openVDI(r io.ReaderAt, size int64) (Image, error) {
	h, err := parseVDI(r, size)
	if err != nil {
		return nil, err
	}
	return newBlockImage(r, size, int64(h.DiskSize), VDI, vdiBlockSize, &vdiMapper{r: r, fileSize: size, h: h}), nil
}

func (v *vdiMapper) lookup(idx int64) (blockLoc, error) {
	if idx >= int64(v.h.BlocksInImage) {
		return blockLoc{}, fmt.Errorf("%w: vdi block %d is beyond the block map", ErrCorrupt, idx)
	}
	e, err := readEntry(v.r, int64(v.h.OffsetBmap)+idx*4, 4, false)
	if err != nil {
		return blockLoc{}, fmt.Errorf("read vdi block map: %w", err)
	}
	if e == vdiUnallocated || e == vdiDiscarded {
		return blockLoc{kind: blockZero}, nil
	}
	off := int64(v.h.OffsetData) + int64(e)*vdiBlockSize
	if e >= uint64(v.h.BlocksInImage) || off >= v.fileSize {
		return blockLoc{}, fmt.Errorf("%w: a vdi block lies past the end of the file", ErrCorrupt)
	}
	return blockLoc{kind: blockData, off: off}, nil
}

func (v *vdiMapper) inflate(blockLoc, []byte) error {
	return fmt.Errorf("vdi has no compressed blocks")
}

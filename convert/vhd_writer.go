package convert

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// vhdGeometry is the CHS algorithm of the VHD specification's appendix
// (qemu's calculate_geometry).
func vhdGeometry(totalSectors int64) (cyls uint16, heads, spt uint8) {
	ts := min(totalSectors, vhdMaxGeometry)
	var h, s, cth int64
	if ts >= 65535*16*63 {
		s, h = 255, 16
		cth = ts / s
	} else {
		s = 17
		cth = ts / s
		h = max((cth+1023)/1024, 4)
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = ts / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = ts / s
		}
	}
	return uint16(cth / h), uint8(h), uint8(s)
}

// vhdMakeFooter builds a footer whose creator is "win ", so that qemu and
// Hyper-V take current_size rather than the CHS-rounded size: the disk
// keeps exactly the size of its source.
func vhdMakeFooter(size int64, diskType uint32, dataOffset uint64) []byte {
	c, h, s := vhdGeometry(size / 512)
	f := vhdFooter{
		Features: 2, FileFormatVersion: 0x00010000, DataOffset: dataOffset,
		TimeStamp: uint32(time.Now().Unix() - 946684800), CreatorVersion: 0x000a0000,
		OriginalSize: uint64(size), CurrentSize: uint64(size), Cylinders: c, Heads: h, SectorsPerTrack: s,
		DiskType: diskType,
	}
	copy(f.Cookie[:], "conectix")
	copy(f.CreatorApplication[:], "win ")
	f.CreatorHostOS = 0x5769326b // "Wi2k"
	_, _ = rand.Read(f.UniqueID[:])
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, &f)
	buf := b.Bytes()
	binary.BigEndian.PutUint32(buf[vhdChecksumOff:], vhdChecksum(buf, vhdChecksumOff))
	return buf
}

// vpcWriter writes a dynamic VHD with 2 MiB blocks, each preceded by an
// all-ones sector bitmap; the BAT and the footers are written at Close.
type vpcWriter struct {
	f      OutputFile
	size   int64
	batOff int64

	mu   sync.Mutex
	bat  []uint32
	next int64 // next free byte offset
}

const (
	vpcWBlock  = 2 << 20
	vpcWBitmap = 512 // 4096 sectors of bitmap, padded to a sector
	vpcWBATOff = 512 + 1024
)

func newVPCWriter(f OutputFile, size int64) *vpcWriter {
	n := (size + vpcWBlock - 1) / vpcWBlock
	bat := make([]uint32, n)
	for i := range bat {
		bat[i] = vhdUnallocated
	}
	return &vpcWriter{f: f, size: size, batOff: vpcWBATOff, bat: bat, next: vpcWBATOff + (n*4+511)/512*512}
}

func (w *vpcWriter) BlockSize() int64 { return vpcWBlock }

var vpcBitmap = bytes.Repeat([]byte{0xff}, vpcWBitmap)

func (w *vpcWriter) WriteBlock(p []byte, off int64) error {
	return eachBlock(p, off, vpcWBlock, w.writeBlock)
}

func (w *vpcWriter) writeBlock(p []byte, off int64) error {
	if off%vpcWBlock != 0 || off+int64(len(p)) > w.size || len(p) > vpcWBlock {
		return fmt.Errorf("vpc write of %d bytes at %d is not one block", len(p), off)
	}
	b := off / vpcWBlock
	w.mu.Lock()
	if w.bat[b] != vhdUnallocated {
		w.mu.Unlock()
		return fmt.Errorf("vpc block %d written twice", b)
	}
	pos := w.next
	if pos/512 >= vhdUnallocated {
		w.mu.Unlock()
		return fmt.Errorf("vpc output is too large")
	}
	w.next += vpcWBitmap + vpcWBlock
	w.bat[b] = uint32(pos / 512)
	w.mu.Unlock()
	if _, err := w.f.WriteAt(vpcBitmap, pos); err != nil {
		return err
	}
	_, err := w.f.WriteAt(p, pos+vpcWBitmap)
	return err
}

func (w *vpcWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	footer := vhdMakeFooter(w.size, vhdTypeDynamic, 512)
	d := vhdDynamicHeader{
		DataOffset: ^uint64(0), TableOffset: uint64(w.batOff), HeaderVersion: 0x00010000,
		MaxTableEntries: uint32(len(w.bat)), BlockSize: vpcWBlock,
	}
	copy(d.Cookie[:], "cxsparse")
	var b bytes.Buffer
	b.Write(footer)
	_ = binary.Write(&b, binary.BigEndian, &d)
	dh := b.Bytes()[512:]
	binary.BigEndian.PutUint32(dh[vhdDynChecksumOff:], vhdChecksum(dh, vhdDynChecksumOff))
	_ = binary.Write(&b, binary.BigEndian, w.bat)
	for b.Len()%512 != 0 {
		b.WriteByte(0xff)
	}
	if _, err := w.f.WriteAt(b.Bytes(), 0); err != nil {
		return err
	}
	if _, err := w.f.WriteAt(footer, w.next); err != nil {
		return err
	}
	return w.f.Truncate(w.next + 512)
}

package convert

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
)

// vdiWriter writes a dynamic VDI 1.1 with 1 MiB blocks; blocks are
// appended as they arrive and the block map is written at Close.
type vdiWriter struct {
	f       OutputFile
	size    int64
	dataOff int64

	mu   sync.Mutex
	bmap []uint32
	n    uint32 // blocks allocated
}

func newVDIWriter(f OutputFile, size int64) *vdiWriter {
	blocks := (size + vdiBlockSize - 1) / vdiBlockSize
	bmap := make([]uint32, blocks)
	for i := range bmap {
		bmap[i] = vdiUnallocated
	}
	return &vdiWriter{f: f, size: size, dataOff: 512 + (blocks*4+511)/512*512, bmap: bmap}
}

func (w *vdiWriter) BlockSize() int64 { return vdiBlockSize }

func (w *vdiWriter) WriteBlock(p []byte, off int64) error {
	return eachBlock(p, off, vdiBlockSize, w.writeBlock)
}

func (w *vdiWriter) writeBlock(p []byte, off int64) error {
	if off%vdiBlockSize != 0 || off+int64(len(p)) > w.size || len(p) > vdiBlockSize {
		return fmt.Errorf("vdi write of %d bytes at %d is not one block", len(p), off)
	}
	b := off / vdiBlockSize
	w.mu.Lock()
	if w.bmap[b] != vdiUnallocated {
		w.mu.Unlock()
		return fmt.Errorf("vdi block %d written twice", b)
	}
	idx := w.n
	w.n++
	w.bmap[b] = idx
	w.mu.Unlock()
	_, err := w.f.WriteAt(p, w.dataOff+int64(idx)*vdiBlockSize)
	return err
}

func (w *vdiWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := vdiHeader{
		Signature: vdiSignature, Version: vdiVersion11, HeaderSize: 0x180, ImageType: vdiTypeDynamic,
		OffsetBmap: 512, OffsetData: uint32(w.dataOff), SectorSize: 512, DiskSize: uint64(w.size),
		BlockSize: vdiBlockSize, BlocksInImage: uint32(len(w.bmap)), BlocksAllocated: w.n,
	}
	copy(h.Text[:], "<<< QEMU VM Virtual Disk Image >>>\n")
	_, _ = rand.Read(h.UUIDImage[:])
	_, _ = rand.Read(h.UUIDLastSnap[:])
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, &h)
	_ = binary.Write(&b, binary.LittleEndian, w.bmap)
	if _, err := w.f.WriteAt(b.Bytes(), 0); err != nil {
		return err
	}
	return w.f.Truncate(w.dataOff + int64(w.n)*vdiBlockSize)
}

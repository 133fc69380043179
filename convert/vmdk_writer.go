package convert

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
)

// vmdkWriter writes a monolithicSparse or streamOptimized vmdk with 64 KiB
// grains. Grains are appended as they arrive, after the header and the
// descriptor; the grain tables and directory follow at Close.
type vmdkWriter struct {
	f      OutputFile
	size   int64
	name   string
	stream bool

	mu   sync.Mutex
	next int64              // next free sector
	gt   map[int64][]uint32 // GD index -> grain table, only tables in use
}

const (
	vmdkWGrainSectors = 128
	vmdkWGrain        = vmdkWGrainSectors * 512
	vmdkWGTEntries    = 512
	vmdkWDescSectors  = 20
	vmdkWOverhead     = 128 // sectors before the first grain, grain-aligned
)

func newVMDKWriter(f OutputFile, size int64, name string, stream bool) *vmdkWriter {
	if name == "" {
		name = "disk.vmdk"
	}
	return &vmdkWriter{f: f, size: size, name: filepath.Base(name), stream: stream, next: vmdkWOverhead, gt: map[int64][]uint32{}}
}

func (w *vmdkWriter) BlockSize() int64 { return vmdkWGrain }

func (w *vmdkWriter) WriteBlock(p []byte, off int64) error {
	if off%vmdkWGrain != 0 || off+int64(len(p)) > w.size {
		return fmt.Errorf("vmdk write of %d bytes at %d is not grain-aligned", len(p), off)
	}
	if w.stream {
		return eachBlock(p, off, vmdkWGrain, w.writeGrains)
	}
	return w.writeGrains(p, off)
}

// writeGrains stores one compressed grain, or a run of plain grains in
// consecutive sectors with one write.
func (w *vmdkWriter) writeGrains(p []byte, off int64) error {
	g := off / vmdkWGrain
	n := (int64(len(p)) + vmdkWGrain - 1) / vmdkWGrain
	data, sectors := p, n*vmdkWGrainSectors
	if w.stream {
		// A compressed grain is a marker {lba u64, size u32} and a zlib
		// stream of one whole grain (qemu rejects short output),
		// padded to a sector. Compress outside the lock.
		full := p
		if len(p) < vmdkWGrain {
			full = make([]byte, vmdkWGrain)
			copy(full, p)
		}
		var b bytes.Buffer
		b.Write(make([]byte, vmdkMarkerHeader))
		zw := zlib.NewWriter(&b)
		if _, err := zw.Write(full); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		rec := b.Bytes()
		binary.LittleEndian.PutUint64(rec, uint64(off/512))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(rec)-vmdkMarkerHeader))
		sectors = (int64(len(rec)) + 511) / 512
		data = append(rec, make([]byte, sectors*512-int64(len(rec)))...)
	}
	w.mu.Lock()
	sec := w.next
	if sec > 1<<32-1-sectors {
		w.mu.Unlock()
		return fmt.Errorf("vmdk output exceeds 2 TiB of sectors")
	}
	for i := range n {
		t := w.gt[(g+i)/vmdkWGTEntries]
		if t == nil {
			t = make([]uint32, vmdkWGTEntries)
			w.gt[(g+i)/vmdkWGTEntries] = t
		}
		if t[(g+i)%vmdkWGTEntries] != 0 {
			w.mu.Unlock()
			return fmt.Errorf("vmdk grain %d written twice", g+i)
		}
		t[(g+i)%vmdkWGTEntries] = uint32(sec + i*vmdkWGrainSectors)
	}
	w.next += sectors
	w.mu.Unlock()
	_, err := w.f.WriteAt(data, sec*512)
	return err
}

func (w *vmdkWriter) header(gd uint64) []byte {
	h := vmdkHeader{
		Magic: vmdkMagic, Version: 1, Flags: 1, Capacity: uint64(w.size / 512),
		GrainSize: vmdkWGrainSectors, DescriptorOffset: 1, DescriptorSize: vmdkWDescSectors,
		NumGTEsPerGT: vmdkWGTEntries, GDOffset: gd, OverHead: vmdkWOverhead,
		SingleEndLineChar: '\n', NonEndLineChar: ' ', DoubleEndLineChar1: '\r', DoubleEndLineChar2: '\n',
	}
	if w.stream {
		h.Version, h.Flags, h.CompressAlgorithm = 3, 1|vmdkFlagCompressed|vmdkFlagMarkers, 1
	}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, &h)
	b.Write(make([]byte, 512-b.Len()))
	return b.Bytes()
}

func (w *vmdkWriter) descriptor() []byte {
	sectors := w.size / 512
	createType := "monolithicSparse"
	if w.stream {
		createType = "streamOptimized"
	}
	d := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=ffffffff\ncreateType=\"%s\"\n\n"+
		"# Extent description\nRW %d SPARSE \"%s\"\n\n# The Disk Data Base\n#DDB\n\n"+
		"ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"16\"\n"+
		"ddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n",
		uint32(sectors*2654435761), createType, sectors, w.name, min(sectors/(16*63), 16383))
	b := make([]byte, vmdkWDescSectors*512)
	copy(b, d)
	return b
}

// marker is a streamOptimized metadata marker {numSectors u64, size 0,
// type u32}, one sector long.
func vmdkMarker(val uint64, typ uint32) []byte {
	m := make([]byte, 512)
	binary.LittleEndian.PutUint64(m, val)
	binary.LittleEndian.PutUint32(m[12:], typ)
	return m
}

func (w *vmdkWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	gts := (w.size/512 + vmdkWGrainSectors*vmdkWGTEntries - 1) / (vmdkWGrainSectors * vmdkWGTEntries)
	gtSectors := int64(vmdkWGTEntries * 4 / 512)
	gd := make([]byte, (gts*4+511)/512*512)
	pos := w.next
	buf := make([]byte, gtSectors*512)
	for i := range gts {
		t := w.gt[i]
		if w.stream {
			if t == nil {
				continue // GD entry 0: the whole table is unallocated
			}
			if _, err := w.f.WriteAt(vmdkMarker(uint64(gtSectors), 1), pos*512); err != nil {
				return err
			}
			pos++
		}
		binary.LittleEndian.PutUint32(gd[i*4:], uint32(pos))
		if t != nil {
			for j, e := range t {
				binary.LittleEndian.PutUint32(buf[j*4:], e)
			}
			if _, err := w.f.WriteAt(buf, pos*512); err != nil {
				return err
			}
		}
		// Untouched tables of a sparse extent stay holes: zeros.
		pos += gtSectors
	}
	if w.stream {
		if _, err := w.f.WriteAt(vmdkMarker(uint64(len(gd)/512), 2), pos*512); err != nil {
			return err
		}
		pos++
	}
	gdPos := pos
	if _, err := w.f.WriteAt(gd, pos*512); err != nil {
		return err
	}
	pos += int64(len(gd) / 512)
	head := w.header(uint64(gdPos))
	if w.stream {
		head = w.header(vmdkGDAtEnd)
		tail := append(vmdkMarker(1, 3), w.header(uint64(gdPos))...)
		tail = append(tail, make([]byte, 512)...) // end-of-stream marker
		if _, err := w.f.WriteAt(tail, pos*512); err != nil {
			return err
		}
		pos += 3
	}
	if _, err := w.f.WriteAt(append(head, w.descriptor()...), 0); err != nil {
		return err
	}
	return w.f.Truncate(pos * 512)
}

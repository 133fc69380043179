package convert

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
)

// qcow2Writer writes a version 3 qcow2 with 64 KiB clusters. Data
// clusters are appended in the order they arrive; the L2 tables, L1 and
// refcount structures follow the data at Close, when their sizes are
// known. Every used cluster has refcount 1 and every L1/L2 entry has
// OFLAG_COPIED, which is what qemu-img check demands.
type qcow2Writer struct {
	f    OutputFile
	size int64

	mu   sync.Mutex
	next int64              // next free cluster index; 0 is the header
	l2   map[int64][]uint64 // L1 index -> L2 table, only tables in use
}

const (
	qcow2WClusterBits = 16
	qcow2WCluster     = 1 << qcow2WClusterBits
	qcow2WL2Entries   = qcow2WCluster / 8
	qcow2Copied       = 1 << 63
	qcow2RefcountBits = 16
)

func newQCOW2Writer(f OutputFile, size int64) *qcow2Writer {
	return &qcow2Writer{f: f, size: size, next: 1, l2: map[int64][]uint64{}}
}

func (w *qcow2Writer) BlockSize() int64 { return qcow2WCluster }

// WriteBlock gives a run of guest clusters consecutive host clusters, so
// the run is stored with one write.
func (w *qcow2Writer) WriteBlock(p []byte, off int64) error {
	if off%qcow2WCluster != 0 || off+int64(len(p)) > w.size {
		return fmt.Errorf("qcow2 write of %d bytes at %d is not cluster-aligned", len(p), off)
	}
	first, n := off/qcow2WCluster, (int64(len(p))+qcow2WCluster-1)/qcow2WCluster
	w.mu.Lock()
	host := w.next * qcow2WCluster
	for c := first; c < first+n; c++ {
		t := w.l2[c/qcow2WL2Entries]
		if t == nil {
			t = make([]uint64, qcow2WL2Entries)
			w.l2[c/qcow2WL2Entries] = t
		}
		if t[c%qcow2WL2Entries] != 0 {
			w.mu.Unlock()
			return fmt.Errorf("qcow2 cluster %d written twice", c)
		}
		t[c%qcow2WL2Entries] = uint64(host+(c-first)*qcow2WCluster) | qcow2Copied
	}
	w.next += n
	w.mu.Unlock()
	return writeAt(w.f, p, host)
}

func (w *qcow2Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	cs := int64(qcow2WCluster)
	l1Size := (w.size + cs*qcow2WL2Entries - 1) / (cs * qcow2WL2Entries)
	l1Clusters := (l1Size*8 + cs - 1) / cs
	idx := slices.Sorted(func(yield func(int64) bool) {
		for k := range w.l2 {
			if !yield(k) {
				return
			}
		}
	})
	l2Start := w.next
	l1Start := l2Start + int64(len(idx))
	rtStart := l1Start + l1Clusters
	// The refcount blocks count themselves: iterate to a fixed point.
	cover := cs * 8 / qcow2RefcountBits
	rb, rtClusters, total := int64(1), int64(0), int64(0)
	for {
		rtClusters = (rb*8 + cs - 1) / cs
		total = rtStart + rtClusters + rb
		need := (total + cover - 1) / cover
		if need <= rb {
			break
		}
		rb = need
	}
	rbStart := rtStart + rtClusters

	l1 := make([]byte, l1Clusters*cs)
	buf := make([]byte, cs)
	for i, k := range idx {
		host := (l2Start + int64(i)) * cs
		binary.BigEndian.PutUint64(l1[k*8:], uint64(host)|qcow2Copied)
		for j, e := range w.l2[k] {
			binary.BigEndian.PutUint64(buf[j*8:], e)
		}
		if _, err := w.f.WriteAt(buf, host); err != nil {
			return err
		}
	}
	if _, err := w.f.WriteAt(l1, l1Start*cs); err != nil {
		return err
	}
	rt := make([]byte, rtClusters*cs)
	for i := range rb {
		binary.BigEndian.PutUint64(rt[i*8:], uint64((rbStart+i)*cs))
	}
	if _, err := w.f.WriteAt(rt, rtStart*cs); err != nil {
		return err
	}
	for i := range rb {
		clear(buf)
		for j := int64(0); j < cover && i*cover+j < total; j++ {
			binary.BigEndian.PutUint16(buf[j*2:], 1)
		}
		if _, err := w.f.WriteAt(buf, (rbStart+i)*cs); err != nil {
			return err
		}
	}
	h := make([]byte, qcow2V3HeaderLen+8) // + end-of-extensions marker
	for _, f := range []struct {
		off int
		v   uint64
		n   int
	}{
		{0, 0x514649fb, 4}, {4, 3, 4}, {20, qcow2WClusterBits, 4}, {24, uint64(w.size), 8},
		{36, uint64(l1Size), 4}, {40, uint64(l1Start * cs), 8}, {48, uint64(rtStart * cs), 8},
		{56, uint64(rtClusters), 4}, {96, 4, 4}, {100, qcow2V3HeaderLen, 4},
	} {
		if f.n == 4 {
			binary.BigEndian.PutUint32(h[f.off:], uint32(f.v))
		} else {
			binary.BigEndian.PutUint64(h[f.off:], f.v)
		}
	}
	if _, err := w.f.WriteAt(h, 0); err != nil {
		return err
	}
	return w.f.Truncate(total * cs)
}

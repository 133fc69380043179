// Package convert owns disk formats: it detects and inspects images with our
// own bounded parsers (never an external tool on untrusted content), and
// converts between formats.
//
// Inspect is the seam the image lifecycle uses on every upload: it reads
// only the metadata it needs through an io.ReaderAt over the stored bytes,
// so an upload is never read twice in full.
package convert

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Format names, as Glance's disk_format and qemu-img spell them.
const (
	Raw   = "raw"
	QCOW2 = "qcow2"
)

var (
	// ErrUnsafe marks an image that is well formed but refused: it would
	// make a consumer read something other than its own bytes (a backing
	// file, an external data file) or is otherwise dangerous.
	ErrUnsafe = errors.New("unsafe image")
	// ErrCorrupt marks an image whose header or tables are inconsistent.
	ErrCorrupt = errors.New("corrupt image")
)

// Report is what inspection learns about an image.
type Report struct {
	// Format is the detected disk format (Raw when nothing else fits).
	Format string
	// VirtualSize is the size in bytes of the disk the image describes.
	VirtualSize int64
}

// Matches reports whether content of this report may be registered under
// the declared Glance disk_format. An empty declaration matches anything.
func (r Report) Matches(declared string) bool {
	return declared == "" || declared == r.Format
}

// Inspect detects the format of the size bytes readable through r and
// checks that the image is safe to serve. Refused images give an error
// wrapping ErrUnsafe or ErrCorrupt.
func Inspect(r io.ReaderAt, size int64) (Report, error) {
	var magic [4]byte
	if size >= 4 {
		if _, err := r.ReadAt(magic[:], 0); err != nil {
			return Report{}, fmt.Errorf("read header: %w", err)
		}
	}
	if string(magic[:]) == "QFI\xfb" {
		return inspectQCOW2(r, size)
	}
	return Report{Format: Raw, VirtualSize: size}, nil
}

// qcow2Header is the fixed part of a qcow2 header (version 2 layout, which
// version 3 extends), big-endian on disk.
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
	qcow2IncompatDirty        = 1 << 0
	qcow2IncompatCorrupt      = 1 << 1
	qcow2IncompatExternalData = 1 << 2
	qcow2IncompatCompression  = 1 << 3
	qcow2IncompatExtendedL2   = 1 << 4
	qcow2IncompatKnown        = qcow2IncompatDirty | qcow2IncompatCorrupt | qcow2IncompatExternalData | qcow2IncompatCompression | qcow2IncompatExtendedL2
)

func inspectQCOW2(r io.ReaderAt, size int64) (Report, error) {
	var h qcow2Header
	if err := binary.Read(io.NewSectionReader(r, 0, size), binary.BigEndian, &h); err != nil {
		return Report{}, fmt.Errorf("%w: qcow2 header truncated", ErrCorrupt)
	}
	if h.Version != 2 && h.Version != 3 {
		return Report{}, fmt.Errorf("%w: qcow2 version %d", ErrCorrupt, h.Version)
	}
	if h.ClusterBits < 9 || h.ClusterBits > 21 {
		return Report{}, fmt.Errorf("%w: qcow2 cluster_bits %d out of range", ErrCorrupt, h.ClusterBits)
	}
	if h.BackingFileOffset != 0 {
		return Report{}, fmt.Errorf("%w: qcow2 has a backing file", ErrUnsafe)
	}
	if h.CryptMethod != 0 {
		return Report{}, fmt.Errorf("%w: qcow2 is encrypted", ErrUnsafe)
	}
	if h.Size > 1<<62 {
		return Report{}, fmt.Errorf("%w: qcow2 virtual size %d is absurd", ErrCorrupt, h.Size)
	}
	if h.Version == 3 {
		var h3 qcow2V3Header
		sr := io.NewSectionReader(r, int64(binary.Size(h)), size-int64(binary.Size(h)))
		if err := binary.Read(sr, binary.BigEndian, &h3); err != nil {
			return Report{}, fmt.Errorf("%w: qcow2 v3 header truncated", ErrCorrupt)
		}
		if h3.IncompatibleFeatures&qcow2IncompatExternalData != 0 {
			return Report{}, fmt.Errorf("%w: qcow2 has an external data file", ErrUnsafe)
		}
		if unknown := h3.IncompatibleFeatures &^ qcow2IncompatKnown; unknown != 0 {
			return Report{}, fmt.Errorf("%w: qcow2 has unknown incompatible features %#x", ErrUnsafe, unknown)
		}
	}
	l1End := h.L1TableOffset + uint64(h.L1Size)*8
	if h.L1Size > 0 && (l1End < h.L1TableOffset || l1End > uint64(size)) {
		return Report{}, fmt.Errorf("%w: qcow2 L1 table runs past the end of the file", ErrCorrupt)
	}
	return Report{Format: QCOW2, VirtualSize: int64(h.Size)}, nil
}

package convert

import (
	"bytes"
	"fmt"
	"io"
)

// Writer stores the blocks of a new virtual disk in some format.
type Writer interface {
	// BlockSize is the unit WriteBlock takes: the format's allocation
	// unit, so that an all-zero block can be skipped and stays a hole.
	BlockSize() int64
	// WriteBlock stores guest bytes p at off. off is a multiple of
	// BlockSize and p is a run of whole blocks; only the last block of
	// the disk may be short. Passing runs lets a writer store
	// consecutive blocks with one write. Each block is written at most
	// once; blocks never written read as zeros. Safe for concurrent use.
	WriteBlock(p []byte, off int64) error
	// Close writes the metadata; the output is valid only once Close has
	// returned nil. It does not close or sync the underlying file.
	Close() error
}

// OutputFile is what writers write to: a fresh, empty file (*os.File).
type OutputFile interface {
	io.WriterAt
	Truncate(size int64) error
}

// CreateOptions are the qemu-img -o options we support.
type CreateOptions struct {
	// Subformat selects a variant: vmdk "monolithicSparse" (default) or
	// "streamOptimized"; vpc "dynamic" (default) or "fixed".
	Subformat string
	// Name is the file name a vmdk descriptor records for its extent;
	// only the base name is used.
	Name string
}

// Create returns a writer of format for a disk of size bytes. Formats
// whose unit is the sector round size up to a multiple of 512, as qemu does.
func Create(f OutputFile, format string, size int64, opts CreateOptions) (Writer, error) {
	if size < 0 || size > MaxVirtualSize {
		return nil, fmt.Errorf("virtual size %d is out of range", size)
	}
	if err := f.Truncate(0); err != nil {
		return nil, fmt.Errorf("truncate output: %w", err)
	}
	if format != Raw {
		size = (size + 511) / 512 * 512
	}
	switch format {
	case Raw:
		if opts.Subformat != "" {
			return nil, fmt.Errorf("raw has no subformat %q", opts.Subformat)
		}
		return newRawWriter(f, size, nil)
	case QCOW2:
		if opts.Subformat != "" {
			return nil, fmt.Errorf("qcow2 has no subformat %q", opts.Subformat)
		}
		return newQCOW2Writer(f, size), nil
	case VMDK:
		switch opts.Subformat {
		case "", "monolithicSparse":
			return newVMDKWriter(f, size, opts.Name, false), nil
		case "streamOptimized":
			return newVMDKWriter(f, size, opts.Name, true), nil
		}
		return nil, fmt.Errorf("vmdk subformat %q is not monolithicSparse or streamOptimized", opts.Subformat)
	case VDI:
		if opts.Subformat != "" {
			return nil, fmt.Errorf("vdi has no subformat %q", opts.Subformat)
		}
		return newVDIWriter(f, size), nil
	case VPC, "vhd":
		if size/512 > vhdMaxSectors {
			return nil, fmt.Errorf("vpc images are limited to 2040 GiB")
		}
		switch opts.Subformat {
		case "", "dynamic":
			return newVPCWriter(f, size), nil
		case "fixed":
			footer := vhdMakeFooter(size, vhdTypeFixed, ^uint64(0))
			return newRawWriter(f, size, footer)
		}
		return nil, fmt.Errorf("vpc subformat %q is not dynamic or fixed", opts.Subformat)
	}
	return nil, fmt.Errorf("cannot write format %q (raw, qcow2, vmdk, vdi or vpc)", format)
}

// isZero reports whether p holds only zero bytes. bytes.Equal against a
// zero page runs at memory speed.
func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroPage))
		if !bytes.Equal(p[:n], zeroPage[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

var zeroPage [64 << 10]byte

// maxWrite caps the bytes of one write to the output file. Measured on
// the 2-vCPU development VM (Linux 6.18, ext4, guest memory handed back to
// the host when free), converting the 2 GiB bench image qcow2 -> raw:
// with 1 MiB writes at 1 MiB-aligned offsets the conversion took 3-4 s,
// 3-4.6 s of it in the kernel, almost all in copy_folio_from_iter_atomic
// (copying into new page-cache folios) and in writers spinning on the
// inode lock (rwsem_spin_on_owner); with 256 KiB or 64 KiB writes it took
// 0.5-0.9 s, like qemu-img. Large aligned writes get large page-cache
// folios, which seem to come from memory that is slow on first touch.
const maxWrite = 256 << 10

// writeAt writes p at off in pieces of at most maxWrite bytes.
func writeAt(f io.WriterAt, p []byte, off int64) error {
	for len(p) > 0 {
		n := min(len(p), maxWrite)
		if _, err := f.WriteAt(p[:n], off); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// eachBlock calls fn for every block of a run, for writers that place
// blocks one at a time.
func eachBlock(p []byte, off, bs int64, fn func(p []byte, off int64) error) error {
	for i := int64(0); i < int64(len(p)); i += bs {
		if err := fn(p[i:min(i+bs, int64(len(p)))], off+i); err != nil {
			return err
		}
	}
	return nil
}

// rawWriter writes guest bytes at their own offsets, leaving zero pages as
// holes; with a trailer it is a fixed VHD.
type rawWriter struct {
	f       OutputFile
	size    int64
	trailer []byte
}

const (
	rawBlockSize = 1 << 20 // zeros are still skipped by 4 KiB page
	rawPageSize  = 4 << 10 // qemu's default -S granularity
)

func newRawWriter(f OutputFile, size int64, trailer []byte) (*rawWriter, error) {
	if err := f.Truncate(size); err != nil {
		return nil, fmt.Errorf("truncate output: %w", err)
	}
	return &rawWriter{f: f, size: size, trailer: trailer}, nil
}

func (w *rawWriter) BlockSize() int64 { return rawBlockSize }

func (w *rawWriter) WriteBlock(p []byte, off int64) error {
	if off+int64(len(p)) > w.size {
		return fmt.Errorf("write at %d past the virtual size", off)
	}
	// Write each run of non-zero pages once.
	for i := 0; i < len(p); {
		if isZero(p[i:min(i+rawPageSize, len(p))]) {
			i += rawPageSize
			continue
		}
		j := i + rawPageSize
		for j < len(p) && !isZero(p[j:min(j+rawPageSize, len(p))]) {
			j += rawPageSize
		}
		j = min(j, len(p))
		if err := writeAt(w.f, p[i:j], off+int64(i)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func (w *rawWriter) Close() error {
	if w.trailer != nil {
		if _, err := w.f.WriteAt(w.trailer, w.size); err != nil {
			return err
		}
	}
	return nil
}

// Package convert owns disk formats: it detects and inspects images with our
// own bounded parsers (never an external tool on untrusted content), and
// converts between formats.
//
// Inspect is the seam the image lifecycle uses on every upload: it reads
// only the metadata it needs through an io.ReaderAt over the stored bytes,
// so an upload is never read twice in full.
package convert

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Format names, as qemu-img spells them (Glance says "vhd" for vpc and has
// "iso", which qemu reads as raw).
const (
	Raw   = "raw"
	QCOW2 = "qcow2"
	VMDK  = "vmdk"
	VDI   = "vdi"
	VPC   = "vpc"
	VHDX  = "vhdx"
	ISO   = "iso"
)

// MaxVirtualSize bounds the virtual size of any image we accept: larger
// claims are refused as absurd rather than trusted (64 TiB, VHDX's limit).
const MaxVirtualSize = 64 << 40

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
	// VirtualSize is the size in bytes of the disk the image describes,
	// as qemu-img info reports it.
	VirtualSize int64
	// ClusterSize is the allocation unit (qcow2 cluster, vmdk grain, vdi,
	// vpc and vhdx block), 0 for raw.
	ClusterSize int64
	// Compat is the qcow2 compatibility level ("0.10" or "1.1").
	Compat string
	// Compression is the qcow2 compression type ("zlib" or "zstd").
	Compression string
	// CreateType is the vmdk createType.
	CreateType string
	// FixedVHD is set for a fixed VHD (Format vpc): the guest's bytes then
	// a footer at the end. qemu probes such a file as raw, so it may also
	// be declared "raw" (read raw, it is the disk and one more sector).
	FixedVHD bool
	// GPT is set when the content carries a protective MBR and GPT header.
	GPT bool
}

// DiskFormat is the Glance disk_format that names the detected format:
// qemu's vpc is Glance's vhd; the others share their names.
func (r Report) DiskFormat() string {
	if r.Format == VPC {
		return "vhd"
	}
	return r.Format
}

// Matches reports whether content of this report may be registered under
// the declared Glance disk_format. An empty declaration matches anything.
func (r Report) Matches(declared string) bool {
	switch declared {
	case "", r.Format:
		return true
	case "vhd", VPC:
		return r.Format == VPC
	case Raw:
		return r.FixedVHD
	case "aki", "ari", "ami":
		// Kernels, ramdisks and machine images carry no magic: Glance
		// accepts them when nothing specific is detected.
		return r.Format == Raw
	}
	return false
}

// probeHead is how much of the head detection reads: enough for every
// magic and for the MBR/GPT signature.
const probeHead = 1024

// isoArea is where ISO 9660 and UDF volume descriptors live: sectors of
// 2048 bytes from 32 KiB; a few are enough to find the PVD or the NSR.
const (
	isoAreaStart = 32768
	isoAreaLen   = 8 * 2048
)

// Inspect detects the format of the size bytes readable through r and
// checks that the image is safe to serve. Refused images give an error
// wrapping ErrUnsafe or ErrCorrupt.
func Inspect(r io.ReaderAt, size int64) (Report, error) {
	if size < 0 {
		return Report{}, fmt.Errorf("negative image size %d", size)
	}
	head := make([]byte, min(size, probeHead))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return Report{}, fmt.Errorf("read header: %w", err)
	}
	if name := bannedFormat(head); name != "" {
		return Report{}, fmt.Errorf("%w: the %s format is not accepted", ErrUnsafe, name)
	}
	tail, err := readTail(r, size)
	if err != nil {
		return Report{}, err
	}
	if bytes.HasPrefix(tail, []byte(dmgTrailer)) {
		return Report{}, fmt.Errorf("%w: the dmg format is not accepted", ErrUnsafe)
	}
	matches, err := detect(r, size, head)
	if err != nil {
		return Report{}, err
	}
	gpt := matches["gpt"]
	delete(matches, "gpt")
	fixedVHD := !matches[VPC] && isFixedVHDFooter(tail)
	guestGPT := false
	if fixedVHD {
		// The guest's disk comes first, so a partition table or an ISO
		// there is the guest's; another format's header is a polyglot.
		guestGPT, gpt = gpt, false
		delete(matches, ISO)
		if len(matches) > 0 {
			matches[VPC] = true
		}
	}
	if matches[ISO] && gpt {
		// Hybrid ISOs legitimately boot from a GPT in the system area.
		gpt = false
	}
	if len(matches) > 1 || (len(matches) == 1 && gpt) {
		names := make([]string, 0, len(matches)+1)
		for n := range matches {
			names = append(names, n)
		}
		if gpt {
			names = append(names, "gpt")
		}
		sort.Strings(names)
		return Report{}, fmt.Errorf("%w: the image is several formats at once (%s)", ErrUnsafe, strings.Join(names, " and "))
	}
	var rep Report
	var format string
	for f := range matches {
		format = f
	}
	switch format {
	case QCOW2:
		rep, err = inspectQCOW2(r, size)
	case VMDK:
		rep, err = inspectVMDK(r, size)
	case VDI:
		rep, err = inspectVDI(r, size)
	case VPC:
		rep, err = inspectVPC(r, size)
	case "":
		if fixedVHD {
			rep, err = inspectFixedVHD(r, size, guestGPT)
			break
		}
		rep = Report{Format: Raw, VirtualSize: size, GPT: gpt}
	case VHDX:
		rep, err = inspectVHDX(r, size)
	case ISO:
		// qemu reads an ISO as raw, so its virtual size is the file size.
		rep = Report{Format: ISO, VirtualSize: size}
	}
	return rep, err
}

// detect returns every format whose signature the content carries.
func detect(r io.ReaderAt, size int64, head []byte) (map[string]bool, error) {
	m := map[string]bool{}
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		m[QCOW2] = true
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("COWD")), isVMDKDescriptor(head):
		m[VMDK] = true
	case bytes.HasPrefix(head, []byte("conectix")):
		m[VPC] = true
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		m[VHDX] = true
	}
	if len(head) >= 0x44 && bytes.Equal(head[0x40:0x44], []byte{0x7f, 0x10, 0xda, 0xbe}) {
		m[VDI] = true
	}
	if len(head) >= 520 && head[510] == 0x55 && head[511] == 0xaa && string(head[512:520]) == "EFI PART" {
		m["gpt"] = true
	}
	if size >= isoAreaStart+2048 {
		area := make([]byte, min(size-isoAreaStart, isoAreaLen))
		if _, err := r.ReadAt(area, isoAreaStart); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read volume descriptors: %w", err)
		}
		for off := 0; off+6 <= len(area); off += 2048 {
			id := string(area[off+1 : off+6])
			if (area[off] == 1 && id == "CD001") || id == "NSR02" || id == "NSR03" {
				m[ISO] = true
				break
			}
		}
	}
	return m, nil
}

// bannedFormat names formats we recognise only to refuse: they are
// unsafe or unsupported and must never reach qemu as something else.
func bannedFormat(head []byte) string {
	for _, b := range []struct{ magic, name string }{
		{"QED\x00", "qed"},
		{"LUKS\xba\xbe", "luks"},
		{"WithoutFreeSpace", "parallels"},
		{"WithouFreSpacExt", "parallels"},
		{"Bochs Virtual HD Image", "bochs"},
		{cloopMagic, "cloop"},
	} {
		if bytes.HasPrefix(head, []byte(b.magic)) {
			return b.name
		}
	}
	return ""
}

// readTail reads the last sector, where a fixed VHD keeps its footer and a
// dmg its trailer; nil for files shorter than two sectors.
func readTail(r io.ReaderAt, size int64) ([]byte, error) {
	if size < 1024 {
		return nil, nil
	}
	tail := make([]byte, 512)
	if _, err := r.ReadAt(tail, size-512); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read the last sector: %w", err)
	}
	return tail, nil
}

// readHeader reads n bytes at off, failing with ErrCorrupt when the file
// is too short: headers are never zero-filled.
func readHeader(r io.ReaderAt, size, off int64, n int, what string) ([]byte, error) {
	if off < 0 || off > size || int64(n) > size-off {
		return nil, fmt.Errorf("%w: the %s lies past the end of the file", ErrCorrupt, what)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return buf, nil
}

// inFile reports whether [off, off+n) lies inside a file of size bytes,
// without overflowing.
func inFile(off, n, size int64) bool {
	return off >= 0 && n >= 0 && off <= size && n <= size-off
}

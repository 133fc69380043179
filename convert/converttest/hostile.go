// Package converttest builds hostile disk images for the tests of the
// faces above convert: the images an attacker uploads to make a host tool
// read host files (backing and data files, flat extents) or allocate
// without bound. They are built byte by byte, without qemu-img, so that a
// test of the mount can make them from inside the process that serves it.
package converttest

import (
	"encoding/binary"
	"strings"
)

// Hostile is one hostile image.
type Hostile struct {
	Name       string
	DiskFormat string // what the uploader claims
	Data       []byte
	Reason     string // part of the refusal's message
}

// HostileImages returns qcow2 images with a backing file, with an external
// data file and with an L1 table of 4 G entries, and vmdk text
// descriptors whose flat extent is /etc/passwd, in each form qemu's probe
// takes for a vmdk (VMDKDescriptors).
func HostileImages() []Hostile {
	backing := qcow2Header(2)
	be64(backing, 8, 512) // backing_file_offset
	be32(backing, 16, 11) // backing_file_size
	copy(backing[512:], "/etc/passwd")

	dataFile := qcow2Header(3)
	be64(dataFile, 72, 1<<2) // incompatible_features: external data file
	// Header extension "data file name" after the 104-byte header.
	be32(dataFile, 104, 0x44415441)
	be32(dataFile, 108, 11)
	copy(dataFile[112:], "/etc/passwd")

	hugeL1 := qcow2Header(3)
	be32(hugeL1, 36, 0xffffffff) // l1_size

	images := []Hostile{
		{"qcow2 with a backing file", "qcow2", backing, "backing file"},
		{"qcow2 with an external data file", "qcow2", dataFile, "data file"},
		{"qcow2 with a huge L1 table", "qcow2", hugeL1, "L1"},
	}
	for _, d := range VMDKDescriptors("/etc/passwd") {
		images = append(images, Hostile{"vmdk descriptor, " + d.Name + ", a flat extent on /etc/passwd", "vmdk", d.Data, "names other files"})
	}
	return images
}

// Descriptor is one form of a vmdk text descriptor.
type Descriptor struct {
	Name string
	Data []byte
}

// VMDKDescriptors returns monolithicFlat descriptors whose one extent is
// path, in every form qemu's vmdk_probe takes for a vmdk: VMware's own
// (first line "# Disk DescriptorFile"), "version=1" first, another
// comment first, blank lines of spaces first, CRLF line ends, and all of
// these at once with version 3. qemu-img without -f opens each as a vmdk
// and reads path (CVE-2022-47951), so each must be refused, never taken
// for raw.
func VMDKDescriptors(path string) []Descriptor {
	body := "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
		"# Extent description\nRW 2048 FLAT \"" + path + "\" 0\n\nddb.virtualHWVersion = \"4\"\n"
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	return []Descriptor{
		{"VMware's header", []byte("# Disk DescriptorFile\nversion=1\n" + body)},
		{"version first", []byte("version=1\n" + body)},
		{"another comment first", []byte("# written by hand\n#\nversion=2\n" + body)},
		{"blank lines first", []byte("   \n \nversion=1\n" + body)},
		{"CRLF", []byte(crlf("version=1\n" + body))},
		{"comments, blanks and CRLF", []byte(crlf("#!\n  \n# x\nversion=3\n" + body))},
	}
}

// qcow2Header is a minimal qcow2 of 1 MiB, 64 KiB clusters, in 3 clusters:
// header, refcount table, L1 table.
func qcow2Header(version uint32) []byte {
	b := make([]byte, 3<<16)
	copy(b, "QFI\xfb")
	be32(b, 4, version)
	be32(b, 20, 16)    // cluster_bits
	be64(b, 24, 1<<20) // size
	be32(b, 36, 1)     // l1_size
	be64(b, 40, 2<<16) // l1_table_offset
	be64(b, 48, 1<<16) // refcount_table_offset
	be32(b, 56, 1)     // refcount_table_clusters
	if version >= 3 {
		be32(b, 96, 4)    // refcount_order
		be32(b, 100, 104) // header_length
	}
	return b
}

func be32(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
func be64(b []byte, off int, v uint64) { binary.BigEndian.PutUint64(b[off:], v) }

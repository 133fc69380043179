// Package converttest builds hostile disk images for the tests of the
// faces above convert: the images an attacker uploads to make a host tool
// read host files (backing and data files, flat extents) or allocate
// without bound. They are built byte by byte, without qemu-img, so that a
// test of the mount can make them from inside the process that serves it.
package converttest

import "encoding/binary"

// Hostile is one hostile image.
type Hostile struct {
	Name       string
	DiskFormat string // what the uploader claims
	Data       []byte
	Reason     string // part of the refusal's message
}

// HostileImages returns qcow2 images with a backing file, with an external
// data file and with an L1 table of 4 G entries, and a vmdk whose flat
// extent is /etc/passwd.
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

	flat := []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
		"# Extent description\nRW 2048 FLAT \"/etc/passwd\" 0\n\nddb.virtualHWVersion = \"4\"\n")
	return []Hostile{
		{"qcow2 with a backing file", "qcow2", backing, "backing file"},
		{"qcow2 with an external data file", "qcow2", dataFile, "data file"},
		{"qcow2 with a huge L1 table", "qcow2", hugeL1, "L1"},
		{"vmdk with a flat extent on /etc/passwd", "vmdk", flat, "names other files"},
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

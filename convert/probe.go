package convert

import "bytes"

// Detection is at least as eager as qemu's probes (each block driver's
// .bdrv_probe, run over the first 512 bytes when a consumer opens a file
// without -f): whatever qemu would open as a format must be detected here
// as that format, or it would pass as raw and reach qemu as the format,
// with whatever files the format names.

// isVMDKDescriptor reports whether head is a vmdk text descriptor as
// qemu's vmdk_probe takes one: comment and blank lines, then a line
// "version=1", "version=2" or "version=3". It is more eager than qemu,
// which accepts only blank lines made of spaces, a comment only at the
// start of a line and the version line exactly: here blank lines may hold
// tabs or nothing, comments may be indented, "=" may have spaces around
// it, and the version line may end the file or the head. A file that
// begins with VMware's "# Disk DescriptorFile" is one whatever follows.
func isVMDKDescriptor(head []byte) bool {
	if bytes.HasPrefix(head, []byte("# Disk DescriptorFile")) {
		return true
	}
	for rest := head; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.Trim(line, " \t\r")
		switch {
		case len(line) == 0, line[0] == '#':
			continue
		}
		key, value, ok := bytes.Cut(line, []byte("="))
		if !ok || string(bytes.TrimRight(key, " \t")) != "version" {
			return false
		}
		switch string(bytes.TrimLeft(value, " \t")) {
		case "1", "2", "3":
			return true
		}
		return false
	}
	return false
}

// cloopMagic starts every cloop image (a shell script that mounts it):
// qemu's cloop_probe compares the whole script line; its first two lines
// are enough here.
const cloopMagic = "#!/bin/sh\n#V2.0 Format\n"

// dmgTrailer is the UDIF trailer's magic, at 512 bytes before the end of
// an Apple disk image. qemu's dmg_probe looks only at the file name
// (".dmg"), which a consumer may well give a downloaded image: the
// content says it as surely.
const dmgTrailer = "koly"

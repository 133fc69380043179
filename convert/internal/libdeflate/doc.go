// Package libdeflate decodes raw DEFLATE streams with Eric Biggers'
// libdeflate (v1.25, MIT, its decompressor alone, vendored under upstream/
// unchanged), when the build has cgo. It is a fast path, not a parser of
// its own: the caller hands it a bounded input and output buffer, and on
// anything but a stream that fills the output exactly it falls back to its
// pure-Go decoder, which stays the arbiter of odd streams.
//
// Why vendor C: a qcow2 or streamOptimized vmdk read through the mount's
// raw/ view decodes a whole cluster per cache miss, and Go's inflate
// (klauspost/compress, the faster of the Go ones) took 340 µs for a 64 KiB
// cluster of /usr/bin/bash on the 2-vCPU test machine against libdeflate's
// 86 µs; that cost was most of the gap to qemu-storage-daemon on random
// reads of compressed images. Vendoring (rather than linking Debian's
// libdeflate-dev) keeps `go build` working on any machine with a C
// compiler, and a machine without one builds with cgo off and the Go
// decoder (Available is then false).
//
// Updating: copy lib/deflate_decompress.c, decompress_template.h,
// deflate_constants.h, lib_common.h, utils.c, cpu_features_common.h,
// lib/x86/{cpu_features.c,cpu_features.h,decompress_impl.h}, common_defs.h,
// libdeflate.h and COPYING from the new tag into upstream/; FuzzInflate
// checks every output against the Go decoder.
package libdeflate

//go:build cgo

package libdeflate

/*
#cgo CFLAGS: -O2 -Iupstream -Wno-unused-function
#include <stdlib.h>
#include "upstream/libdeflate.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Available reports whether Inflate can decode (the build has cgo).
const Available = true

// Decompressors hold about 32 KiB of tables each; one per concurrent
// caller is kept, freed with its wrapper when the pool drops it.
var decompressors = sync.Pool{New: func() any {
	d := &decompressor{c: C.libdeflate_alloc_decompressor()}
	if d.c == nil {
		return (*decompressor)(nil)
	}
	runtime.AddCleanup(d, func(c *C.struct_libdeflate_decompressor) { C.libdeflate_free_decompressor(c) }, d.c)
	return d
}}

type decompressor struct {
	c *C.struct_libdeflate_decompressor
}

// Inflate decodes the raw DEFLATE stream at the start of src into dst and
// reports whether it filled dst exactly, with the stream's end at dst's
// end, and how many bytes of src the stream took. Anything else (a
// corrupt stream, one shorter than dst or going on past it, no memory for
// a decompressor) is ok false, and the caller decodes with Go instead:
// libdeflate must have the whole output space, and it rejects streams
// that qemu's zlib-based readers accept (trailing corruption after a full
// cluster).
func Inflate(src, dst []byte) (used int, ok bool) {
	if len(src) == 0 || len(dst) == 0 {
		return 0, false
	}
	d, _ := decompressors.Get().(*decompressor)
	if d == nil {
		return 0, false
	}
	defer decompressors.Put(d)
	var in, out C.size_t
	r := C.libdeflate_deflate_decompress_ex(d.c,
		unsafe.Pointer(unsafe.SliceData(src)), C.size_t(len(src)),
		unsafe.Pointer(unsafe.SliceData(dst)), C.size_t(len(dst)),
		&in, &out)
	runtime.KeepAlive(d)
	if r != C.LIBDEFLATE_SUCCESS || int(out) != len(dst) {
		return 0, false
	}
	return int(in), true
}

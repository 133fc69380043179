//go:build !cgo

package libdeflate

// Available reports whether Inflate can decode (the build has cgo).
const Available = false

// Inflate never decodes without cgo: the caller's Go decoder does.
func Inflate(src, dst []byte) (used int, ok bool) { return 0, false }

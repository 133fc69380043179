//go:build cgo

// Compiled from the vendored upstream source; see doc.go.
#include "upstream/lib/deflate_decompress.c"

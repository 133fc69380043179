//go:build cgo

// Compiled from the vendored upstream source; see doc.go.
#include "upstream/lib/x86/cpu_features.c"

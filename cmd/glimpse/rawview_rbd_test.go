//go:build ceph

package main

import "testing"

// The raw view on Ceph RBD: librbd reads the ranges asked for, with no
// cache below the store's reader, so the daemon's count of bytes read is
// what came from the OSD.
func TestRawViewOnRBD(t *testing.T) {
	needMount(t)
	startCeph(t)
	rawViewOnStore(t, func(d *daemon) int64 { return storeReadBytes(t, d, "rbd") }, "--store", "rbd://glimpse")
}

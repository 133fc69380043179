//go:build ceph

package main

import (
	"fmt"
	"os"

	"github.com/ceph/go-ceph/rados"
	cephrbd "github.com/ceph/go-ceph/rbd"
)

// rbdPut writes the file into a new RBD image in sequential 4 MiB writes
// and flushes, as go-ceph's plain use does.
func rbdPut(file, pool, image string) (int64, error) {
	data, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return 0, err
	}
	conn, err := rados.NewConn()
	if err != nil {
		return 0, err
	}
	if err := conn.ReadDefaultConfigFile(); err != nil {
		return 0, fmt.Errorf("read ceph config: %w", err)
	}
	if err := conn.Connect(); err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Shutdown()
	ioctx, err := conn.OpenIOContext(pool)
	if err != nil {
		return 0, fmt.Errorf("pool %s: %w", pool, err)
	}
	defer ioctx.Destroy()
	opts := cephrbd.NewRbdImageOptions()
	err = cephrbd.CreateImage(ioctx, image, uint64(st.Size()), opts)
	opts.Destroy()
	if err != nil {
		return 0, fmt.Errorf("create image %s: %w", image, err)
	}
	img, err := cephrbd.OpenImage(ioctx, image, cephrbd.NoSnapshot)
	if err != nil {
		return 0, err
	}
	defer img.Close()
	buf := make([]byte, 4<<20)
	var off int64
	for {
		n, rerr := data.Read(buf)
		if n > 0 {
			if _, err := img.WriteAt(buf[:n], off); err != nil {
				return 0, fmt.Errorf("write at %d: %w", off, err)
			}
			off += int64(n)
		}
		if rerr != nil {
			break
		}
	}
	if off != st.Size() {
		return 0, fmt.Errorf("read %d of %d bytes", off, st.Size())
	}
	return off, img.Flush()
}

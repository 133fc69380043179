// Package floor is the md5+sha512 hash floor the benchmarks compare with:
// a file read once and hashed with both, in parallel, as an upload must.
// scripts/hashfloor prints it alone; scripts/benchclient runs it beside a
// direct store upload.
package floor

import (
	"crypto/md5"
	"crypto/sha512"
	"io"
	"os"
	"sync"
)

// HashFile reads file once in 128 KiB reads (what cp writes per call),
// hashes each read with md5 on another goroutine while this one does
// sha512, and returns how many bytes it hashed.
func HashFile(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m, s := md5.New(), sha512.New()
	buf := make([]byte, 128<<10)
	var total int64
	for {
		n, err := f.Read(buf)
		if n > 0 {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); m.Write(buf[:n]) }()
			s.Write(buf[:n])
			wg.Wait()
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Command hashfloor reads a file once and hashes it with md5 and sha512 in
// parallel, as an upload must: the floor under any ingest path. It prints
// the throughput in MiB/s. Used by scripts/bench as a baseline.
package main

import (
	"crypto/md5"
	"crypto/sha512"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hashfloor FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "hashfloor:", err)
		os.Exit(1)
	}
	defer f.Close()
	start := time.Now()
	m, s := md5.New(), sha512.New()
	buf := make([]byte, 128<<10) // what cp writes per call
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
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "hashfloor:", err)
			os.Exit(1)
		}
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("%.1f\n", float64(total)/(1<<20)/secs)
}

// Command hashfloor reads a file once and hashes it with md5 and sha512 in
// parallel, as an upload must: the floor under any ingest path. It prints
// the throughput in MiB/s. Used by scripts/bench as a baseline.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/glimpse-project/glimpse/scripts/internal/floor"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hashfloor FILE")
		os.Exit(2)
	}
	start := time.Now()
	total, err := floor.HashFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "hashfloor:", err)
		os.Exit(1)
	}
	fmt.Printf("%.1f\n", float64(total)/(1<<20)/time.Since(start).Seconds())
}

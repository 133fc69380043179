// Command restload sends the same REST GET many times, over kept-alive
// connections from a few goroutines, and prints the requests per second:
// scripts/bench's measure of what one request costs the daemon, with and
// without auth.
//
//	restload URL TOKEN REQUESTS CONCURRENCY
//
// TOKEN "" sends no X-Auth-Token. Any answer but 200 is an error.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "restload:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("usage: restload URL TOKEN REQUESTS CONCURRENCY")
	}
	url, token := args[0], args[1]
	total, err := strconv.Atoi(args[2])
	if err != nil || total <= 0 {
		return fmt.Errorf("REQUESTS %q: want a positive number", args[2])
	}
	conc, err := strconv.Atoi(args[3])
	if err != nil || conc <= 0 {
		return fmt.Errorf("CONCURRENCY %q: want a positive number", args[3])
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}, Timeout: 30 * time.Second}
	get := func() error {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("X-Auth-Token", token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
	// One request first: connections up, and the token in the daemon's
	// cache, so that only the steady state is timed.
	if err := get(); err != nil {
		return err
	}
	var left atomic.Int64
	left.Store(int64(total))
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := get(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("%.1f\n", float64(total)/secs)
	return nil
}

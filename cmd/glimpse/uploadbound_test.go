package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServeUploadsInFlightBounded: 200 REST uploads that stall after
// their first MiB, against --max-uploads 16: 16 hold a slot, the other
// 184 get 503 with Retry-After within a second (a client still sending
// then may see the connection reset first), nothing of theirs stored, and the daemon's RSS grows by
// about the 16 buffers (unbounded, the 200 took 200 MiB more). Then every
// stalled upload finishes and a new one gets a slot.
func TestServeUploadsInFlightBounded(t *testing.T) {
	const limit, tries = 16, 200
	d := startDaemonREST(t, t.TempDir(), "--max-uploads", strconv.Itoa(limit))
	r := rest{t: t, base: "http://" + d.addr}
	ids := make([]string, tries)
	for i := range ids {
		ids[i] = r.create(fmt.Sprintf("stalled-%d", i))
	}
	before := rssKiB(t, d.cmd.Process.Pid)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: tries}}
	writers := make([]*io.PipeWriter, tries)
	codes := make([]int, tries)
	answered := make(chan int, tries)
	var all sync.WaitGroup
	for i, id := range ids {
		pr, pw := io.Pipe()
		writers[i] = pw
		all.Go(func() {
			req, _ := http.NewRequest("PUT", r.base+"/v2/images/"+id+"/file", pr)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := client.Do(req)
			if err != nil {
				// A refused client still sending when the daemon
				// closes may see the reset before the 503.
				codes[i] = -1
				answered <- i
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Errorf("upload %d: 503 without Retry-After", i)
			}
			answered <- i
		})
		// Nearly a copy buffer's worth: the daemon holds it all, in
		// pages it has touched, while it waits for the rest.
		go pw.Write(make([]byte, 1<<20-4096))
	}
	// Every upload beyond the limit is answered while the others stall.
	refused, reset := 0, 0
	timeout := time.After(60 * time.Second)
	for refused < tries-limit {
		select {
		case i := <-answered:
			switch {
			case codes[i] == -1 && r.image(ids[i])["status"] == "queued":
				reset++
			case codes[i] != http.StatusServiceUnavailable:
				t.Fatalf("upload %d answered %d while %d stalled, want 503", i, codes[i], limit)
			}
			refused++
		case <-timeout:
			t.Fatalf("only %d uploads refused after 60 s, want %d", refused, tries-limit)
		}
	}
	during := rssKiB(t, d.cmd.Process.Pid)
	grew := (during - before) / 1024
	t.Logf("RSS %d MiB before, %d MiB with %d uploads stalled and %d refused (%d saw the connection reset first)", before/1024, during/1024, limit, refused, reset)
	if reset > refused/2 {
		t.Errorf("%d of %d refused uploads saw a reset, not the 503", reset, refused)
	}
	bound := 40 // MiB: the 16 buffers and what serving 200 requests costs
	if raceDetector && os.Getenv("GLIMPSE_TEST_DAEMON") == "" {
		bound = 160 // the shadow memory of the -race daemon grows with the heap
	}
	if grew > bound {
		t.Errorf("RSS grew by %d MiB with %d uploads stalled", grew, limit)
	}
	for _, w := range writers {
		w.Close()
	}
	all.Wait()
	if ok := strings.Count(fmt.Sprint(codes), "204"); ok != limit {
		t.Errorf("%d stalled uploads ended 204, want %d: %v", ok, limit, codes)
	}
	restRoundTrip(t, d.addr, []byte("after the stall"), nil)
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

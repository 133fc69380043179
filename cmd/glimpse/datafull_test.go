package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestServeDataFilesystemFull: the registry (badger, which writes through
// mmapped files) and the local store share --data, a 96 MiB tmpfs. Two
// concurrent 40 MiB uploads, round after round, with creates carrying
// 60 KB properties hammering the registry all the while: what does not
// fit gets 413 and ends killed (a cp into the mount ENOSPC), every create
// succeeds, and the daemon
// never dies (without the reserve the first full page badger touches is a
// SIGBUS that kills it, mount and REST).
func TestServeDataFilesystemFull(t *testing.T) {
	needMount(t)
	data := smallFilesystem(t, 96<<20)
	mnt := filepath.Join(t.TempDir(), "mnt")
	d := startDaemon(t, data, mnt, "--data-reserve", fmt.Sprint(24<<20))
	r := rest{t: t, base: "http://" + d.addr}
	content := make([]byte, 40<<20)
	rand.Read(content)
	prop := strings.Repeat("v", 60000)
	var created, refusedCreates atomic.Int64
	stored := 0
	for round := range 4 {
		ids := []string{r.create("big-a"), r.create("big-b")}
		codes := make([]int, len(ids))
		var uploads sync.WaitGroup
		for i, id := range ids {
			uploads.Go(func() { codes[i], _ = r.upload(id, bytes.NewReader(content)) })
		}
		done := make(chan struct{})
		var creators sync.WaitGroup
		for range 4 {
			creators.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					req, _ := http.NewRequest("POST", r.base+"/v2/images", strings.NewReader(`{"name": "small", "p": "`+prop+`"}`))
					req.Header.Set("Content-Type", "application/json")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						refusedCreates.Add(1)
						return // the daemon is gone: said below
					}
					resp.Body.Close()
					if resp.StatusCode == http.StatusCreated {
						created.Add(1)
					} else {
						refusedCreates.Add(1)
					}
				}
			})
		}
		uploads.Wait()
		close(done)
		creators.Wait()
		select {
		case err := <-d.exited:
			t.Fatalf("round %d: the daemon died: %v\n%s", round, err, d.log)
		default:
		}
		fits := 0
		for i, code := range codes {
			img := r.image(ids[i])
			switch {
			case code == http.StatusNoContent && img["status"] == "active":
				fits++
			case code == http.StatusRequestEntityTooLarge && img["status"] == "killed":
			default:
				t.Errorf("round %d: upload %d answered %d, image %v", round, i, code, img["status"])
			}
		}
		// Two 40 MiB images never fit in the 72 MiB left above the
		// reserve; racing, both uploads may fail.
		if stored += fits; stored > 1 {
			t.Errorf("round %d: %d 40 MiB images stored in 72 MiB", round, stored)
		}
	}
	if created.Load() == 0 || refusedCreates.Load() != 0 {
		t.Errorf("creates while the filesystem was full: %d made, %d refused or failed", created.Load(), refusedCreates.Load())
	}
	if stored == 0 {
		// Racing, both failed every round; alone, one fits.
		if st, body := r.upload(r.create("alone"), bytes.NewReader(content)); st != http.StatusNoContent {
			t.Errorf("one 40 MiB upload alone: %d %s", st, body)
		}
	}
	// The mount says the same: a copy that does not fit is ENOSPC.
	big := randomFile(t, t.TempDir(), "big.img", 40<<20)
	if out, ok := run(t, "cp", big, filepath.Join(mnt, "active")+"/"); ok || !strings.Contains(out, "No space left on device") {
		t.Errorf("cp onto the full data filesystem: ok=%v %s, want ENOSPC", ok, out)
	}
	select {
	case err := <-d.exited:
		t.Fatalf("the daemon died: %v\n%s", err, d.log)
	default:
	}
	if st, body := r.do("GET", "/healthcheck", "", nil); st != 200 {
		t.Fatalf("healthcheck after the rounds: %d %s", st, body)
	}
	t.Logf("%d creates while the uploads ran; %d big image stored", created.Load(), stored)
	d.stop()
	d = startDaemonREST(t, data, "--data-reserve", fmt.Sprint(24<<20))
	restRoundTrip(t, d.addr, content[:1<<20], nil)
}

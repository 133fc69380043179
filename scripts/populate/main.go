// Command populate fills a stopped daemon's catalogue with many queued
// images, fast: scripts/bench's way to a catalogue of 100,000 images.
// Each image is made by the lifecycle's Create, the call the REST
// listener and the mount make (its validation, policy, indexes and quota
// accounting, one registry transaction per image), from many goroutines at
// once, without HTTP or FUSE in between.
//
//	populate REGISTRY COUNT [WORKERS]
//
// REGISTRY is a badger registry directory (DATA/registry) or an etcd URL
// as serve's --registry. Images are named img000001..imgCOUNT and owned
// by 64 projects in turn, as a shared catalogue's are: all in one project
// filled a 3-member etcd half as fast (160 a second against 320,
// measured; the cause is not pinned down). The elapsed time and the rate
// are printed to stderr.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
	"github.com/glimpse-project/glimpse/meta/kv/etcdkv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "populate:", err)
		os.Exit(1)
	}
}

// projects is how many projects own the images.
const projects = 64

func run(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return fmt.Errorf("usage: populate REGISTRY COUNT [WORKERS]")
	}
	count, err := strconv.Atoi(args[1])
	if err != nil || count <= 0 {
		return fmt.Errorf("COUNT %q: want a positive number", args[1])
	}
	workers := 64
	if len(args) == 3 {
		if workers, err = strconv.Atoi(args[2]); err != nil || workers <= 0 {
			return fmt.Errorf("WORKERS %q: want a positive number", args[2])
		}
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var db kv.KV
	if strings.HasPrefix(args[0], "etcd://") || strings.HasPrefix(args[0], "etcds://") {
		cfg, err := etcdkv.ParseURL(args[0])
		if err != nil {
			return err
		}
		if db, err = etcdkv.Open(ctx, cfg, log); err != nil {
			return err
		}
	} else if db, err = badgerkv.Open(args[0], log); err != nil {
		return err
	}
	defer db.Close()
	store, err := meta.Open(db, meta.WithLogger(log))
	if err != nil {
		return err
	}
	defer store.Close()
	// Creates touch no content; the store is there because the lifecycle
	// needs one.
	spare, err := os.MkdirTemp("", "populate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(spare)
	be, err := local.Open(local.Config{Dir: spare})
	if err != nil {
		return err
	}
	defer be.Close()
	svc := lifecycle.New(lifecycle.Config{Store: store, Backend: be, Logger: log})
	admin := lifecycle.Principal{Project: "admin", Admin: true}

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(count) {
					return
				}
				name := fmt.Sprintf("img%06d", i)
				spec := lifecycle.CreateSpec{Name: name, DiskFormat: "raw", ContainerFormat: "bare", Owner: fmt.Sprintf("project%02d", i%projects)}
				if _, err := svc.Create(ctx, admin, spec); err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					next.Store(int64(count)) // the others stop too
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "populate: %d images in %.1f s (%.0f/s, %d workers)\n", count, secs, float64(count)/secs, workers)
	return nil
}

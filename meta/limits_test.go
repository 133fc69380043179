package meta

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

// A record over MaxRecordBytes is refused with ErrRecordTooLarge on every
// engine, at creation and at update, and nothing changes; one just under
// it is kept.
func TestRecordLimit(t *testing.T) {
	cluster := kvtest.StartEtcd(t, 1)
	check := func(t *testing.T, s *Store) {
		props := func(n int) map[string]string {
			m := map[string]string{}
			for i := 0; i < n; i++ {
				m[fmt.Sprint("p", i)] = strings.Repeat("x", 60000)
			}
			return m
		}
		// 9 values of 60000 bytes are over 512 KiB; 8 are under.
		_, err := s.Create(ctx, &Image{ID: "big", Status: Queued, Properties: props(9)})
		if !errors.Is(err, ErrRecordTooLarge) {
			t.Fatalf("create of a %d-byte record: %v, want ErrRecordTooLarge", 9*60000, err)
		}
		if _, err := s.Get("big"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the refused image exists: %v", err)
		}
		if _, err := s.Create(ctx, &Image{ID: "fits", Status: Queued, Properties: props(8)}); err != nil {
			t.Fatalf("a record under the limit: %v", err)
		}
		_, err = s.Update(ctx, "fits", func(img *Image) error {
			img.Properties["one-more"] = strings.Repeat("y", 60000)
			return nil
		})
		if !errors.Is(err, ErrRecordTooLarge) {
			t.Fatalf("an update past the limit: %v, want ErrRecordTooLarge", err)
		}
		got, err := s.Get("fits")
		if err != nil || len(got.Properties) != 8 {
			t.Fatalf("after the refused update: %d properties, %v", len(got.Properties), err)
		}
	}
	stores(t, check)
	t.Run("etcd", func(t *testing.T) {
		s, err := Open(openEtcd(t, cluster.URL("limits")))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		check(t, s)
	})
}

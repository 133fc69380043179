package metadefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta/kv"
)

// DefinitionFiles lists the *.json files of a Glance metadefs directory
// (/etc/glance/metadefs), or the one file path names, in name order.
func DefinitionFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .json definition files", path)
	}
	sort.Strings(files)
	return files, nil
}

// Load adds one definition file's namespace with its contents, as
// glance-manage db_load_metadefs does without --merge: a namespace that
// already exists is skipped (loaded false) and left as it is. The owner
// is the file's, or "admin"; resource types it creates are protected.
func (s *Service) Load(ctx context.Context, p lifecycle.Principal, raw []byte) (namespace string, loaded bool, err error) {
	d, err := DecodeNamespace(raw)
	if err != nil {
		return "", false, err
	}
	if err := s.authorize(p, policy.AddMetadefNamespace, nil); err != nil {
		return d.Namespace.Namespace, false, err
	}
	if d.Owner == "" {
		d.Owner = "admin"
	}
	if d.Visibility == "" {
		d.Visibility = "private"
	}
	if err := d.Namespace.check(); err != nil {
		return d.Namespace.Namespace, false, err
	}
	if err := checkContents(&d.Contents); err != nil {
		return d.Namespace.Namespace, false, err
	}
	err = s.update(ctx, func(tx kv.Txn) error {
		loaded = false
		if _, err := readNamespace(tx, d.Namespace.Namespace); err == nil {
			return nil // skipped, as glance-manage does
		} else if !errors.Is(err, errNamespaceNotFound) {
			return err
		}
		if _, err := s.insertNamespace(tx, d, true); err != nil {
			return err
		}
		loaded = true
		return nil
	})
	return d.Namespace.Namespace, loaded, err
}

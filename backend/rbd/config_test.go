package rbd

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	env := func(k string) string { return map[string]string{"CEPH_CONF": "/tmp/c/ceph.conf"}[k] }
	cfg, err := ParseURL("rbd://images", env)
	if err != nil || cfg.Pool != "images" || cfg.ConfFile != "/tmp/c/ceph.conf" || cfg.User != "" {
		t.Fatalf("ParseURL: %+v %v", cfg, err)
	}
	cfg, err = ParseURL("rbd://images?user=glance&conf=/etc/ceph/x.conf&namespace=ns1", env)
	if err != nil || cfg.User != "glance" || cfg.ConfFile != "/etc/ceph/x.conf" || cfg.Namespace != "ns1" {
		t.Fatalf("ParseURL with options: %+v %v", cfg, err)
	}
	for raw, want := range map[string]string{
		"swift://c":      "not an rbd",
		"rbd:///":        "names no pool",
		"rbd://pool/img": "has no path",
	} {
		if _, err := ParseURL(raw, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURL(%q) = %v, want an error with %q", raw, err, want)
		}
	}
}

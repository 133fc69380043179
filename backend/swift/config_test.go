package swift

import (
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseURL(t *testing.T) {
	v1 := map[string]string{"ST_AUTH": "http://127.0.0.1:8080/auth/v1.0", "ST_USER": "test:tester", "ST_KEY": "testing", "OS_USERNAME": "ignored"}
	cfg, err := ParseURL("swift://images/glimpse/v1?segment_size=1048576", envOf(v1))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Container != "images" || cfg.Prefix != "glimpse/v1/" || cfg.SegmentSize != 1<<20 ||
		cfg.AuthURL != v1["ST_AUTH"] || cfg.User != "test:tester" || cfg.Key != "testing" || cfg.AuthVersion != 0 {
		t.Fatalf("v1: %+v", cfg)
	}

	v3 := map[string]string{
		"OS_AUTH_URL": "https://keystone.example:5000/v3", "OS_USERNAME": "glance", "OS_PASSWORD": "pw",
		"OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_NAME": "service", "OS_PROJECT_DOMAIN_NAME": "Default",
		"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "internal", "OS_IDENTITY_API_VERSION": "3",
	}
	cfg, err = ParseURL("swift://c", envOf(v3))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Container != "c" || cfg.Prefix != "" || cfg.AuthURL != v3["OS_AUTH_URL"] || cfg.User != "glance" || cfg.Key != "pw" ||
		cfg.UserDomain != "Default" || cfg.Project != "service" || cfg.ProjectDomain != "Default" ||
		cfg.Region != "RegionOne" || cfg.EndpointType != "internal" || cfg.AuthVersion != 3 {
		t.Fatalf("v3: %+v", cfg)
	}
	cfg, err = ParseURL("swift://c", envOf(map[string]string{"OS_TENANT_NAME": "t", "OS_AUTH_URL": "x", "OS_ENDPOINT_TYPE": "publicURL"}))
	if err != nil || cfg.Project != "t" || cfg.EndpointType != "public" {
		t.Fatalf("v2 names: %+v %v", cfg, err)
	}
	cfg, err = ParseURL("swift://c", envOf(map[string]string{"OS_STORAGE_URL": "http://s/v1/AUTH_x", "OS_AUTH_TOKEN": "tok"}))
	if err != nil || cfg.StorageURL == "" || cfg.AuthToken != "tok" {
		t.Fatalf("preauthenticated: %+v %v", cfg, err)
	}

	for raw, want := range map[string]string{
		"s3://b":                    "not a swift",
		"swift:///p":                "names no container",
		"swift://c?segment_size=-1": "segment_size",
		"swift://c?segment_size=x":  "segment_size",
		"swift://c":                 "no credentials",
	} {
		env := envOf(v1)
		if want == "no credentials" {
			env = envOf(nil)
		}
		if _, err := ParseURL(raw, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURL(%q) = %v, want an error with %q", raw, err, want)
		}
	}
}

package s3_test

import (
	"testing"

	"github.com/glimpse-project/glimpse/backend/s3"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseURL(t *testing.T) {
	minioEnv := map[string]string{
		"AWS_ENDPOINT_URL":      "http://127.0.0.1:9000",
		"AWS_ACCESS_KEY_ID":     "ak",
		"AWS_SECRET_ACCESS_KEY": "sk",
		"AWS_REGION":            "eu-west-1",
	}
	for _, c := range []struct {
		url  string
		env  map[string]string
		want s3.Config
	}{
		{"s3://images", nil, s3.Config{Endpoint: "s3.amazonaws.com", Bucket: "images", Secure: true}},
		{"s3://images/glimpse/prod/", minioEnv, s3.Config{
			Endpoint: "127.0.0.1:9000", Bucket: "images", Prefix: "glimpse/prod",
			AccessKey: "ak", SecretKey: "sk", Region: "eu-west-1"}},
		{"s3://bkt?path-style=true&insecure-skip-verify=1",
			map[string]string{"AWS_ENDPOINT_URL": "https://rgw.example:8443", "AWS_DEFAULT_REGION": "default"},
			s3.Config{Endpoint: "rgw.example:8443", Bucket: "bkt", Secure: true, Region: "default", PathStyle: true, InsecureSkipVerify: true}},
		{"s3://bkt?sign-payload=true", map[string]string{"AWS_ENDPOINT_URL": "http://rgw.example"},
			s3.Config{Endpoint: "rgw.example", Bucket: "bkt", SignPayload: true}},
		{"s3://bkt", map[string]string{"AWS_ENDPOINT_URL": "minio.local:9000", "AWS_SESSION_TOKEN": "tok"},
			s3.Config{Endpoint: "minio.local:9000", Bucket: "bkt", Secure: true, SessionToken: "tok"}},
	} {
		got, err := s3.ParseURL(c.url, envOf(c.env))
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.url, got, c.want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, c := range []struct {
		url string
		env map[string]string
	}{
		{"file:///x", nil},
		{"s3://", nil},
		{"s3://Bad_Bucket", nil},
		{"s3://bkt//double", nil},
		{"s3://bkt?colour=red", nil},
		{"s3://bkt?path-style=maybe", nil},
		{"s3://user@bkt", nil},
		{"s3://bkt", map[string]string{"AWS_ENDPOINT_URL": "ftp://host"}},
		{"s3://bkt", map[string]string{"AWS_ENDPOINT_URL": "http://host/path"}},
		{"s3://bkt", map[string]string{"AWS_ACCESS_KEY_ID": "only-half"}},
	} {
		if cfg, err := s3.ParseURL(c.url, envOf(c.env)); err == nil {
			t.Errorf("%s %v: accepted as %+v", c.url, c.env, cfg)
		}
	}
}

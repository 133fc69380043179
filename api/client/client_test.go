package client

import "testing"

func TestErrorMessage(t *testing.T) {
	for body, want := range map[string]string{
		`{"message": "No image found with ID x<br /><br />\n\n\n", "code": "404 Not Found", "title": "Not Found"}`:                         "No image found with ID x",
		`{"error": {"message": "nested", "code": 400}}`:                                                                                    "nested",
		"<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  gone<br /><br />\n</body></html>": "gone",
		"403 Forbidden\n\nno": "403 Forbidden no",
	} {
		if got := errorMessage([]byte(body)); got != want {
			t.Errorf("errorMessage(%q) = %q, want %q", body, got, want)
		}
	}
}

func TestNewStripsVersion(t *testing.T) {
	for in, want := range map[string]string{
		"http://h:9292":       "http://h:9292",
		"http://h:9292/":      "http://h:9292",
		"http://h:9292/v2":    "http://h:9292",
		"http://h:9292/v2.1/": "http://h:9292",
		"http://h/image/v2":   "http://h/image",
	} {
		c, err := New(in, "")
		if err != nil || c.base != want {
			t.Errorf("New(%q): base %q, %v; want %q", in, c.base, err, want)
		}
	}
	if _, err := New("ftp://h", ""); err == nil {
		t.Error("ftp URL accepted")
	}
}

package api_test

import (
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/api"
)

// An HTML error body is webob's, byte for byte: the message escaped as
// webob's html_escape does (&quot; and &#x27; for quotes, numeric
// references beyond ASCII), under Glance's template.
func TestErrorBodyIsWebobs(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	r := e.do("GET", "/v2/images/caf%C3%A9%22%27%3Cx%3E", nil, nil)
	want := "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n" +
		"  No image found with ID caf&#233;&quot;&#x27;&lt;x&gt;<br /><br />\n\n\n\n </body>\n</html>"
	if r.status != 404 || string(r.body) != want {
		t.Fatalf("404 body:\n%q\nwant\n%q", r.body, want)
	}
	// Where Glance's messages for the same errors quote nothing, neither
	// do glimpse's, so the glance CLI (which prints the HTML body's text
	// as it is) shows no entities.
	img := e.create(`{"name": "q", "disk_format": "raw", "container_format": "bare"}`)
	for _, tc := range []struct{ method, path, ct, body string }{
		{"PATCH", "/v2/images/" + img["id"].(string), "application/json", `[]`},
		{"PUT", "/v2/images/" + img["id"].(string) + "/file", "text/plain", `x`},
		{"POST", "/v2/images/" + img["id"].(string) + "/import", "application/json", `{"method": {"name": "web-download", "uri": "ftp://example.com/x"}}`},
		{"PATCH", "/v2/images/" + img["id"].(string), "application/openstack-images-v2.1-json-patch", `[{"op": "add", "path": "/locations/-", "value": {"url": "file:///etc/passwd", "metadata": {}}}]`},
	} {
		hdr := map[string]string{}
		if tc.ct != "" {
			hdr["Content-Type"] = tc.ct
		}
		r := e.do(tc.method, tc.path, hdr, strings.NewReader(tc.body))
		if r.status < 400 || containsEntity(string(r.body)) {
			t.Errorf("%s %s: %d\n%s\nwant an error without HTML entities", tc.method, tc.path, r.status, r.body)
		}
	}
}

func containsEntity(s string) bool { return strings.Contains(s, "&#") || strings.Contains(s, "&quot;") }

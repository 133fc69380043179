package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/convert/converttest"
)

// TestVMDKDescriptorsOnEveryPath: each vmdk text descriptor form that
// qemu probes as a vmdk, its flat extent on /etc/passwd, is refused on
// every way content gets in besides a plain upload (TestHostileImagesOverREST):
// web-download and glance-direct, declared raw, end killed with the reason,
// and an HTTP location is refused and leaves the image queued without it.
func TestVMDKDescriptorsOnEveryPath(t *testing.T) {
	web := backendtest.NewWebOrigin(t)
	e := newEnv(t, 0, api.Options{WebDownloadAllowPrivate: true})
	loc := newLocationEnv(t)
	json := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for i, d := range converttest.VMDKDescriptors("/etc/passwd") {
		url := web.Put(fmt.Sprintf("/desc%d.vmdk", i), d.Data)

		wd := e.create(`{"name": "wd", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
		if r := e.do("POST", "/v2/images/"+wd+"/import", nil, strings.NewReader(json(map[string]any{"method": map[string]string{"name": "web-download", "uri": url}}))); r.status != 202 {
			t.Fatalf("%s: web-download: %d %s", d.Name, r.status, r.body)
		}
		if st := e.waitStatus(wd); st != "killed" {
			t.Errorf("%s: web-download ends %s", d.Name, st)
		}

		gd := e.create(`{"name": "gd", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
		if r := e.do("PUT", "/v2/images/"+gd+"/stage", map[string]string{"Content-Type": "application/octet-stream"}, bytes.NewReader(d.Data)); r.status != 204 {
			t.Fatalf("%s: stage: %d %s", d.Name, r.status, r.body)
		}
		e.do("POST", "/v2/images/"+gd+"/import", map[string]string{"Content-Type": "application/json"}, strings.NewReader(`{"method": {"name": "glance-direct"}}`))
		if st := e.waitStatus(gd); st != "killed" {
			t.Errorf("%s: glance-direct ends %s", d.Name, st)
		}
		for _, id := range []string{wd, gd} {
			if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); !strings.Contains(fmt.Sprint(v["glimpse.error"]), "names other files") {
				t.Errorf("%s: kill reason %v", d.Name, v["glimpse.error"])
			}
		}

		adm := map[string]string{"X-Auth-Token": "adm"}
		r := loc.do("POST", "/v2/images", adm, strings.NewReader(`{"name": "remote", "disk_format": "raw", "container_format": "bare"}`))
		id := r.json(t)["id"].(string)
		r = loc.patchAs("adm", id, `[{"op": "add", "path": "/locations/-", "value": {"url": "`+url+`", "metadata": {}}}]`)
		if r.status < 400 || r.status >= 500 || !strings.Contains(string(r.body), "names other files") {
			t.Errorf("%s: location-add: %d %s", d.Name, r.status, r.body)
		}
		if v := loc.do("GET", "/v2/images/"+id, adm, nil).json(t); v["status"] != "queued" || len(v["locations"].([]any)) != 0 {
			t.Errorf("%s: after the refused location: %v %v", d.Name, v["status"], v["locations"])
		}
	}
}

// Package client is a small client of the Glance Image API v2, as served by
// glimpse (or Glance). It backs glimpse's image-* commands: thin calls
// that return decoded images and errors carrying the server's status and
// message.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Image is an image as the API returns it: Glance's base keys plus custom
// properties, all top-level.
type Image map[string]any

// ID is the image's id.
func (img Image) ID() string { s, _ := img["id"].(string); return s }

// Str returns the string value of key, or "".
func (img Image) Str(key string) string { s, _ := img[key].(string); return s }

// Error is a failed request: the HTTP status and the server's explanation.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// IsStatus reports whether err is an API error with that status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Client talks to one image endpoint.
type Client struct {
	base  string // scheme://host[:port][/prefix], without the version
	token string
	http  *http.Client
}

var (
	versionSuffix = regexp.MustCompile(`/v\d+(\.\d+)?/?$`)
	// webob's HTML error pages repeat the status in <title> and <h1>.
	htmlHeading = regexp.MustCompile(`(?s)<head>.*?</head>|<h1>.*?</h1>`)
	htmlTag     = regexp.MustCompile(`<[^>]*>`)
)

// New returns a client of the endpoint at rawURL (the glance CLI's
// --os-image-url; a trailing /v2 is accepted), sending token as
// X-Auth-Token when it is not empty.
func New(rawURL, token string) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("image URL %q: want http(s)://HOST:PORT", rawURL)
	}
	base := strings.TrimRight(versionSuffix.ReplaceAllString(strings.TrimRight(rawURL, "/"), ""), "/")
	return &Client{base: base, token: token, http: &http.Client{}}, nil
}

// request builds a request; path starts with /v2/.
func (c *Client) request(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	}
	return req, nil
}

// do sends req and returns the response when its status is one of ok;
// otherwise it returns an *Error and closes the body.
func (c *Client) do(req *http.Request, ok ...int) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return nil, &Error{Status: resp.StatusCode, Message: errorMessage(raw)}
}

// errorMessage extracts the explanation from a Glance error body (JSON,
// flat or nested, HTML or text).
func errorMessage(raw []byte) string {
	var flat struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &flat) == nil && flat.Message != "" {
		return cleanMessage(flat.Message)
	}
	var nested map[string]struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &nested) == nil {
		for _, v := range nested {
			if v.Message != "" {
				return cleanMessage(v.Message)
			}
		}
	}
	s := htmlHeading.ReplaceAllString(string(raw), " ")
	s = htmlTag.ReplaceAllString(s, " ")
	return cleanMessage(html.UnescapeString(s))
}

func cleanMessage(s string) string {
	s = strings.ReplaceAll(s, "<br />", " ")
	return strings.Join(strings.Fields(s), " ")
}

func (c *Client) jsonCall(ctx context.Context, method, path, contentType string, in, out any, ok ...int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.request(ctx, method, path, body, contentType)
	if err != nil {
		return err
	}
	resp, err := c.do(req, ok...)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad JSON in the answer: %w", method, path, err)
	}
	return nil
}

func imagePath(id string) string { return "/v2/images/" + url.PathEscape(id) }

// Create registers an image with the given fields (name, disk_format,
// custom properties, ...).
func (c *Client) Create(ctx context.Context, fields map[string]any) (Image, error) {
	var img Image
	err := c.jsonCall(ctx, http.MethodPost, "/v2/images", "application/json", fields, &img, http.StatusCreated)
	return img, err
}

// Get returns image id.
func (c *Client) Get(ctx context.Context, id string) (Image, error) {
	var img Image
	err := c.jsonCall(ctx, http.MethodGet, imagePath(id), "", nil, &img, http.StatusOK)
	return img, err
}

// List calls fn for every image matching query, following the next
// links; limit > 0 stops after that many.
func (c *Client) List(ctx context.Context, query url.Values, limit int, fn func(Image) error) error {
	path := "/v2/images"
	if enc := query.Encode(); enc != "" {
		path += "?" + enc
	}
	seen := 0
	for path != "" {
		var page struct {
			Images []Image `json:"images"`
			Next   string  `json:"next"`
		}
		if err := c.jsonCall(ctx, http.MethodGet, path, "", nil, &page, http.StatusOK); err != nil {
			return err
		}
		for _, img := range page.Images {
			if limit > 0 && seen >= limit {
				return nil
			}
			seen++
			if err := fn(img); err != nil {
				return err
			}
		}
		if len(page.Images) == 0 || !strings.HasPrefix(page.Next, "/v2/") {
			break
		}
		path = page.Next
	}
	return nil
}

// PatchOp is one JSON-patch change.
type PatchOp struct {
	Op    string
	Path  string
	Value any // not sent for "remove"
}

// MarshalJSON sends value for every op but remove, even when it is a zero
// value (min_ram 0, protected false).
func (o PatchOp) MarshalJSON() ([]byte, error) {
	m := map[string]any{"op": o.Op, "path": o.Path}
	if o.Op != "remove" {
		m["value"] = o.Value
	}
	return json.Marshal(m)
}

// Patch applies ops to image id and returns the image after.
func (c *Client) Patch(ctx context.Context, id string, ops []PatchOp) (Image, error) {
	var img Image
	if ops == nil {
		ops = []PatchOp{}
	}
	err := c.jsonCall(ctx, http.MethodPatch, imagePath(id), "application/openstack-images-v2.1-json-patch", ops, &img, http.StatusOK)
	return img, err
}

// Upload sends the content of image id, streaming r (size < 0: unknown,
// sent chunked).
func (c *Client) Upload(ctx context.Context, id string, r io.Reader, size int64) error {
	req, err := c.request(ctx, http.MethodPut, imagePath(id)+"/file", r, "application/octet-stream")
	if err != nil {
		return err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	resp, err := c.do(req, http.StatusNoContent, http.StatusOK)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Download opens the content of image id. The caller closes it; size is
// -1 when unknown and md5 is the server's Content-MD5 (hex), if any. An
// image without data is an *Error with status 204.
func (c *Client) Download(ctx context.Context, id string) (rc io.ReadCloser, size int64, md5 string, err error) {
	req, err := c.request(ctx, http.MethodGet, imagePath(id)+"/file", nil, "")
	if err != nil {
		return nil, 0, "", err
	}
	resp, err := c.do(req, http.StatusOK, http.StatusNoContent)
	if err != nil {
		return nil, 0, "", err
	}
	if resp.StatusCode == http.StatusNoContent {
		resp.Body.Close()
		return nil, 0, "", &Error{Status: http.StatusNoContent, Message: fmt.Sprintf("image %s has no data", id)}
	}
	return resp.Body, resp.ContentLength, resp.Header.Get("Content-MD5"), nil
}

// Delete removes image id.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.jsonCall(ctx, http.MethodDelete, imagePath(id), "", nil, nil, http.StatusNoContent, http.StatusOK)
}

// AddTag tags image id.
func (c *Client) AddTag(ctx context.Context, id, tag string) error {
	return c.jsonCall(ctx, http.MethodPut, imagePath(id)+"/tags/"+url.PathEscape(tag), "", nil, nil, http.StatusNoContent)
}

// RemoveTag removes a tag from image id.
func (c *Client) RemoveTag(ctx context.Context, id, tag string) error {
	return c.jsonCall(ctx, http.MethodDelete, imagePath(id)+"/tags/"+url.PathEscape(tag), "", nil, nil, http.StatusNoContent)
}

// Deactivate and Reactivate run the image actions (admins only).
func (c *Client) Deactivate(ctx context.Context, id string) error {
	return c.jsonCall(ctx, http.MethodPost, imagePath(id)+"/actions/deactivate", "", nil, nil, http.StatusNoContent)
}

func (c *Client) Reactivate(ctx context.Context, id string) error {
	return c.jsonCall(ctx, http.MethodPost, imagePath(id)+"/actions/reactivate", "", nil, nil, http.StatusNoContent)
}

// ImportWebDownload asks the server to fetch uri into queued image id; the
// server answers at once and imports in the background.
func (c *Client) ImportWebDownload(ctx context.Context, id, uri string) error {
	body := map[string]any{"method": map[string]string{"name": "web-download", "uri": uri}}
	return c.jsonCall(ctx, http.MethodPost, imagePath(id)+"/import", "application/json", body, nil, http.StatusAccepted)
}

// Scrub asks the daemon to re-hash stored content (glimpse's own endpoint,
// admins only); with mark, damaged images are deactivated. The report is
// decoded into out.
func (c *Client) Scrub(ctx context.Context, mark bool, out any) error {
	return c.jsonCall(ctx, http.MethodPost, "/v2/glimpse/scrub?mark="+strconv.FormatBool(mark), "", nil, out, http.StatusOK)
}

// GC asks the daemon to remove stored objects no image owns and stale
// incomplete writes (glimpse's own endpoint, admins only). The report is
// decoded into out.
func (c *Client) GC(ctx context.Context, dryRun bool, out any) error {
	return c.jsonCall(ctx, http.MethodPost, "/v2/glimpse/gc?dry_run="+strconv.FormatBool(dryRun), "", nil, out, http.StatusOK)
}

// AddLocation registers url as where queued image id's content stays
// (JSON patch add /locations/-, as glance location-add sends it) and
// returns the image after.
func (c *Client) AddLocation(ctx context.Context, id, url string, metadata map[string]any) (Image, error) {
	return c.AddLocationValidated(ctx, id, url, metadata, nil)
}

// AddLocationValidated is AddLocation with validation data (checksum,
// os_hash_algo, os_hash_value) the content must match.
func (c *Client) AddLocationValidated(ctx context.Context, id, url string, metadata map[string]any, validation map[string]string) (Image, error) {
	if metadata == nil {
		metadata = map[string]any{}
	}
	value := map[string]any{"url": url, "metadata": metadata}
	if len(validation) > 0 {
		value["validation_data"] = validation
	}
	return c.Patch(ctx, id, []PatchOp{{Op: "add", Path: "/locations/-", Value: value}})
}

// locations returns image id and the URLs of its locations, in order.
func (c *Client) locations(ctx context.Context, id string) (Image, []map[string]any, error) {
	img, err := c.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	raw, ok := img["locations"].([]any)
	if !ok {
		return nil, nil, &Error{Status: http.StatusForbidden, Message: fmt.Sprintf("the locations of image %s are not shown to this caller", id)}
	}
	var locs []map[string]any
	for _, l := range raw {
		if m, ok := l.(map[string]any); ok {
			locs = append(locs, m)
		}
	}
	return img, locs, nil
}

// DeleteLocations removes the locations with the URLs from image id, as
// glance location-delete does (one remove /locations/N per URL, highest
// index first). A URL the image does not have is a 404 and removes
// nothing.
func (c *Client) DeleteLocations(ctx context.Context, id string, urls []string) error {
	_, locs, err := c.locations(ctx, id)
	if err != nil {
		return err
	}
	var indices []int
	for _, u := range urls {
		i := slices.IndexFunc(locs, func(l map[string]any) bool { return l["url"] == u })
		if i < 0 {
			return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("Unknown URL(s): %s", u)}
		}
		if !slices.Contains(indices, i) {
			indices = append(indices, i)
		}
	}
	slices.Sort(indices)
	slices.Reverse(indices)
	ops := make([]PatchOp, 0, len(indices))
	for _, i := range indices {
		ops = append(ops, PatchOp{Op: "remove", Path: "/locations/" + strconv.Itoa(i)})
	}
	_, err = c.Patch(ctx, id, ops)
	return err
}

// UpdateLocation sets the metadata of image id's location url, as glance
// location-update does (replace /locations with the whole list).
func (c *Client) UpdateLocation(ctx context.Context, id, url string, metadata map[string]any) (Image, error) {
	img, locs, err := c.locations(ctx, id)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(locs, func(l map[string]any) bool { return l["url"] == url })
	if i < 0 {
		return nil, &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("Unknown URL: %s, the URL must be one of existing locations of current image", url)}
	}
	if metadata == nil {
		metadata = map[string]any{}
	}
	if reflect.DeepEqual(locs[i]["metadata"], metadata) {
		return img, nil
	}
	value := make([]any, len(locs))
	for j, l := range locs {
		value[j] = map[string]any{"url": l["url"], "metadata": l["metadata"]}
	}
	value[i] = map[string]any{"url": url, "metadata": metadata}
	return c.Patch(ctx, id, []PatchOp{{Op: "replace", Path: "/locations", Value: value}})
}

// Stage uploads the content of image id to its staging area (glance-direct,
// first half), streaming r (size < 0: unknown, sent chunked).
func (c *Client) Stage(ctx context.Context, id string, r io.Reader, size int64) error {
	req, err := c.request(ctx, http.MethodPut, imagePath(id)+"/stage", r, "application/octet-stream")
	if err != nil {
		return err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	resp, err := c.do(req, http.StatusNoContent)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Import starts the import of image id with method (glance-direct of what
// was staged, or web-download of uri).
func (c *Client) Import(ctx context.Context, id, method, uri string) error {
	m := map[string]string{"name": method}
	if uri != "" {
		m["uri"] = uri
	}
	return c.jsonCall(ctx, http.MethodPost, imagePath(id)+"/import", "application/json", map[string]any{"method": m}, nil, http.StatusAccepted)
}

package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// CreateMetadefNamespace creates a metadefs namespace from its JSON body
// (a Glance definition file is one), contents included.
func (c *Client) CreateMetadefNamespace(ctx context.Context, body json.RawMessage) error {
	return c.jsonCall(ctx, http.MethodPost, "/v2/metadefs/namespaces", "application/json", body, nil, http.StatusCreated)
}

// MetadefNamespaceExists reports whether the namespace exists (and the
// caller can see it).
func (c *Client) MetadefNamespaceExists(ctx context.Context, namespace string) (bool, error) {
	err := c.jsonCall(ctx, http.MethodGet, "/v2/metadefs/namespaces/"+url.PathEscape(namespace), "", nil, nil, http.StatusOK)
	if IsStatus(err, http.StatusNotFound) {
		return false, nil
	}
	return err == nil, err
}

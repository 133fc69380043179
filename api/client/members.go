package client

import (
	"context"
	"net/http"
	"net/url"
)

// Member is one project an image is shared with, as the API returns it.
type Member struct {
	ImageID   string `json:"image_id"`
	MemberID  string `json:"member_id"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	Schema    string `json:"schema"`
}

func memberPath(id, member string) string {
	return imagePath(id) + "/members/" + url.PathEscape(member)
}

// AddMember shares image id with project member (Glance answers 200).
func (c *Client) AddMember(ctx context.Context, id, member string) (Member, error) {
	var m Member
	err := c.jsonCall(ctx, http.MethodPost, imagePath(id)+"/members", "application/json", map[string]string{"member": member}, &m, http.StatusOK)
	return m, err
}

// Members lists the members of image id that the caller may see.
func (c *Client) Members(ctx context.Context, id string) ([]Member, error) {
	var body struct {
		Members []Member `json:"members"`
	}
	err := c.jsonCall(ctx, http.MethodGet, imagePath(id)+"/members", "", nil, &body, http.StatusOK)
	return body.Members, err
}

// GetMember returns the membership of project member in image id.
func (c *Client) GetMember(ctx context.Context, id, member string) (Member, error) {
	var m Member
	err := c.jsonCall(ctx, http.MethodGet, memberPath(id, member), "", nil, &m, http.StatusOK)
	return m, err
}

// UpdateMember sets the status (pending, accepted, rejected) of project
// member's membership in image id.
func (c *Client) UpdateMember(ctx context.Context, id, member, status string) (Member, error) {
	var m Member
	err := c.jsonCall(ctx, http.MethodPut, memberPath(id, member), "application/json", map[string]string{"status": status}, &m, http.StatusOK)
	return m, err
}

// RemoveMember stops sharing image id with project member.
func (c *Client) RemoveMember(ctx context.Context, id, member string) error {
	return c.jsonCall(ctx, http.MethodDelete, memberPath(id, member), "", nil, nil, http.StatusNoContent)
}

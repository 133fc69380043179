package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/meta"
)

// VirtualDisk is the guest's view of an active image: its content read
// through the format's random-access reader (qcow2 clusters, vmdk grains,
// vdi and vhd blocks), over the store's ranged reads, never whole.
type VirtualDisk struct {
	convert.Image
	content backend.Reader
}

// Close releases the stored content the disk reads from.
func (d *VirtualDisk) Close() error { return d.content.Close() }

// OpenVirtualDisk opens the virtual disk of active image id, if the caller
// may download the image. Only active images have one: deactivated content
// is refused as Open refuses it (ErrForbidden), and an image in any other
// status is ErrNotFound, since no raw view lists it.
//
// cache, if not nil, keeps the disk's decompressed clusters and format
// tables, shared by every disk opened with it.
func OpenVirtualDisk(ctx context.Context, s *Service, p Principal, id string, cache *convert.BlockCache) (*VirtualDisk, *meta.Image, error) {
	content, img, err := s.Open(ctx, p, id, OpenOptions{})
	if err != nil {
		return nil, nil, err
	}
	if img.Status != meta.Active {
		content.Close()
		return nil, nil, fmt.Errorf("virtual disk of image %s, which is %s: %w", id, img.Status, ErrNotFound)
	}
	// An active image's content never changes: its id and hash name it.
	key := img.ID + "/" + img.OSHashValue
	disk, err := convert.OpenWith(content, content.Size(), diskFormatToRead(img.DiskFormat), convert.OpenOptions{Cache: cache, Key: key})
	if err != nil {
		content.Close()
		if errors.Is(err, convert.ErrUnsafe) || errors.Is(err, convert.ErrCorrupt) || errors.Is(err, convert.ErrUnsupported) {
			return nil, nil, fmt.Errorf("%w: virtual disk of image %s: %w", ErrUnreadableDisk, id, err)
		}
		return nil, nil, fmt.Errorf("virtual disk of image %s: %w", id, storeError(err))
	}
	return &VirtualDisk{Image: disk, content: content}, img, nil
}

// ErrUnreadableDisk: the stored content cannot be read as the virtual
// disk its format describes (a format or feature the readers lack, or
// content that upload inspection would refuse today).
var ErrUnreadableDisk = errors.New("virtual disk cannot be read")

// diskFormatToRead is the format convert.Open reads an image as: its
// declared disk_format, which upload inspection checked against the
// content, except that raw, iso and the formats without a header (aki,
// ari, ami) are read as plain bytes, and an undeclared format is detected.
func diskFormatToRead(diskFormat string) string {
	switch diskFormat {
	case convert.Raw, convert.ISO, "aki", "ari", "ami":
		return convert.Raw
	}
	return diskFormat
}

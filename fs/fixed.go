package fs

import (
	"context"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fixedDir is what every directory of the mount has in common: the daemon
// makes them, users do not. Their mode, owner and times are the daemon's,
// and a change to them (rsync -a, cp -a or tar setting those of `.`) is
// accepted and ignored, as it is for images. Making or removing
// directories, links and special files is refused with EPERM, what
// mkdir(2), rmdir(2), link(2), symlink(2) and mknod(2) answer on a
// filesystem that does not support them.
type fixedDir struct {
	noProperties
	root  *Root
	ino   uint64
	nlink uint32 // 2, plus one per subdirectory
}

func (d *fixedDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.root.dirAttr(&out.Attr, d.ino, d.nlink)
	return 0
}

func (d *fixedDir) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return d.Getattr(ctx, f, out)
}

func (d *fixedDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *fixedDir) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (d *fixedDir) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *fixedDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *fixedDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Directories have no properties: no user.* attributes (ENODATA to read,
// EOPNOTSUPP to set, so cp -a of a tree skips them quietly), and, as
// images, no ACLs or labels (EOPNOTSUPP, which tells cp -a and tar that
// this filesystem has no ACLs to copy or remove).

// noProperties is the reading half of the attributes of an entry with no
// properties of its own (directories, raw/): no user.* attribute
// (ENODATA), and no ACLs or labels (EOPNOTSUPP). Each kind says itself
// how setting one fails.
type noProperties struct{}

func (noProperties) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if strings.HasPrefix(attr, userPrefix) {
		return 0, syscall.ENODATA
	}
	return 0, syscall.EOPNOTSUPP
}

func (noProperties) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, 0
}

func (d *fixedDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EOPNOTSUPP
}

func (d *fixedDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if strings.HasPrefix(attr, userPrefix) {
		return syscall.ENODATA
	}
	return syscall.EOPNOTSUPP
}

// dotEntries are the `.` and `..` every listing starts with (go-fuse
// leaves them to the filesystem; readdir(3) users expect them).
func dotEntries(self, parent uint64) []fuse.DirEntry {
	return []fuse.DirEntry{
		{Name: ".", Mode: syscall.S_IFDIR, Ino: self},
		{Name: "..", Mode: syscall.S_IFDIR, Ino: parent},
	}
}

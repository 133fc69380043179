package fs

import gofs "github.com/hanwen/go-fuse/v2/fs"

// The go-fuse interfaces each node and handle type implements, in one place
// (gocryptfs's node_api_check.go): a missing method is a compile error, not
// a silently default behaviour.
var (
	_ gofs.NodeOnAdder   = (*Root)(nil)
	_ gofs.NodeGetattrer = (*Root)(nil)
	_ gofs.NodeSetattrer = (*Root)(nil)
	_ gofs.NodeRmdirer   = (*Root)(nil)
	_ gofs.NodeLinker    = (*Root)(nil)
	_ gofs.NodeSymlinker = (*Root)(nil)
	_ gofs.NodeMknoder   = (*Root)(nil)
	_ gofs.NodeStatfser  = (*Root)(nil)
	_ gofs.NodeReaddirer = (*Root)(nil)
	_ gofs.NodeCreater   = (*Root)(nil)
	_ gofs.NodeUnlinker  = (*Root)(nil)
	_ gofs.NodeRenamer   = (*Root)(nil)

	// Every directory: fixed attributes, no directories, links or nodes
	// made or removed by users.
	_ gofs.NodeGetattrer     = (*fixedDir)(nil)
	_ gofs.NodeSetattrer     = (*fixedDir)(nil)
	_ gofs.NodeMkdirer       = (*fixedDir)(nil)
	_ gofs.NodeRmdirer       = (*fixedDir)(nil)
	_ gofs.NodeMknoder       = (*fixedDir)(nil)
	_ gofs.NodeLinker        = (*fixedDir)(nil)
	_ gofs.NodeSymlinker     = (*fixedDir)(nil)
	_ gofs.NodeGetxattrer    = (*fixedDir)(nil)
	_ gofs.NodeListxattrer   = (*fixedDir)(nil)
	_ gofs.NodeSetxattrer    = (*fixedDir)(nil)
	_ gofs.NodeRemovexattrer = (*fixedDir)(nil)

	_ gofs.NodeGetattrer = (*idsDir)(nil)
	_ gofs.NodeSetattrer = (*idsDir)(nil)
	_ gofs.NodeRmdirer   = (*idsDir)(nil)
	_ gofs.NodeLinker    = (*idsDir)(nil)
	_ gofs.NodeSymlinker = (*idsDir)(nil)
	_ gofs.NodeMknoder   = (*idsDir)(nil)
	_ gofs.NodeLookuper  = (*idsDir)(nil)
	_ gofs.NodeReaddirer = (*idsDir)(nil)
	_ gofs.NodeUnlinker  = (*idsDir)(nil)
	_ gofs.NodeRenamer   = (*idsDir)(nil)
	_ gofs.NodeCreater   = (*idsDir)(nil)
	_ gofs.NodeMkdirer   = (*idsDir)(nil)

	_ gofs.NodeGetattrer = (*statusDir)(nil)
	_ gofs.NodeSetattrer = (*statusDir)(nil)
	_ gofs.NodeRmdirer   = (*statusDir)(nil)
	_ gofs.NodeLinker    = (*statusDir)(nil)
	_ gofs.NodeSymlinker = (*statusDir)(nil)
	_ gofs.NodeMknoder   = (*statusDir)(nil)
	_ gofs.NodeLookuper  = (*statusDir)(nil)
	_ gofs.NodeReaddirer = (*statusDir)(nil)
	_ gofs.NodeCreater   = (*statusDir)(nil)
	_ gofs.NodeMkdirer   = (*statusDir)(nil)
	_ gofs.NodeUnlinker  = (*statusDir)(nil)
	_ gofs.NodeRenamer   = (*statusDir)(nil)

	_ gofs.NodeOpendirHandler = (*statusDir)(nil)
	_ gofs.FileReaddirenter   = (*statusDirHandle)(nil)
	_ gofs.FileSeekdirer      = (*statusDirHandle)(nil)
	_ gofs.FileReleasedirer   = (*statusDirHandle)(nil)
	_ gofs.FileLookuper       = (*statusDirHandle)(nil)

	_ gofs.NodeGetattrer     = (*imageNode)(nil)
	_ gofs.NodeSetattrer     = (*imageNode)(nil)
	_ gofs.NodeOpener        = (*imageNode)(nil)
	_ gofs.NodeReader        = (*imageNode)(nil)
	_ gofs.NodeWriter        = (*imageNode)(nil)
	_ gofs.NodeFlusher       = (*imageNode)(nil)
	_ gofs.NodeReleaser      = (*imageNode)(nil)
	_ gofs.NodeFsyncer       = (*imageNode)(nil)
	_ gofs.NodeGetxattrer    = (*imageNode)(nil)
	_ gofs.NodeSetxattrer    = (*imageNode)(nil)
	_ gofs.NodeListxattrer   = (*imageNode)(nil)
	_ gofs.NodeRemovexattrer = (*imageNode)(nil)
	_ gofs.NodeOnForgetter   = (*imageNode)(nil)

	_ gofs.NodeGetxattrer    = (*rawNode)(nil)
	_ gofs.NodeListxattrer   = (*rawNode)(nil)
	_ gofs.NodeSetxattrer    = (*rawNode)(nil)
	_ gofs.NodeRemovexattrer = (*rawNode)(nil)

	_ gofs.FilePassthroughFder = (*readHandle)(nil)
)

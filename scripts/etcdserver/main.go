// Command etcdserver is etcd's own server, built at the version pinned in
// this module's go.mod. It exists because the server module cannot be
// `go install`ed directly (its go.mod has replace directives), and it lives
// in its own module so that glimpse's go.mod never pulls in the server.
// scripts/etcd builds and runs it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }

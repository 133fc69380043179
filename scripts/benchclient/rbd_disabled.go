//go:build !ceph

package main

import "errors"

func rbdPut(file, pool, image string) (int64, error) {
	return 0, errors.New("built without RBD: go build -tags ceph,pacific ./scripts/benchclient")
}

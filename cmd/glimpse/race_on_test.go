//go:build race

package main

// raceDetector: this test binary, which tests run as the daemon, carries
// the race detector, whose shadow memory inflates RSS figures.
const raceDetector = true

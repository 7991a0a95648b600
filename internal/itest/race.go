//go:build race

package itest

// raceEnabled: the test binary runs with the race detector, so the boxtap
// binary the tests run is built with it too. A race in boxtap then makes it
// print "WARNING: DATA RACE" and exit 66, which fails the test that ran it.
const raceEnabled = true

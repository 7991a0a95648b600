//go:build !race

package itest

// raceEnabled: see race.go.
const raceEnabled = false

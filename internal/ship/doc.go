// Package ship holds the tests of how boxtap is installed and shipped: the Go toolchain
// bootstrap (scripts/go-toolchain.sh), make release and make image. It has no code of its own.
package ship

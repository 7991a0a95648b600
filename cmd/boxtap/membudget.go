package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// minMemoryBudget leaves room for the binary, the ring buffer and the Go
// runtime besides the parser state.
const minMemoryBudget = 32 << 20

// defaultMemoryBudget is --memory-budget's default, for the commands that
// fill their flags in code (demo, the runc wrapper's hooks); the flags' own
// default tags say the same.
const defaultMemoryBudget = "192MiB"

// parseMemoryBudget reads a size such as "192MiB", "1GiB", "200M" or a
// number of bytes.
func parseMemoryBudget(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"G", 1 << 30}, {"MiB", 1 << 20}, {"M", 1 << 20}, {"KiB", 1 << 10}, {"K", 1 << 10}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult || n*mult < minMemoryBudget {
		return 0, fmt.Errorf("--memory-budget %q: give a size of at least 32MiB, e.g. 192MiB or 1GiB", s)
	}
	return n * mult, nil
}

// applyMemoryBudget makes the Go runtime collect harder as the process nears
// budget and returns the share of it that parser state and buffered
// segments may hold: a third, because a collected heap may grow to twice
// what is live, and the binary, the ring buffer and the runtime need the rest.
func applyMemoryBudget(budget int64) (stateBudget int64) {
	debug.SetMemoryLimit(budget - budget/8)
	return budget / 3
}

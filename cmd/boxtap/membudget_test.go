package main

import (
	"strings"
	"testing"
)

func TestParseMemoryBudget(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"192MiB", 192 << 20, true},
		{"1GiB", 1 << 30, true},
		{"200M", 200 << 20, true},
		{" 64MiB ", 64 << 20, true},
		{"33554432", 32 << 20, true},
		{"16MiB", 0, false},
		{"0", 0, false},
		{"-1GiB", 0, false},
		{"lots", 0, false},
		{"99999999999GiB", 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		got, err := parseMemoryBudget(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMemoryBudget(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseMemoryBudget(f *testing.F) {
	for _, s := range []string{"192MiB", "1GiB", "200M", "33554432", "16MiB", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseMemoryBudget(s)
		if err == nil && (n < minMemoryBudget || n > 1<<40) {
			t.Fatalf("parseMemoryBudget(%q) = %d, outside [32MiB, 1TiB]", s, n)
		}
		if err != nil && (n != 0 || !strings.Contains(err.Error(), "--memory-budget")) {
			t.Fatalf("parseMemoryBudget(%q): %d, %v: the error must name the flag", s, n, err)
		}
	})
}

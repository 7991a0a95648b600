package main

import (
	"slices"
	"strings"
	"testing"
)

// The wrapper passes --max-size and --max-files through to the hooks it
// writes, and pins the hooks' runtime to Docker (whose containers alone it
// runs), so that no annotation decides whose keys name the container.
func TestRuncWrapperPassesSinkOptionsToItsHooks(t *testing.T) {
	o, rest, err := parseRuncOptions([]string{"--output-dir=/var/log/bx", "--max-size", "50M", "--max-files=2", "--root", "/run/x", "create", "id"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rest, []string{"--root", "/run/x", "create", "id"}) {
		t.Errorf("runc's arguments: %q", rest)
	}
	hooks := runcHooks("/usr/local/bin/boxtap", &o.hookSettings)
	for _, h := range append(hooks.CreateRuntime, hooks.Poststop...) {
		for _, want := range []string{"--max-size=52428800", "--max-files=2", "--runtime=docker", "--output-dir=/var/log/bx"} {
			if !slices.Contains(h.Args, want) {
				t.Errorf("hook %q lacks %s", h.Args, want)
			}
		}
	}
	for _, bad := range [][]string{{"--max-size=lots"}, {"--max-files=-1"}, {"--max-files"}} {
		if _, _, err := parseRuncOptions(bad); err == nil || !strings.Contains(err.Error(), strings.SplitN(strings.TrimPrefix(bad[0], "--"), "=", 2)[0]) {
			t.Errorf("parseRuncOptions(%q) = %v, want an error naming the flag", bad, err)
		}
	}
}

// --tls is the wrapper's own flag (runc has none of that name) and reaches
// both hooks it writes.
func TestRuncWrapperPassesTLSToItsHooks(t *testing.T) {
	o, rest, err := parseRuncOptions([]string{"--tls", "--root", "/run/x", "create", "id"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rest, []string{"--root", "/run/x", "create", "id"}) {
		t.Errorf("runc's arguments: %q", rest)
	}
	hooks := runcHooks("/usr/local/bin/boxtap", &o.hookSettings)
	for _, h := range append(hooks.CreateRuntime, hooks.Poststop...) {
		if !slices.Contains(h.Args, "--tls") {
			t.Errorf("hook %q lacks --tls", h.Args)
		}
	}
	o, _, err = parseRuncOptions([]string{"create", "id"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range runcHooks("/usr/local/bin/boxtap", &o.hookSettings).CreateRuntime {
		if slices.Contains(h.Args, "--tls") {
			t.Errorf("hook %q has --tls that was not asked for", h.Args)
		}
	}
}

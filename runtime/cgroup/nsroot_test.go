package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveAcrossNamespaces(t *testing.T) {
	for _, tc := range []struct {
		root, rel, want, err string
	}{
		{root: "/", rel: "/docker/abc", want: "/docker/abc"},
		{root: "/kubepods/burstable/podA/cri-containerd-1.scope", rel: "/", want: "/kubepods/burstable/podA/cri-containerd-1.scope"},
		{root: "/kubepods/burstable/podA/cri-containerd-1.scope", rel: "/../../podB/cri-containerd-2.scope", want: "/kubepods/burstable/podB/cri-containerd-2.scope"},
		{root: "/kubepods/burstable/podA/cri-containerd-1.scope", rel: "/../../../../init.scope", want: "/init.scope"},
		{root: "/kubepods/podA", rel: "/../../../x", err: "leaves the hierarchy"},
		{root: "/a", rel: "/b/../../..", err: "leaves the hierarchy"},
		{root: "a", rel: "/b", err: "must be absolute"},
	} {
		got, err := Resolve(tc.root, tc.rel)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%q, %q) = %q, %v; want error %q", tc.root, tc.rel, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tc.root, tc.rel, got, err, tc.want)
		}
	}
}

func TestLeadingUps(t *testing.T) {
	for p, want := range map[string]int{"/": 0, "/init.scope": 0, "/..": 1, "/../../..": 3, "/../../init.scope": 2, "/a/..": 0} {
		if got := leadingUps(p); got != want {
			t.Errorf("leadingUps(%q) = %d, want %d", p, got, want)
		}
	}
}

// A fake hierarchy: the namespace root is the one directory at the depth
// given whose sub-cgroup lists the PID.
func TestFindNamespaceRoot(t *testing.T) {
	mount := t.TempDir()
	mk := func(rel, procs string) {
		dir := filepath.Join(mount, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("kubepods/burstable/podA/ctr1", "11\n12\n")
	mk("kubepods/burstable/podB/ctr2", "4242\n")
	mk("kubepods/burstable/podB/ctr2/sub", "77\n")
	mk("system.slice/x/y/z", "4243\n")
	got, err := findNamespaceRoot(mount, 4, "/", 4242)
	if err != nil || got != "/kubepods/burstable/podB/ctr2" {
		t.Fatalf("findNamespaceRoot = %q, %v", got, err)
	}
	got, err = findNamespaceRoot(mount, 4, "/sub", 77)
	if err != nil || got != "/kubepods/burstable/podB/ctr2" {
		t.Fatalf("findNamespaceRoot with a sub-cgroup = %q, %v", got, err)
	}
	if got, err := findNamespaceRoot(mount, 4, "/", 999); err == nil || !strings.Contains(err.Error(), "hostPID") {
		t.Fatalf("an absent PID: %q, %v; want an error naming the fix", got, err)
	}
	if _, err := findNamespaceRoot(mount, maxNamespaceDepth+1, "/", 1); err == nil {
		t.Fatal("no error for a depth past the bound")
	}
}

func FuzzResolve(f *testing.F) {
	f.Add("/a/b", "/../c")
	f.Add("/", "/..")
	f.Fuzz(func(t *testing.T, root, rel string) {
		got, err := Resolve(root, rel)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "/../") || strings.HasSuffix(got, "/..") {
			t.Fatalf("Resolve(%q, %q) = %q: not a clean absolute path", root, rel, got)
		}
	})
}

package cgroup

import (
	"path/filepath"
	"strings"
	"testing"
)

func FuzzFindV2Mount(f *testing.F) {
	f.Add(hybridMountinfo)
	f.Add("30 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n")
	f.Add(`30 23 0:26 / /mnt/my\040cg rw - cgroup2 none rw` + "\n")
	f.Add("50 23 0:26 /docker/abc /x rw - cgroup2 cgroup2 rw\n")
	f.Add("1 2 3 4 5 6 - \n- - - - - - - cgroup2")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := FindV2Mount(strings.NewReader(in))
		if err != nil {
			return
		}
		if !filepath.IsAbs(got) {
			t.Fatalf("mount point %q is not absolute", got)
		}
		// The result must be (the unescaped form of) a field of the input,
		// on a line that declares a cgroup2 file system.
		found := false
		for _, line := range strings.Split(in, "\n") {
			if !strings.Contains(line, "cgroup2") {
				continue
			}
			for _, field := range strings.Fields(line) {
				if unescapeOctal(field) == got {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("mount point %q does not appear on a cgroup2 line of the input", got)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add("0::/docker/abc\n")
	f.Add("9:name=systemd:/x\n1:cpu:/\n0::/system.slice/a.scope\n")
	f.Add("0:cpu:/x\n0::relative\n")
	f.Add("0::/a:b")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseProcCgroup(strings.NewReader(in))
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "\n") {
			t.Fatalf("path %q is not a single absolute path", got)
		}
		if !strings.Contains("\n"+in, "\n0::"+got) {
			t.Fatalf("path %q is not from a 0:: line of the input", got)
		}
	})
}

func FuzzExpandSystemd(f *testing.F) {
	for _, s := range []string{
		"system.slice:docker:abc", "user-1000.slice:podman:x", ":cri-containerd:abc",
		"-.slice:p:n", "/docker/abc", "/a/../b", "a--b.slice:p:n", "m.slice:x:s.slice", "..:..:..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ExpandSystemd(in)
		if err != nil {
			return
		}
		if strings.HasPrefix(got, "/") {
			t.Fatalf("ExpandSystemd(%q) = %q starts with /", in, got)
		}
		for _, part := range strings.Split(got, "/") {
			if part == ".." {
				t.Fatalf("ExpandSystemd(%q) = %q has a .. component", in, got)
			}
		}
		if strings.ContainsRune(got, 0) {
			t.Fatalf("ExpandSystemd(%q) = %q contains NUL", in, got)
		}
		// The result is a clean path: expanding it again as a plain path
		// gives it back unchanged.
		if again, err := ExpandSystemd("/" + got); err != nil || again != got {
			t.Fatalf("ExpandSystemd(%q) = %q is not clean: re-expanded to %q, %v", in, got, again, err)
		}
	})
}

package cgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const hybridMountinfo = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func TestFindV2Mount(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		want      string
		wantErr   bool
	}{
		{"hybrid", hybridMountinfo, "/sys/fs/cgroup/unified", false},
		{"pure v2", "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n", "/sys/fs/cgroup", false},
		{"optional fields", "30 23 0:26 / /sys/fs/cgroup rw shared:4 master:2 propagate_from:1 - cgroup2 none rw\n", "/sys/fs/cgroup", false},
		{"no optional fields", "30 23 0:26 / /cg rw - cgroup2 none rw\n", "/cg", false},
		{"escaped space in mount point", `30 23 0:26 / /mnt/my\040cgroup rw - cgroup2 none rw` + "\n", "/mnt/my cgroup", false},
		{"escaped backslash", `30 23 0:26 / /mnt/a\134b rw - cgroup2 none rw` + "\n", `/mnt/a\b`, false},
		{
			"prefer root slash over bind mount of a sub-cgroup",
			"50 23 0:26 /docker/abc /var/lib/x rw - cgroup2 cgroup2 rw\n30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			"/sys/fs/cgroup", false,
		},
		{"only a sub-cgroup mount", "50 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup", false},
		{"first root mount wins", "30 23 0:26 / /a rw - cgroup2 x rw\n31 23 0:26 / /b rw - cgroup2 x rw\n", "/a", false},
		{"fstype is cgroup2 only after separator", "30 23 0:26 / /x rw cgroup2 - tmpfs tmpfs rw\n", "", true},
		{"v1 only", "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "", true},
		{"missing separator", "30 23 0:26 / /sys/fs/cgroup rw cgroup2 cgroup2 rw\n", "", true},
		{"separator at end", "30 23 0:26 / /sys/fs/cgroup rw -\n", "", true},
		{"short line", "30 23 cgroup2\n", "", true},
		{"relative mount point ignored", "30 23 0:26 / cg rw - cgroup2 none rw\n", "", true},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindV2Mount(strings.NewReader(tt.mountinfo))
			if tt.wantErr {
				if !errors.Is(err, ErrNoV2Mount) {
					t.Fatalf("FindV2Mount() = %q, %v; want ErrNoV2Mount", got, err)
				}
				if !strings.Contains(err.Error(), "systemd.unified_cgroup_hierarchy=1") {
					t.Errorf("error %q does not say how to fix it", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FindV2Mount() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{`a\040b`, "a b"},
		{`tab\011nl\012`, "tab\tnl\n"},
		{`\134`, `\`},
		{`trailing\04`, `trailing\04`},
		{`bad\089`, `bad\089`},
		{`\`, `\`},
		{`\777`, `\777`}, // > 0xff: kept
	}
	for _, tt := range tests {
		if got := unescapeOctal(tt.in); got != tt.want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"pure v2", "0::/system.slice/docker-abc.scope\n", "/system.slice/docker-abc.scope", false},
		{"hybrid", "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n1:cpu:/\n0::/docker/abc\n", "/docker/abc", false},
		{"root", "0::/\n", "/", false},
		{"no trailing newline", "0::/a", "/a", false},
		{"path with colon", "0::/a:b\n", "/a:b", false},
		{"v1 only", "4:memory:/docker/abc\n1:cpu:/\n", "", true},
		{"hierarchy 0 with controllers is not v2", "0:cpu:/x\n", "", true},
		{"relative path", "0::x\n", "", true},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcCgroup(strings.NewReader(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseProcCgroup() = %q, want error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseProcCgroup() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestPathOfPIDInvalid(t *testing.T) {
	for _, pid := range []int{0, -1} {
		if _, err := PathOfPID(pid); err == nil {
			t.Errorf("PathOfPID(%d) succeeded, want error", pid)
		}
	}
}

func TestExpandSystemd(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"system.slice:docker:abc", "system.slice/docker-abc.scope", false},
		{"user-1000.slice:podman:x", "user.slice/user-1000.slice/podman-x.scope", false},
		{"a-b-c.slice:p:n", "a.slice/a-b.slice/a-b-c.slice/p-n.scope", false},
		{":cri-containerd:abc", "system.slice/cri-containerd-abc.scope", false},
		{"kubepods-besteffort-pod12.slice:cri-containerd:abc", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope", false},
		{"-.slice:p:n", "p-n.scope", false},
		{"-:p:n", "p-n.scope", false},
		{"system.slice::n", "system.slice/n.scope", false},
		{"machine.slice:ignored:my-sub.slice", "machine.slice/my-sub.slice", false},
		{"/docker/abc", "docker/abc", false},
		{"docker//abc/", "docker/abc", false},
		{"/a/./b", "a/b", false},
		{"/", "", false},
		{"", "", false},
		{"/kubepods/pod1/abc:def", "kubepods/pod1/abc:def", false},
		{"/a/../../etc", "", true},
		{"..", "", true},
		{"system.slice:docker:", "", true},
		{"system:docker:abc", "", true},
		{".slice:p:n", "", true},
		{"a--b.slice:p:n", "", true},
		{"-a.slice:p:n", "", true},
		{"a-.slice:p:n", "", true},
		{"system.slice:docker:a/b", "", true},
		{"system.slice:do/cker:ab", "", true},
		{"a\x00b", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ExpandSystemd(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ExpandSystemd(%q) = %q, want error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ExpandSystemd(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDir(t *testing.T) {
	mount := t.TempDir()
	if err := os.MkdirAll(filepath.Join(mount, "docker", "abc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mount, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, mount, rel, want string
		wantErr                bool
	}{
		{"absolute rel", mount, "/docker/abc", filepath.Join(mount, "docker/abc"), false},
		{"relative rel", mount, "docker/abc", filepath.Join(mount, "docker/abc"), false},
		{"root", mount, "/", mount, false},
		{"mount with trailing slash", mount + "/", "/docker", filepath.Join(mount, "docker"), false},
		{"dot dot escape", mount, "/../etc", "", true},
		{"dot dot inside", mount, "/docker/../docker/abc", "", true},
		{"NUL", mount, "/docker\x00", "", true},
		{"relative mount", "sys/fs/cgroup", "/docker", "", true},
		{"missing", mount, "/nope", "", true},
		{"not a directory", mount, "/file", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Dir(tt.mount, tt.rel)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Dir(%q, %q) = %q, want error", tt.mount, tt.rel, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Dir(%q, %q) = %q, %v; want %q", tt.mount, tt.rel, got, err, tt.want)
			}
		})
	}
}

func TestIDRejectsNonCgroupDir(t *testing.T) {
	if _, err := ID(t.TempDir()); err == nil || !strings.Contains(err.Error(), "cgroup2") {
		t.Fatalf("ID(tempdir) error = %v, want a not-cgroup2 error", err)
	}
}

// fakeCgroup makes a directory with a cgroup.events file, to exercise
// WaitEmpty's notification and removal handling without a kernel cgroup.
func fakeCgroup(t *testing.T, populated string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cg")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeEvents(t, dir, populated)
	return dir
}

// writeEvents replaces cgroup.events atomically (as the kernel updates it), so
// a reader woken by inotify never sees a half-written file.
func writeEvents(t *testing.T, dir, populated string) {
	t.Helper()
	tmp := filepath.Join(dir, ".events.tmp")
	if err := os.WriteFile(tmp, []byte("populated "+populated+"\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "cgroup.events")); err != nil {
		t.Fatal(err)
	}
}

func waitAsync(ctx context.Context, dir string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- WaitEmpty(ctx, dir) }()
	return ch
}

func TestWaitEmpty(t *testing.T) {
	t.Run("already empty", func(t *testing.T) {
		if err := WaitEmpty(context.Background(), fakeCgroup(t, "0")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("already removed", func(t *testing.T) {
		if err := WaitEmpty(context.Background(), filepath.Join(t.TempDir(), "gone")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("becomes empty", func(t *testing.T) {
		dir := fakeCgroup(t, "1")
		ch := waitAsync(context.Background(), dir)
		assertBlocked(t, ch)
		writeEvents(t, dir, "0")
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("directory removed", func(t *testing.T) {
		dir := fakeCgroup(t, "1")
		ch := waitAsync(context.Background(), dir)
		assertBlocked(t, ch)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		dir := fakeCgroup(t, "1")
		ctx, cancel := context.WithCancel(context.Background())
		ch := waitAsync(ctx, dir)
		assertBlocked(t, ch)
		cancel()
		if err := <-ch; !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitEmpty after cancel = %v, want context.Canceled", err)
		}
	})
	t.Run("not a cgroup", func(t *testing.T) {
		if err := WaitEmpty(context.Background(), t.TempDir()); err == nil {
			t.Fatal("WaitEmpty on a plain directory succeeded, want error")
		}
	})
}

// assertBlocked checks that WaitEmpty has not returned yet. The short sleep
// only gives a wrongly-returning WaitEmpty a chance to show itself; it is not
// a timing assertion on the code under test.
func assertBlocked(t *testing.T, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("WaitEmpty returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
}

package output

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An annotation's subdirectory is made by boxtap for one tenant; a symlink,
// a directory boxtap did not make, and another tenant's directory are
// refused (the old string comparison let a symlinked subdirectory escape and
// let any annotation write into any directory below --output-dir).
func TestSubOnlyUsesDirectoriesBoxtapMadeForTheTenant(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	d, err := OpenDir(root, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "admin"), 0o700); err != nil {
		t.Fatal(err)
	}

	web, err := d.Sub("web", "shop")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := web.SinkFor(Owner{ID: "c1"})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	web.Close()
	st, err := os.Lstat(filepath.Join(root, "web"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("web: %v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(root, "web", "c1.json")); err != nil {
		t.Fatal(err)
	}
	if again, err := d.Sub("web", "shop"); err != nil {
		t.Errorf("the same tenant cannot use its own subdirectory again: %v", err)
	} else {
		again.Close()
	}

	for _, tc := range []struct{ name, tenant, want string }{
		{"escape", "shop", "symlink"},
		{"admin", "shop", "not made by boxtap"},
		{"web", "blog", "belongs to Kubernetes namespace \"shop\""},
		{"web", "", "belongs to"},
		{"../x", "shop", "one name"},
		{"by-name", "shop", "one name"},
		{"a/b", "shop", "one name"},
		{".hidden", "shop", "one name"},
		{"x.json", "shop", "one name"},
		{"x.json.1", "shop", "one name"},
	} {
		sub, err := d.Sub(tc.name, tc.tenant)
		if err == nil {
			sub.Close()
			t.Errorf("Sub(%q, %q) was accepted", tc.name, tc.tenant)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Sub(%q, %q) = %v, want it to say %q", tc.name, tc.tenant, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("something was written through the symlink: %v", entries)
	}
}

func TestOpenAppendRefusesSymlinks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	d, err := OpenDir(root, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, nil, 0o644)
	os.Symlink(target, filepath.Join(root, "log"))
	if f, err := d.OpenAppend("log"); err == nil {
		f.Close()
		t.Fatal("OpenAppend followed a symlink")
	}
	f, err := d.OpenAppend("real.log")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(filepath.Join(root, "real.log")); st.Mode().Perm() != 0o600 {
		t.Errorf("log mode %04o, want 0600", st.Mode().Perm())
	}
}

func FuzzCheckSubdir(f *testing.F) {
	for _, s := range []string{"web", "..", "../x", "a/b", "by-name", "x.json", ".x", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckSubdir(name) != nil {
			return
		}
		if j := filepath.Join("/out", name); filepath.Dir(j) != "/out" || filepath.Base(j) != name || strings.HasPrefix(name, ".") {
			t.Fatalf("CheckSubdir accepted %q, which is not one plain element", name)
		}
	})
}

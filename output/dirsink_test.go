package output

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/boxtap/boxtap/internal/itest"
)

// dirTestEvent returns an event whose status text carries n, so lines can
// be told apart.
func dirTestEvent(id string, n int) *Event {
	return &Event{
		Timestamp: int64(n),
		Container: Container{ID: id, Name: "c-" + id},
		Response:  Response{Status: fmt.Sprintf("200 line-%06d", n), StatusCode: 200, Protocol: "HTTP/1.1", ContentLength: -1},
		Direction: DirectionEgress,
	}
}

// readLines parses a JSON Lines file and returns the line numbers it holds;
// it fails on a torn or invalid line.
func readLines(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	var out []int
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var ev struct {
			Args []struct {
				Name  string          `json:"name"`
				Value json.RawMessage `json:"value"`
			} `json:"args"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("%s line %d is not JSON (%v): %q", path, i+1, err, line)
		}
		var resp struct {
			Status string `json:"status"`
		}
		for _, a := range ev.Args {
			if a.Name == "http_response" {
				_ = json.Unmarshal(a.Value, &resp)
			}
		}
		var n int
		if _, err := fmt.Sscanf(resp.Status, "200 line-%d", &n); err != nil {
			t.Fatalf("%s line %d: status %q", path, i+1, resp.Status)
		}
		out = append(out, n)
	}
	return out
}

func TestDirWritesOneFilePerContainerWithPrivateModes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	d, err := OpenDir(root, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.Sink("aaaa", "web")
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Sink("bbbb", "../../etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := a.Write(dirTestEvent("aaaa", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Write(dirTestEvent("bbbb", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sink("aaaa", "again"); err == nil {
		t.Fatal("a second sink for an open ID was accepted")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, filepath.Join(root, "aaaa.json")); fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("aaaa.json holds %v", got)
	}
	if got := readLines(t, filepath.Join(root, "bbbb.json")); fmt.Sprint(got) != "[100]" {
		t.Fatalf("bbbb.json holds %v", got)
	}
	for path, want := range map[string]os.FileMode{root: 0o700, filepath.Join(root, "aaaa.json"): 0o600, filepath.Join(root, "bbbb.json"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", path, st.Mode().Perm(), want)
		}
	}
	// The by-name links resolve inside the directory, whatever the name.
	entries, err := os.ReadDir(filepath.Join(root, ByNameDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("by-name holds %d entries, want 2", len(entries))
	}
	for _, e := range entries {
		target, err := filepath.EvalSymlinks(filepath.Join(root, ByNameDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(target) != mustEval(t, root) {
			t.Errorf("by-name/%s resolves to %s, outside %s", e.Name(), target, root)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, ByNameDir, "web.json")); err != nil {
		t.Errorf("no by-name/web.json: %v", err)
	}
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDirRotatesBySizeKeepingWholeLines(t *testing.T) {
	root := t.TempDir()
	line := len(dirTestEvent("rot", 0).AppendJSON(nil)) + 1
	const maxFiles = 2
	d, err := OpenDir(root, DirOptions{MaxSize: int64(3*line + line/2), MaxFiles: maxFiles})
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Sink("rot", "")
	if err != nil {
		t.Fatal(err)
	}
	const total = 20
	for i := range total {
		if err := s.Write(dirTestEvent("rot", i)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Newest lines are in rot.json, older ones in rot.json.1, .2; nothing beyond.
	var all []int
	for _, name := range []string{"rot.json.2", "rot.json.1", "rot.json"} {
		path := filepath.Join(root, name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > int64(3*line+line/2) {
			t.Errorf("%s is %d bytes, over --max-size", name, st.Size())
		}
		all = append(all, readLines(t, path)...)
	}
	if _, err := os.Stat(filepath.Join(root, "rot.json.3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rot.json.3 exists with --max-files %d", maxFiles)
	}
	for i := 1; i < len(all); i++ {
		if all[i] != all[i-1]+1 {
			t.Fatalf("lines across rotated files are not consecutive: %v", all)
		}
	}
	if all[len(all)-1] != total-1 {
		t.Fatalf("newest line is %d, want %d", all[len(all)-1], total-1)
	}
}

func TestDirReopenAfterLogrotateMove(t *testing.T) {
	root := t.TempDir()
	d, err := OpenDir(root, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := d.Sink("hup", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		s.Write(dirTestEvent("hup", i))
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "hup.json"), filepath.Join(root, "hup.json.old")); err != nil {
		t.Fatal(err)
	}
	s.Write(dirTestEvent("hup", 2)) // still goes to the moved file: buffered before the reopen
	if err := d.Reopen(); err != nil {
		t.Fatal(err)
	}
	s.Write(dirTestEvent("hup", 3))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, filepath.Join(root, "hup.json.old")); fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("moved file holds %v", got)
	}
	if got := readLines(t, filepath.Join(root, "hup.json")); fmt.Sprint(got) != "[3]" {
		t.Fatalf("reopened file holds %v", got)
	}
}

func TestDirRemovesTornLastLineOnOpen(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	good := string(dirTestEvent("torn", 7).AppendJSON(nil)) + "\n"
	for _, tc := range []struct{ name, before, keep string }{
		{"torn tail", good + `{"timestamp":12,"thr`, good},
		{"only a torn line", `{"timestamp":12`, ""},
		{"complete", good, good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(root, "torn.json")
			if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := OpenDir(root, DirOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s, _ := d.Sink("torn", "")
			s.Write(dirTestEvent("torn", 8))
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			if !strings.HasPrefix(string(data), tc.keep) || strings.Count(string(data), "\n") != strings.Count(tc.keep, "\n")+1 {
				t.Fatalf("file after reopen:\n%s", data)
			}
			readLines(t, path)
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
				t.Fatalf("mode %04o after reopen, want 0600", st.Mode().Perm())
			}
		})
	}
}

func TestOpenDirRefusesUnsafeDirectories(t *testing.T) {
	base := t.TempDir()
	ww := filepath.Join(base, "world")
	if err := os.Mkdir(ww, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(ww, 0o777|os.ModeSticky)
	if _, err := OpenDir(ww, DirOptions{}); err == nil || !strings.Contains(err.Error(), "world-writable") {
		t.Errorf("world-writable dir: err = %v", err)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := OpenDir(file, DirOptions{}); err == nil {
		t.Error("a regular file was accepted as output directory")
	}
	loose := filepath.Join(base, "loose")
	os.Mkdir(loose, 0o755)
	d, err := OpenDir(loose, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if st, _ := os.Stat(loose); st.Mode().Perm() != 0o700 {
		t.Errorf("own 0755 dir left at %04o, want 0700", st.Mode().Perm())
	}
}

// TestOpenDirRefusesOtherUsersDirectories: a directory, or a symlink to one, owned by
// another user is refused; the caller's own symlink to its own directory is accepted.
// Changing ownership needs root.
func TestOpenDirRefusesOtherUsersDirectories(t *testing.T) {
	itest.RequireRoot(t)
	base := t.TempDir()
	loose := filepath.Join(base, "loose")
	if err := os.Mkdir(loose, 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(base, "other")
	os.Mkdir(other, 0o700)
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(other, DirOptions{}); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("dir of another user: err = %v", err)
	}
	link := filepath.Join(base, "link")
	os.Symlink(loose, link)
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(link, DirOptions{}); err == nil || !strings.Contains(err.Error(), "symlink owned by uid 65534") {
		t.Errorf("symlink of another user: err = %v", err)
	}
	own := filepath.Join(base, "ownlink")
	os.Symlink(loose, own)
	if d, err := OpenDir(own, DirOptions{}); err != nil {
		t.Errorf("own symlink to own dir refused: %v", err)
	} else {
		d.Close()
	}
}

func TestCheckID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"3f2a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b", true},
		{"my-ctr_1.v2", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"-rf", false},
		{".hidden", false},
		{"a\nb", false},
		{"a\x00b", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	} {
		if err := CheckID(tc.id); (err == nil) != tc.ok {
			t.Errorf("CheckID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

// escapeNameOK checks EscapeName's promises for one input.
func escapeNameOK(t *testing.T, name string) {
	got := EscapeName(name)
	if got == "" || got == "." || got == ".." || strings.HasPrefix(got, ".") {
		t.Fatalf("EscapeName(%q) = %q", name, got)
	}
	if strings.ContainsAny(got, "/\\") || !utf8.ValidString(got) {
		t.Fatalf("EscapeName(%q) = %q holds a separator or invalid UTF-8", name, got)
	}
	for _, r := range got {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u202e' {
			t.Fatalf("EscapeName(%q) = %q holds control character %U", name, got, r)
		}
	}
	if len(got) > 200 {
		t.Fatalf("EscapeName(%q) is %d bytes long", name, len(got))
	}
	if j := filepath.Join("/out", got); filepath.Dir(j) != "/out" {
		t.Fatalf("EscapeName(%q) = %q escapes: %s", name, got, j)
	}
	if d := escapeDirElem(name); strings.HasSuffix(d, ".json") {
		t.Fatalf("escapeDirElem(%q) = %q ends like a link", name, d)
	}
}

func TestEscapeName(t *testing.T) {
	for _, name := range []string{"web", "", ".", "..", "../../etc/passwd", "a/b", "x\x1b[31m", "\xff\xfe", "ok\u2028", strings.Repeat("é", 300), "ns.json"} {
		escapeNameOK(t, name)
	}
	for in, want := range map[string]string{"web-1": "web-1", "api/v1": "api%2Fv1", "api_v1": "api_v1", "api%2Fv1": "api%252Fv1", ".x": "%2Ex", "a~b": "a%7Eb"} {
		if got := EscapeName(in); got != want {
			t.Errorf("EscapeName(%q) = %q, want %q", in, got, want)
		}
	}
	// Distinct names stay distinct, also when cut to length.
	long := strings.Repeat("x", 300)
	if EscapeName(long+"a") == EscapeName(long+"b") {
		t.Error("two long names escape to one element")
	}
}

// FuzzEscapeName: every name escapes to a safe element, and two distinct
// names never to the same one (the by-name collision of "api/v1" and
// "api_v1").
func FuzzEscapeName(f *testing.F) {
	for _, s := range []string{"web", "..", "../x", "a\x00b", "\xc3", ".x", "api/v1", "%2F"} {
		f.Add(s, "api_v1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		escapeNameOK(t, a)
		if a != b && EscapeName(a) == EscapeName(b) {
			t.Fatalf("EscapeName(%q) == EscapeName(%q) == %q", a, b, EscapeName(a))
		}
		if a != b && escapeDirElem(a) == escapeDirElem(b) {
			t.Fatalf("escapeDirElem(%q) == escapeDirElem(%q)", a, b)
		}
	})
}

// mountTestTmpfs mounts a 64 KiB tmpfs (with flags, e.g. MS_RDONLY) on a temporary
// directory for the test and unmounts it at the end. It needs root: without it the test
// skips locally and fails in CI (itest.Require). unix.Mount is the system call; no mount
// program is involved.
func mountTestTmpfs(t *testing.T, flags uintptr) string {
	t.Helper()
	itest.RequireRoot(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", flags, "size=64k,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs on %s as root: %v", mnt, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// TestDirReportsFullDiskOncePerContainer needs root for a tiny tmpfs.
func TestDirReportsFullDiskOncePerContainer(t *testing.T) {
	mnt := mountTestTmpfs(t, 0)
	d, err := OpenDir(mnt, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := d.Sink("full", "")
	b, _ := d.Sink("other", "")
	var errs int
	for i := range 400 {
		if err := a.Write(dirTestEvent("full", i)); err != nil {
			errs++
		}
		if err := a.Flush(); err != nil {
			errs++
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("flush error is not ENOSPC: %v", err)
			}
		}
	}
	if errs != 1 {
		t.Fatalf("%d errors reported for one full disk, want 1", errs)
	}
	if a.Dropped() == 0 {
		t.Fatal("no dropped lines counted")
	}
	readLines(t, filepath.Join(mnt, "full.json")) // whole lines only
	// Free space: the other container's writes work again.
	os.Remove(filepath.Join(mnt, "full.json"))
	b.Write(dirTestEvent("other", 1))
	if err := b.Flush(); err != nil {
		t.Fatalf("other container after freeing space: %v", err)
	}
	d.Close()
	if got := readLines(t, filepath.Join(mnt, "other.json")); fmt.Sprint(got) != "[1]" {
		t.Fatalf("other.json holds %v", got)
	}
}

// TestDirReadOnlyReportsOnFlush: an unwritable directory is reported by the
// first flush of each container, never by OpenDir or Sink.
func TestDirReadOnlyReportsOnFlush(t *testing.T) {
	mnt := mountTestTmpfs(t, unix.MS_RDONLY)
	d, err := OpenDir(mnt, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, id := range []string{"ro1", "ro2"} {
		s, err := d.Sink(id, "")
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for i := range 3 {
			s.Write(dirTestEvent(id, i))
			if err := s.Flush(); err != nil {
				n++
				if !errors.Is(err, unix.EROFS) {
					t.Errorf("%s: %v, want EROFS", id, err)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d errors, want 1", id, n)
		}
	}
}

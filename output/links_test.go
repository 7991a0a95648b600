package output

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// openSink opens a sink for o and writes one event, which opens the file
// and makes the by-name link.
func openSink(t *testing.T, d *Dir, o Owner, n int) *FileSink {
	t.Helper()
	s, err := d.SinkFor(o)
	if err != nil {
		t.Fatalf("SinkFor(%+v): %v", o, err)
	}
	if err := s.Write(dirTestEvent(o.ID, n)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// linkTarget resolves by-name/rel to the file name it points at.
func linkTarget(t *testing.T, root, rel string) string {
	t.Helper()
	path := filepath.Join(root, ByNameDir, rel)
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatalf("by-name/%s: %v", rel, err)
	}
	if filepath.Dir(target) != root {
		resolved, _ := filepath.EvalSymlinks(root)
		if filepath.Dir(target) != resolved {
			t.Fatalf("by-name/%s resolves to %s, outside %s", rel, target, root)
		}
	}
	return filepath.Base(target)
}

// A containerd ID is unique only within its namespace: the same ID in two
// namespaces gets two files, both open at once (it was "already open").
func TestDirKeysFilesByNamespaceAndID(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	d, err := OpenDir(root, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := openSink(t, d, Owner{Namespace: "default", ID: "same"}, 1)
	b := openSink(t, d, Owner{Namespace: "tenant-b", ID: "same"}, 2)
	c := openSink(t, d, Owner{Namespace: DockerNamespace, ID: "dockerid"}, 3)
	if _, err := d.SinkFor(Owner{ID: "dockerid"}); err == nil {
		t.Error("Docker's namespace and no namespace were keyed apart; a Docker ID names one container")
	}
	for _, s := range []*FileSink{a, b, c} {
		s.Close()
	}
	d.Close()
	for file, want := range map[string]string{"default@same.json": "[1]", "tenant-b@same.json": "[2]", "dockerid.json": "[3]"} {
		if got := readLines(t, filepath.Join(root, file)); fmt.Sprint(got) != want {
			t.Errorf("%s holds %v, want %s", file, got, want)
		}
	}
	if _, err := FileKey("bad@ns", "x"); err == nil {
		t.Error("a namespace with '@' was accepted; keys would be ambiguous")
	}
}

// Links go by namespace/pod/container, names are escaped so that distinct
// names never share a link, and a pod's container name repeats freely.
func TestDirLinksByPodAndEscapedName(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	d, err := OpenDir(root, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	openSink(t, d, Owner{ID: "d1", Name: "api/v1"}, 1)
	openSink(t, d, Owner{ID: "d2", Name: "api_v1"}, 2)
	openSink(t, d, Owner{Namespace: "k8s.io", ID: "p1", Name: "web", PodNamespace: "shop", PodName: "front-1"}, 3)
	openSink(t, d, Owner{Namespace: "k8s.io", ID: "p2", Name: "web", PodNamespace: "shop", PodName: "front-2"}, 4)
	openSink(t, d, Owner{Namespace: "k8s.io", ID: "p3", Name: "web", PodNamespace: "blog", PodName: "front-1"}, 5)
	openSink(t, d, Owner{Namespace: "tools", ID: "c1", Name: "web"}, 6)
	for rel, want := range map[string]string{
		"api%2Fv1.json":         "d1.json",
		"api_v1.json":           "d2.json",
		"shop/front-1/web.json": "k8s.io@p1.json",
		"shop/front-2/web.json": "k8s.io@p2.json",
		"blog/front-1/web.json": "k8s.io@p3.json",
		"tools/web.json":        "tools@c1.json",
	} {
		if got := linkTarget(t, root, rel); got != want {
			t.Errorf("by-name/%s -> %s, want %s", rel, got, want)
		}
	}
}

// A link owned by a running container is never replaced, neither from the
// same Dir nor from another process (a second Dir stands in for it: the lock
// is per open file); the newcomer gets NAME~KEY.json. Once the owner
// stopped, the next container of that name takes the link over.
func TestDirNeverReplacesARunningContainersLink(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	d1, err := OpenDir(root, DirOptions{MaxSize: 600, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := OpenDir(root, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	first := openSink(t, d1, Owner{ID: "first", Name: "web"}, 1)
	// Rotation must not open a window in which "first" looks stopped.
	for i := range 4 {
		openSinkWrite(t, first, i+10)
	}
	if first.rotation == 0 {
		t.Fatal("the test meant to rotate the first container's file")
	}
	same := openSink(t, d1, Owner{ID: "same-dir", Name: "web"}, 2)
	other := openSink(t, d2, Owner{ID: "other-proc", Name: "web"}, 3)
	if got := linkTarget(t, root, "web.json"); got != "first.json" {
		t.Fatalf("by-name/web.json -> %s while its owner runs, want first.json", got)
	}
	for rel, want := range map[string]string{"web~same-dir.json": "same-dir.json", "web~other-proc.json": "other-proc.json"} {
		if got := linkTarget(t, root, rel); got != want {
			t.Errorf("by-name/%s -> %s, want %s", rel, got, want)
		}
	}
	same.Close()
	other.Close()
	if err := d1.Close(); err != nil { // "first" stops
		t.Fatal(err)
	}
	openSink(t, d2, Owner{ID: "next", Name: "web"}, 4)
	if got := linkTarget(t, root, "web.json"); got != "next.json" {
		t.Errorf("by-name/web.json -> %s after its owner stopped, want next.json", got)
	}
}

func openSinkWrite(t *testing.T, s *FileSink, n int) {
	t.Helper()
	if err := s.Write(dirTestEvent(s.id, n)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

// Two processes must not write one file: the second gets an error naming
// the cause.
func TestDirRefusesAFileAnotherProcessWrites(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	d1, _ := OpenDir(root, DirOptions{})
	d2, _ := OpenDir(root, DirOptions{})
	defer d1.Close()
	defer d2.Close()
	a, _ := d1.SinkFor(Owner{ID: "dup"})
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	b, _ := d2.SinkFor(Owner{ID: "dup"})
	if err := b.Open(); err == nil {
		t.Fatal("a second writer of dup.json was accepted")
	}
	if _, err := os.Stat(filepath.Join(root, "dup.json")); err != nil {
		t.Fatal(err)
	}
}

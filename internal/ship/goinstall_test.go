package ship

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// TestGoInstallAtVersionReportsThatVersion publishes the repository's tracked files as module
// github.com/boxtap/boxtap@v0.0.1-shiptest.<now> in a module proxy directory of the test's own (the layout
// the Go module proxy serves: list, .info, .mod, .zip), then runs
// `go install github.com/boxtap/boxtap/cmd/boxtap@v0.0.1-shiptest.<now>` against it, as a user
// would against the public proxy: the installed boxtap must say it is that version. Dependencies come
// from the module cache or the usual proxy; the checksum database is not asked about boxtap,
// which it does not know.
func TestGoInstallAtVersionReportsThatVersion(t *testing.T) {
	root := moduleRoot(t)
	goCmd, err := itest.GoBinary()
	if err != nil {
		t.Fatal(err)
	}
	// A version no earlier run published: the go command takes a module
	// version's content as immutable and reuses what it built from it before,
	// so republishing other content under one version would test stale code.
	const module = "github.com/boxtap/boxtap"
	version := fmt.Sprintf("v0.0.1-shiptest.%d", time.Now().UnixNano())
	proxy := t.TempDir()
	publishModule(t, root, proxy, module, version)
	forgetModule(t, goCmd, module, version)

	gobin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "install", module+"/cmd/boxtap@"+version)
	cmd.Dir = t.TempDir() // outside the repository: no main module
	upstream := "https://proxy.golang.org"
	if p := os.Getenv("GOPROXY"); p != "" && p != "off" {
		upstream = p
	}
	cmd.Env = append(envWithout("GOPROXY", "GONOSUMDB", "GOPRIVATE", "GOFLAGS", "GOBIN", "CGO_ENABLED"),
		"GOPROXY=file://"+proxy+","+upstream, "GONOSUMDB="+module, "GOBIN="+gobin, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s/cmd/boxtap@%s: %v\n%s", module, version, err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "boxtap"), "version").Output()
	if first, _, _ := strings.Cut(string(out), "\n"); err != nil || first != "boxtap "+version {
		t.Errorf("installed boxtap version: %v, output %q, want first line %q", err, out, "boxtap "+version)
	}
}

// forgetModule removes module@version from the module cache when the test ends (and now, in
// case an earlier run was killed), so that the test's own publication never stands in for
// a real one.
func forgetModule(t *testing.T, goCmd, module, version string) {
	t.Helper()
	out, err := exec.Command(goCmd, "env", "GOMODCACHE").Output()
	cache := strings.TrimSpace(string(out))
	if err != nil || cache == "" {
		t.Fatalf("go env GOMODCACHE: %v %q", err, out)
	}
	forget := func() {
		extracted := filepath.Join(cache, module+"@"+version)
		filepath.WalkDir(extracted, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(path, 0o755) // the module cache makes directories read-only
			}
			return nil
		})
		os.RemoveAll(extracted)
		downloads, _ := filepath.Glob(filepath.Join(cache, "cache", "download", module, "@v", version+".*"))
		for _, f := range downloads {
			os.Remove(f)
		}
		list := filepath.Join(cache, "cache", "download", module, "@v", "list")
		if data, err := os.ReadFile(list); err == nil {
			var keep []string
			for line := range strings.Lines(string(data)) {
				if strings.TrimSpace(line) != version {
					keep = append(keep, line)
				}
			}
			if len(keep) == 0 {
				os.Remove(list)
			} else {
				os.WriteFile(list, []byte(strings.Join(keep, "")), 0o644)
			}
		}
	}
	forget()
	t.Cleanup(forget)
}

// publishModule writes module@version, made of the repository's tracked files, into a
// GOPROXY=file:// directory.
func publishModule(t *testing.T, root, proxy, module, version string) {
	t.Helper()
	files, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	names := strings.Split(strings.TrimRight(string(files), "\x00"), "\x00")
	// A directory with a go.mod of its own (internal/otelcol) is another
	// module: the Go command leaves it out of this module's zip, and refuses
	// a zip that holds it.
	var nested []string
	for _, name := range names {
		if path.Base(name) == "go.mod" && name != "go.mod" {
			nested = append(nested, path.Dir(name)+"/")
		}
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range names {
		if slices.ContainsFunc(nested, func(dir string) bool { return strings.HasPrefix(name, dir) }) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		w, err := zw.Create(module + "@" + version + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(proxy, module, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": []byte(`{"Version":"` + version + `","Time":"2026-01-01T00:00:00Z"}`),
		version + ".mod":  readFile(t, filepath.Join(root, "go.mod")),
		version + ".zip":  buf.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

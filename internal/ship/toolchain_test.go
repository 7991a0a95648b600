package ship

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// bootstrapTimeout bounds one run of the bootstrap: a 70 MB download, its check and unzip.
const bootstrapTimeout = 15 * time.Minute

// TestToolchainBootstrapInstallsGoModVersionAndBuildsBoxtap runs scripts/go-toolchain.sh with
// no Go on PATH into an empty prefix: it must install exactly the Go that go.mod names, say so
// on stderr, and that Go must build boxtap. The zip cache is the repository's .cache/go/dl,
// the one make uses, so a CI run downloads the toolchain once.
func TestToolchainBootstrapInstallsGoModVersionAndBuildsBoxtap(t *testing.T) {
	root := moduleRoot(t)
	want := goModVersion(t, root)
	path := pathWithoutGo(t)
	prefix := t.TempDir()
	downloads := filepath.Join(root, ".cache", "go", "dl")

	start := time.Now()
	stdout, stderr, err := runBootstrap(t, root, path, prefix, downloads, "")
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("go-toolchain.sh: %v\nstderr:\n%s", err, stderr)
	}
	t.Logf("bootstrap took %s:\n%s", elapsed.Round(100*time.Millisecond), stderr)
	goCmd := filepath.Join(prefix, want, "bin", "go")
	if stdout != goCmd+"\n" {
		t.Fatalf("stdout %q, want the installed go command %q", stdout, goCmd)
	}
	version := "v0.0.1-" + want + ".linux-" + runtime.GOARCH
	for _, line := range []string{
		"go.mod needs " + want + "; no go on PATH: installing " + want + " from the Go module proxy into " + filepath.Join(prefix, want),
		"verified golang.org/toolchain@" + version + " " + recordedSum(t, root, version),
		"installed " + want + " in " + filepath.Join(prefix, want),
	} {
		if !strings.Contains(stderr, "go-toolchain: "+line) {
			t.Errorf("stderr lacks %q:\n%s", line, stderr)
		}
	}

	bin := filepath.Join(t.TempDir(), "boxtap")
	build := exec.Command(goCmd, "build", "-trimpath", "-o", bin, "./cmd/boxtap")
	build.Dir = root
	build.Env = append(envWithout("PATH", "GO", "GOROOT", "GOTOOLCHAIN"), "PATH="+path, "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build boxtap with the installed %s: %v\n%s", want, err, out)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("read build info of %s: %v", bin, err)
	}
	if info.GoVersion != want {
		t.Errorf("boxtap was built by %s, want the installed %s", info.GoVersion, want)
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "boxtap ") {
		t.Errorf("boxtap version: %v, output %q", err, out)
	}

	// A Go on PATH that is too old (Debian 12 ships 1.19) is passed over for the installed one,
	// without a second install.
	stdout, stderr, err = runBootstrap(t, root, fakeGoDir(t, "go1.19.8")+":"+path, prefix, downloads, "")
	if err != nil || stdout != goCmd+"\n" || stderr != "" {
		t.Errorf("with go1.19.8 on PATH: err %v, stdout %q (want %q), stderr %q (want nothing)", err, stdout, goCmd, stderr)
	}
}

// TestToolchainBootstrapRefusesZipWithWrongChecksum serves a zip that is not the recorded
// toolchain from a local stand-in for the module proxy: the bootstrap must stop with one
// line naming the mismatch, install nothing and keep no download.
func TestToolchainBootstrapRefusesZipWithWrongChecksum(t *testing.T) {
	root := moduleRoot(t)
	want := goModVersion(t, root)
	version := "v0.0.1-" + want + ".linux-" + runtime.GOARCH
	fake := fakeToolchainZip(t, "golang.org/toolchain@"+version+"/bin/go")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/golang.org/toolchain/@v/"+version+".zip" {
			http.NotFound(w, r)
			return
		}
		w.Write(fake)
	}))
	defer srv.Close()

	prefix, downloads := t.TempDir(), t.TempDir()
	_, stderr, err := runBootstrap(t, root, pathWithoutGo(t), prefix, downloads, srv.URL)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("bootstrap with a wrong zip: %v (want a non-zero exit)\nstderr:\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	wantPrefix := "go-toolchain: ERROR: checksum mismatch for golang.org/toolchain@" + version + ": got h1:"
	if !strings.HasPrefix(last, wantPrefix) || !strings.Contains(last, "scripts/go-toolchain.sum has "+recordedSum(t, root, version)) {
		t.Errorf("last stderr line %q, want %q... naming the recorded sum", last, wantPrefix)
	}
	if _, err := os.Stat(filepath.Join(prefix, want)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a failed check (stat: %v)", filepath.Join(prefix, want), err)
	}
	left, _ := filepath.Glob(filepath.Join(downloads, "*"))
	staged, _ := filepath.Glob(filepath.Join(prefix, ".install-*"))
	if len(left)+len(staged) != 0 {
		t.Errorf("left behind: downloads %v, staging %v", left, staged)
	}
}

// runBootstrap runs scripts/go-toolchain.sh with PATH, its prefix and download directory, and
// (when proxy is set) another module proxy; it returns stdout and stderr.
func runBootstrap(t *testing.T, root, path, prefix, downloads, proxy string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootstrapTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/bash", filepath.Join(root, "scripts", "go-toolchain.sh"))
	cmd.Dir = root
	cmd.Env = append(envWithout("PATH", "GO", "BOXTAP_GO_PREFIX", "BOXTAP_GO_DOWNLOADS", "BOXTAP_GO_PROXY"),
		"PATH="+path, "BOXTAP_GO_PREFIX="+prefix, "BOXTAP_GO_DOWNLOADS="+downloads)
	if proxy != "" {
		cmd.Env = append(cmd.Env, "BOXTAP_GO_PROXY="+proxy)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := itest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// goModVersion is the toolchain go.mod names: its toolchain line, else "go" + its go line.
func goModVersion(t *testing.T, root string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goLine, toolchain string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "go" && goLine == "":
			goLine = "go" + f[1]
		case len(f) == 2 && f[0] == "toolchain":
			toolchain = f[1]
		}
	}
	if toolchain != "" {
		return toolchain
	}
	if goLine == "" {
		t.Fatal("go.mod has no go line")
	}
	return goLine
}

// recordedSum is the h1: hash scripts/go-toolchain.sum records for the toolchain module version.
func recordedSum(t *testing.T, root, version string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "scripts", "go-toolchain.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "golang.org/toolchain" && f[1] == version {
			return f[2]
		}
	}
	t.Fatalf("scripts/go-toolchain.sum has no line for golang.org/toolchain %s", version)
	return ""
}

// pathWithoutGo is this process's PATH without the directories that hold a go command,
// plus Debian's standard directories (the bootstrap needs curl, unzip and coreutils).
func pathWithoutGo(t *testing.T) string {
	t.Helper()
	var keep []string
	seen := map[string]bool{}
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	for _, dir := range dirs {
		if dir == "" || seen[dir] {
			continue
		}
		seen[dir] = true
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			continue
		}
		keep = append(keep, dir)
	}
	return strings.Join(keep, ":")
}

// fakeGoDir returns a directory with a `go` that reports version as its GOVERSION.
func fakeGoDir(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\n[ \"$1 $2\" = \"env GOVERSION\" ] && echo " + version + " && exit 0\nexit 2\n"
	if err := os.WriteFile(filepath.Join(dir, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fakeToolchainZip is a zip holding one file at name: a well-formed module zip, wrong content.
func fakeToolchainZip(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("#!/bin/sh\necho not go\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// envWithout is os.Environ() without the named variables.
func envWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || name == n
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

package itest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Builder builds the repository's binaries once per test process and hands out their paths.
// The binaries live in a directory of this process (os.TempDir()/boxtap-itest-PID/); a later
// test process removes the directories of processes that are gone.
//
// A test package may hold its own Builder (NewBuilder) or use the package-level functions
// BuildTestApp and BuildBoxtap, which share one default Builder.
type Builder struct {
	mu     sync.Mutex
	dir    string
	builds map[string]*build // by package path, e.g. "./internal/testapp"
}

type build struct {
	once sync.Once
	path string
	err  error
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder { return &Builder{builds: map[string]*build{}} }

// defaultBuilder backs BuildTestApp, BuildBoxtap and RequireDocker. It is the one piece of
// package-level state here, on purpose: a test binary is one process, its tests run in any
// order and in parallel, and the whole point is to compile each binary once per process.
// It only ever grows (one entry per built package) and is never reset.
var defaultBuilder = NewBuilder()

// BuildTestApp returns the path of a static internal/testapp binary (built once per process).
func BuildTestApp(t testing.TB) string { t.Helper(); return defaultBuilder.TestApp(t) }

// BuildBoxtap returns the path of the boxtap binary built from ./cmd/boxtap (once per process).
func BuildBoxtap(t testing.TB) string { t.Helper(); return defaultBuilder.Boxtap(t) }

// BuildBoxtapWithoutRace returns a boxtap binary built without the race detector even when
// the tests run with it: for tests that measure boxtap's memory or keeping up, which the
// race detector's own cost (several times the memory, a slower reader) would falsify.
func BuildBoxtapWithoutRace(t testing.TB) string {
	t.Helper()
	return defaultBuilder.build(t, "./cmd/boxtap", false)
}

// TestApp returns the path of a static (CGO_ENABLED=0) internal/testapp binary, which runs
// in an otherwise empty container image.
func (b *Builder) TestApp(t testing.TB) string {
	t.Helper()
	return b.Build(t, "./internal/testapp")
}

// Boxtap returns the path of the boxtap binary.
func (b *Builder) Boxtap(t testing.TB) string {
	t.Helper()
	return b.Build(t, "./cmd/boxtap")
}

// Build compiles the main package at pkg (relative to the module root, e.g. "./cmd/boxtap")
// once and returns the binary's path; it fails the test if the build fails.
func (b *Builder) Build(t testing.TB, pkg string) string {
	t.Helper()
	// boxtap runs on the host, never in a test image: it may link dynamically,
	// which the race detector needs.
	return b.build(t, pkg, raceEnabled && pkg == "./cmd/boxtap")
}

// build compiles pkg, with the race detector when race is set, once per (pkg, race).
func (b *Builder) build(t testing.TB, pkg string, race bool) string {
	t.Helper()
	key := pkg
	if race {
		key += " -race"
	}
	b.mu.Lock()
	if b.builds == nil {
		b.builds = map[string]*build{}
	}
	bd, ok := b.builds[key]
	if !ok {
		bd = &build{}
		b.builds[key] = bd
	}
	b.mu.Unlock()

	bd.once.Do(func() { bd.path, bd.err = b.compile(pkg, race) })
	if bd.err != nil {
		t.Fatalf("build %s: %v", pkg, bd.err)
	}
	return bd.path
}

func (b *Builder) compile(pkg string, race bool) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := b.outputDir()
	if err != nil {
		return "", err
	}
	goBin, err := GoBinary()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	if race {
		out += "-race"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// -trimpath makes the output depend only on the sources, so content-addressed image tags
	// stay stable across runs.
	args, cgo := []string{"build", "-trimpath", "-o", out}, "CGO_ENABLED=0"
	if race {
		args, cgo = append(args, "-race"), "CGO_ENABLED=1"
	}
	cmd := exec.CommandContext(ctx, goBin, append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), cgo, "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w\n%s", pkg, root, err, stderr.String())
	}
	return out, nil
}

// outputDir creates this Builder's directory on first use and removes directories left by
// test processes that no longer exist.
func (b *Builder) outputDir() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir != "" {
		return b.dir, nil
	}
	removeStaleBuildDirs(os.TempDir())
	parent := filepath.Join(os.TempDir(), "boxtap-itest-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("create build directory: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "build-")
	if err != nil {
		return "", fmt.Errorf("create build directory: %w", err)
	}
	b.dir = dir
	return dir, nil
}

// removeStaleBuildDirs deletes boxtap-itest-PID directories whose process is gone.
func removeStaleBuildDirs(tmp string) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		pidText, ok := strings.CutPrefix(e.Name(), "boxtap-itest-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || !e.IsDir() || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pidText)); errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(filepath.Join(tmp, e.Name()))
		}
	}
}

// ModuleRoot returns the directory of boxtap's go.mod, searching upwards from the working
// directory (a test runs in its package directory).
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for dir := wd; ; {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/boxtap/boxtap\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of github.com/boxtap/boxtap above %s; run the tests inside the repository", wd)
		}
		dir = parent
	}
}

// GoBinary returns the go command: from PATH, else $GOROOT/bin/go, else /usr/local/go/bin/go.
func GoBinary() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	candidates := []string{"/usr/local/go/bin/go"}
	if root := os.Getenv("GOROOT"); root != "" {
		candidates = append([]string{filepath.Join(root, "bin", "go")}, candidates...)
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", errors.New("go command not found on PATH, in $GOROOT/bin or /usr/local/go/bin; install Go or add it to PATH")
}

package itest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GoToolchainsEnv names the variable that lists, comma-separated, further
// Go releases (e.g. go1.22.0,go1.27.0) the Go crypto/tls tests build their
// programs with, besides the installed toolchain. The go command fetches
// each as the module golang.org/toolchain.
const GoToolchainsEnv = "BOXTAP_TEST_GO_TOOLCHAINS"

// GoToolchains returns "" (the installed toolchain) and the releases
// GoToolchainsEnv lists.
func GoToolchains() []string {
	list := []string{""}
	for _, v := range strings.Split(os.Getenv(GoToolchainsEnv), ",") {
		if v = strings.TrimSpace(v); v != "" {
			list = append(list, v)
		}
	}
	return list
}

// BuildGoStatic compiles the main package pkg (relative to the module
// root, e.g. "./internal/tlsapp") into a fresh file with CGO_ENABLED=0 and
// the given -ldflags (e.g. "-s -w" for a stripped binary, as Go services
// ship), and returns its path. With toolchain set (e.g. "go1.22.0") the
// package, which must import only the standard library, is built alone in
// a module of Go 1.18 by that release.
func BuildGoStatic(t testing.TB, pkg, ldflags, toolchain string) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := GoBinary()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	out := filepath.Join(tmp, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags="+ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if toolchain != "" {
		dir := filepath.Join(tmp, "src")
		copyGoFiles(t, filepath.Join(root, pkg), dir)
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module boxtaptest\n\ngo 1.18\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd = exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags="+ldflags, "-o", out, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN="+toolchain)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s -ldflags=%q (toolchain %q): %v\n%s", pkg, ldflags, toolchain, err, b)
	}
	return out
}

// copyGoFiles copies the non-test .go files of directory src into dst.
func copyGoFiles(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(src, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// BuildStaticOpenSSL compiles the C file src into a static executable
// linked with Debian's libssl.a and libcrypto.a (libssl-dev), stripped of
// every symbol when strip is set, and returns its path.
func BuildStaticOpenSSL(t testing.TB, src string, strip bool) string {
	t.Helper()
	_, err := exec.LookPath("gcc")
	Require(t, err == nil, "needs gcc (scripts/ensure-deps.sh): %v", err)
	_, err = os.Stat("/usr/lib/x86_64-linux-gnu/libssl.a")
	Require(t, err == nil, "needs Debian's libssl-dev (scripts/ensure-deps.sh): %v", err)
	out := filepath.Join(t.TempDir(), filepath.Base(src[:len(src)-len(filepath.Ext(src))]))
	args := []string{"-static", "-O2", "-o", out, src, "-lssl", "-lcrypto"}
	if strip {
		args = append([]string{"-s"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, b)
	}
	return out
}

// FileImage returns the ref of an image whose only file is the executable
// bin at /NAME (its entrypoint), NAME being bin's base name, importing it
// when it does not exist yet. The tag is a hash of the file.
func (d *Docker) FileImage(t testing.TB, bin string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("read %s: %v", bin, err)
	}
	name := filepath.Base(bin)
	sum := sha256.Sum256(data)
	ref := fmt.Sprintf("%s-%s:%s", TestImagePrefix, name, hex.EncodeToString(sum[:])[:16])
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.images[ref] {
		return ref
	}
	ctx := context.Background()
	if _, err := d.output(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref); err == nil {
		d.images[ref] = true
		return ref
	}
	archive, err := singleFileTar(name, data, 0o755)
	if err != nil {
		t.Fatalf("build image archive: %v", err)
	}
	if _, err := d.output(ctx, bytes.NewReader(archive), "import", "-c", fmt.Sprintf(`ENTRYPOINT ["/%s"]`, name), "-", ref); err != nil {
		t.Fatalf("import image %s: %v", ref, err)
	}
	d.images[ref] = true
	return ref
}

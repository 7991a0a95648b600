package ship

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// releaseTimeout bounds one `make release`: two cross builds, from a cold build cache in CI.
const releaseTimeout = 30 * time.Minute

// releaseArches are the targets make release builds, with the ELF machine of each.
var releaseArches = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestReleaseBuildsStaticStrippedStampedBinariesTwiceIdentically runs make release twice: in
// the repository, and in a copy of its tracked files elsewhere with an empty build cache, so
// nothing is shared but the sources and the toolchain. Both must give the same bytes,
// SHA256SUMS must match the files, and each binary must be a static, stripped ELF for its
// architecture, built without cgo and with -trimpath by exactly go.mod's Go, carrying the
// eBPF object and the stamped version.
func TestReleaseBuildsStaticStrippedStampedBinariesTwiceIdentically(t *testing.T) {
	root := moduleRoot(t)
	want := goModVersion(t, root)
	const version = "v0.0.0-shiptest"
	first, second := filepath.Join(t.TempDir(), "dist"), filepath.Join(t.TempDir(), "dist")
	makeRelease(t, root, first, version)
	clone := copyTracked(t, root)
	makeRelease(t, clone, second, version,
		"GOCACHE="+t.TempDir(), "BOXTAP_GO_PREFIX="+filepath.Join(root, ".cache", "go"))

	sums := readSums(t, first)
	if len(sums) != len(releaseArches) {
		t.Fatalf("SHA256SUMS lists %d files, want %d: %v", len(sums), len(releaseArches), sums)
	}
	object, err := os.ReadFile(filepath.Join(root, "bpf", "capture_bpfel.o"))
	if err != nil {
		t.Fatal(err)
	}
	for arch, machine := range releaseArches {
		name := "boxtap-linux-" + arch
		a, b := readFile(t, filepath.Join(first, name)), readFile(t, filepath.Join(second, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same commit (%s vs %s)", name, sha256Hex(a), sha256Hex(b))
		}
		if sums[name] != sha256Hex(a) {
			t.Errorf("SHA256SUMS has %s for %s, the file hashes to %s", sums[name], name, sha256Hex(a))
		}
		checkStaticStripped(t, filepath.Join(first, name), machine)
		checkBuildInfo(t, filepath.Join(first, name), arch, want)
		if !bytes.Contains(a, []byte(version)) {
			t.Errorf("%s does not contain the stamped version %q", name, version)
		}
		if !bytes.Contains(a, object) {
			t.Errorf("%s does not embed bpf/capture_bpfel.o", name)
		}
		t.Logf("%s: %d bytes", name, len(a))
	}
	if !bytes.Equal(readFile(t, filepath.Join(first, "SHA256SUMS")), readFile(t, filepath.Join(second, "SHA256SUMS"))) {
		t.Error("SHA256SUMS differs between the two builds")
	}

	out, err := exec.Command(filepath.Join(first, "boxtap-linux-"+runtime.GOARCH), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "boxtap "+version+"\n") {
		t.Errorf("boxtap version: %v, output %q, want first line %q", err, out, "boxtap "+version)
	}
}

// makeRelease runs `make release` with DIST=dir and VERSION=version in the tree at root,
// with env added to the environment.
func makeRelease(t *testing.T, root, dir, version string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "--no-print-directory", "release", "DIST="+dir)
	cmd.Dir = root
	cmd.Env = append(envWithout("VERSION", "DIST", "MAKEFLAGS", "GOCACHE", "BOXTAP_GO_PREFIX"), "VERSION="+version)
	cmd.Env = append(cmd.Env, env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	t.Logf("make release DIST=%s took %s", dir, time.Since(start).Round(time.Second))
}

// copyTracked copies the repository's tracked files (as they are in the work tree) into a
// new directory and returns it.
func copyTracked(t *testing.T, root string) string {
	t.Helper()
	files, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "boxtap")
	for _, name := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		st, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), readFile(t, src), st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// readSums parses SHA256SUMS in dir (sha256sum's format) into file name -> hex digest.
func readSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for line := range strings.Lines(string(readFile(t, filepath.Join(dir, "SHA256SUMS")))) {
		sum, name, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not \"<sha256>  <file>\"", line)
		}
		sums[name] = sum
	}
	return sums
}

// checkStaticStripped: an ELF executable for machine with no interpreter, no dynamic section
// and no symbol table.
func checkStaticStripped(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s: machine %v type %v, want %v ET_EXEC", path, f.Machine, f.Type, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has a %v program header: not static", path, p.Type)
		}
	}
	for _, s := range []string{".symtab", ".debug_info", ".dynamic"} {
		if f.Section(s) != nil {
			t.Errorf("%s: has section %s: not stripped or not static", path, s)
		}
	}
}

// checkBuildInfo: built by goVersion for linux/arch, without cgo and with -trimpath (which
// keeps -ldflags out of the build info: stripping is checked on the ELF sections, the version
// on the binary's output and bytes).
func checkBuildInfo(t *testing.T, path, arch, goVersion string) {
	t.Helper()
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if info.GoVersion != goVersion {
		t.Errorf("%s: built by %s, want exactly go.mod's %s", path, info.GoVersion, goVersion)
	}
	for key, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": arch} {
		if settings[key] != want {
			t.Errorf("%s: build setting %s=%q, want %q", path, key, settings[key], want)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

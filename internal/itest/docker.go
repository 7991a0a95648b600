package itest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxtap/boxtap/runtime/container"
)

// Docker runs the docker CLI against the local daemon for integration tests.
type Docker struct {
	cli        string
	builder    *Builder
	apiVersion string

	mu     sync.Mutex
	images map[string]bool // refs known to exist
}

// dockerTimeout bounds every docker CLI call except image imports.
const dockerTimeout = 60 * time.Second

// RequireDocker requires a docker CLI whose daemon answers (see Require for CI behaviour).
// The returned Docker builds its test image with the default Builder.
func RequireDocker(t testing.TB) *Docker {
	t.Helper()
	return RequireDockerWith(t, defaultBuilder)
}

// RequireDockerWith is RequireDocker with the Builder that builds the test image's binary.
func RequireDockerWith(t testing.TB, b *Builder) *Docker {
	t.Helper()
	cli, err := exec.LookPath("docker")
	Require(t, err == nil, "needs the docker CLI on PATH (apt-get install docker.io, or run scripts/ensure-deps.sh)")
	d := &Docker{cli: cli, builder: b, images: map[string]bool{}}
	api, err := d.output(context.Background(), nil, "version", "--format", "{{.Server.APIVersion}}")
	Require(t, err == nil, "needs a running Docker daemon (start it with scripts/ensure-deps.sh): %v", err)
	d.apiVersion = api
	return d
}

// APIVersion returns the daemon's API version, e.g. "1.41".
func (d *Docker) APIVersion() string { return d.apiVersion }

// output runs one docker CLI command and returns its trimmed stdout.
func (d *Docker) output(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.cli, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", shortArgs(args), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Command runs docker with args and returns its trimmed stdout, failing the test on error.
func (d *Docker) Command(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.output(context.Background(), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// shortArgs renders CLI args for error messages, eliding long values such as scripts.
func shortArgs(args []string) string {
	parts := make([]string, len(args))
	for i, a := range args {
		if len(a) > 80 {
			a = a[:77] + "..."
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}

// TestImagePrefix is the repository of the test images; tags are content hashes.
const TestImagePrefix = "boxtap-testapp"

// TestImage returns the ref of an image whose only file is the static testapp binary at
// /testapp (its entrypoint), importing it with `docker import` when it does not exist yet.
// The tag is a hash of the binary, so unchanged sources reuse the image across runs.
func (d *Docker) TestImage(t testing.TB) string {
	t.Helper()
	bin := d.builder.TestApp(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("read testapp binary: %v", err)
	}
	sum := sha256.Sum256(data)
	ref := TestImagePrefix + ":" + hex.EncodeToString(sum[:])[:16]

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
	archive, err := singleFileTar("testapp", data, 0o755)
	if err != nil {
		t.Fatalf("build image archive: %v", err)
	}
	if _, err := d.output(ctx, bytes.NewReader(archive), "import", "-c", `ENTRYPOINT ["/testapp"]`, "-", ref); err != nil {
		t.Fatalf("import test image %s: %v", ref, err)
	}
	d.images[ref] = true
	return ref
}

// singleFileTar returns a tar archive holding one regular file.
func singleFileTar(name string, data []byte, mode int64) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("tar header for %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return nil, fmt.Errorf("tar data for %s: %w", name, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// RunOpts describes a container for (*Docker).Run.
type RunOpts struct {
	Name    string   // container name; default "boxtap-itest-<test name>-<random>"
	Image   string   // default: the test image (TestImage)
	Network string   // --network value; default "host"
	Flags   []string // extra `docker run` flags, e.g. "--cap-add", "NET_ADMIN", "-e", "K=V"
	Args    []string // arguments after the image, e.g. "serve", "-addr", ":8080"
}

// Container is a running container created by (*Docker).Run. Its methods fail the test that
// created it when the docker CLI fails.
type Container struct {
	ID   string
	Name string

	t testing.TB
	d *Docker
}

// Run starts a detached container (docker run -d) and removes it (docker rm -f) when the
// test ends; when the test failed, the container's log is logged first.
func (d *Docker) Run(t testing.TB, opts RunOpts) *Container {
	t.Helper()
	if opts.Image == "" {
		opts.Image = d.TestImage(t)
	}
	if opts.Network == "" {
		opts.Network = "host"
	}
	if opts.Name == "" {
		opts.Name = containerName(t.Name())
	}
	args := []string{"run", "-d", "--name", opts.Name, "--network", opts.Network, "--label", "boxtap-itest=1"}
	args = append(args, opts.Flags...)
	args = append(args, opts.Image)
	args = append(args, opts.Args...)
	c := &Container{Name: opts.Name, t: t, d: d}
	// Register removal first: a failed `docker run` may still leave a created container.
	t.Cleanup(func() {
		if t.Failed() {
			if logs, err := d.output(context.Background(), nil, "logs", "--tail", "50", opts.Name); err == nil {
				t.Logf("last log lines of container %s:\n%s", opts.Name, logs)
			}
		}
		if _, err := d.output(context.Background(), nil, "rm", "-f", "-v", opts.Name); err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Logf("remove container %s: %v", opts.Name, err)
		}
	})
	id, err := d.output(context.Background(), nil, args...)
	if err != nil {
		t.Fatalf("start container: %v", err)
	}
	c.ID = id
	return c
}

var unsafeNameChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// containerName derives a unique, valid container name from a test name.
func containerName(testName string) string {
	base := strings.Trim(unsafeNameChars.ReplaceAllString(testName, "-"), "-._")
	if len(base) > 40 {
		base = base[:40]
	}
	var suffix [4]byte
	rand.Read(suffix[:])
	return "boxtap-itest-" + base + "-" + hex.EncodeToString(suffix[:])
}

// Inspect returns `docker inspect --format FORMAT` of the container.
func (c *Container) Inspect(format string) string {
	c.t.Helper()
	out, err := c.d.output(context.Background(), nil, "inspect", "--format", format, c.Name)
	if err != nil {
		c.t.Fatalf("inspect container %s: %v", c.Name, err)
	}
	return out
}

// PID returns the host PID of the container's init process (0 when it is not running).
func (c *Container) PID() int {
	c.t.Helper()
	out := c.Inspect("{{.State.Pid}}")
	pid, err := strconv.Atoi(out)
	if err != nil {
		c.t.Fatalf("container %s: unexpected pid %q", c.Name, out)
	}
	return pid
}

// Running reports whether the container is running.
func (c *Container) Running() bool {
	c.t.Helper()
	return c.Inspect("{{.State.Running}}") == "true"
}

// Logs returns the container's stdout and stderr so far.
func (c *Container) Logs() string {
	c.t.Helper()
	logs, err := c.logs()
	if err != nil {
		c.t.Fatal(err)
	}
	return logs
}

func (c *Container) logs() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.d.cli, "logs", c.Name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // the container's stderr arrives on the CLI's stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker logs %s: %w: %s", c.Name, err, out.String())
	}
	return out.String(), nil
}

// Stop stops the container (SIGTERM, then SIGKILL after 10 s).
func (c *Container) Stop() {
	c.t.Helper()
	if _, err := c.d.output(context.Background(), nil, "stop", "-t", "10", c.Name); err != nil {
		c.t.Fatalf("stop container: %v", err)
	}
}

// Exec runs a command in the container and returns its combined output.
func (c *Container) Exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.d.cli, append([]string{"exec", c.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker exec %s %s: %w: %s", c.Name, shortArgs(args), err, out)
	}
	return string(out), nil
}

// WaitLog waits until the container's log contains substr. It returns an error, with the
// log, when the timeout passes or the container stops first.
func (c *Container) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		logs, err := c.logs()
		if err != nil {
			return err
		}
		if strings.Contains(logs, substr) {
			return nil
		}
		running, _ := c.d.output(context.Background(), nil, "inspect", "--format", "{{.State.Running}}", c.Name)
		if running == "false" {
			if logs, err = c.logs(); err == nil && strings.Contains(logs, substr) {
				return nil
			}
			return fmt.Errorf("container %s stopped before logging %q; log:\n%s", c.Name, substr, logs)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s did not log %q within %s; log:\n%s", c.Name, substr, timeout, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ShortID is the form of a container ID that boxtap's stderr lines show.
func ShortID(id string) string { return container.Info{ID: id}.ShortID() }

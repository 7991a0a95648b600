package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containertypes "github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"

	"github.com/boxtap/boxtap/runtime/cgroup"
	"github.com/boxtap/boxtap/runtime/container"
)

const testImage = "boxtap-runtime-test:latest"

// needEnv skips the test when it cannot run here (not root, no dockerd), but
// fails it when CI=true, where the environment must provide these.
func needEnv(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration test cannot run: %s (CI=true requires it)", why)
	}
	t.Skipf("skipping integration test: %s", why)
}

// dockerEnv connects to the real daemon, makes sure the test image exists, and
// returns a Client plus the raw API client for setting up containers.
func dockerEnv(t *testing.T) (*Client, *client.Client) {
	t.Helper()
	needEnv(t, os.Geteuid() == 0, "needs root")
	ctx := context.Background()
	c, err := New(ctx, "")
	needEnv(t, err == nil, fmt.Sprintf("no Docker daemon: %v", err))
	t.Cleanup(func() { c.Close() })
	ensureImage(t, c.api)
	return c, c.api
}

// ensureImage builds a one-file image holding a static Go program that waits
// for SIGTERM, with `docker import`.
func ensureImage(t *testing.T, api *client.Client) {
	t.Helper()
	ctx := context.Background()
	if _, err := api.ImageInspect(ctx, testImage); err == nil {
		return
	}
	dir := t.TempDir()
	src := `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sleeper\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sleeper")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sleeper: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	if err := tw.WriteHeader(&tar.Header{Name: "sleeper", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	rc, err := api.ImageImport(ctx, image.ImportSource{Source: &tarball, SourceName: "-"}, testImage,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["/sleeper"]`}})
	if err != nil {
		t.Fatalf("docker import: %v", err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := api.ImageInspect(ctx, testImage); err != nil {
		t.Fatalf("imported image %s not found: %v", testImage, err)
	}
}

// runContainer creates (and unless created-only, starts) a container from the
// test image and removes it when the test ends.
func runContainer(t *testing.T, api *client.Client, name string, labels map[string]string, start bool) string {
	t.Helper()
	ctx := context.Background()
	resp, err := api.ContainerCreate(ctx,
		&containertypes.Config{Image: testImage, Labels: labels},
		&containertypes.HostConfig{NetworkMode: "none"}, nil, nil, name)
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = api.ContainerRemove(context.Background(), resp.ID, containertypes.RemoveOptions{Force: true})
	})
	if start {
		if err := api.ContainerStart(ctx, resp.ID, containertypes.StartOptions{}); err != nil {
			t.Fatalf("start container %s: %v", name, err)
		}
	}
	return resp.ID
}

func testName(t *testing.T, suffix string) string {
	return fmt.Sprintf("boxtap-rt-%d-%s-%s", os.Getpid(), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), suffix)
}

func TestIntegrationAPIVersionNegotiation(t *testing.T) {
	c, api := dockerEnv(t)
	v, err := api.ServerVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("daemon %s (API %s, min %s); client negotiated API %s", v.Version, v.APIVersion, v.MinAPIVersion, c.APIVersion())
	if c.ServerAPIVersion() != v.APIVersion {
		t.Errorf("ping API version %q differs from /version API version %q", c.ServerAPIVersion(), v.APIVersion)
	}
	// The client uses the daemon's version when that is older than its own
	// maximum (which is newer than any daemon this test targets).
	if versions.LessThan(c.APIVersion(), v.APIVersion) && versions.LessThan(v.APIVersion, "1.50") {
		t.Errorf("negotiated %s, lower than the daemon's %s", c.APIVersion(), v.APIVersion)
	}
	if versions.GreaterThan(c.APIVersion(), v.APIVersion) {
		t.Errorf("negotiated %s, higher than the daemon's %s", c.APIVersion(), v.APIVersion)
	}
	if strings.HasPrefix(v.Version, "20.10.") && c.APIVersion() != "1.41" {
		t.Errorf("Docker %s: negotiated API %s, want 1.41", v.Version, c.APIVersion())
	}
}

func TestIntegrationResolve(t *testing.T) {
	c, api := dockerEnv(t)
	ctx := context.Background()
	labels := map[string]string{
		container.LabelPodName: "web-0", container.LabelPodNamespace: "shop", container.LabelPodUID: "uid-1",
		"io.kubernetes.docker.type": "podsandbox",
	}
	name := testName(t, "a")
	id := runContainer(t, api, name, labels, true)

	tests := []struct{ how, query string }{
		{"name", name},
		{"name with slash", "/" + name},
		{"full ID", id},
		{"short ID", id[:12]},
	}
	for _, tt := range tests {
		t.Run(tt.how, func(t *testing.T) {
			info, err := c.Resolve(ctx, tt.query)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.query, err)
			}
			if info.ID != id || info.Name != name {
				t.Fatalf("Resolve(%q) = %s (%s), want %s (%s)", tt.query, info.Name, info.ID, name, id)
			}
		})
	}

	info, err := c.Resolve(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	insp, err := api.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.PID != insp.State.Pid || info.PID <= 0 {
		t.Errorf("PID = %d, want %d", info.PID, insp.State.Pid)
	}
	if info.Image != testImage {
		t.Errorf("Image = %q, want %q", info.Image, testImage)
	}
	if !strings.HasPrefix(info.ImageDigest, "sha256:") || info.ImageDigest != insp.Image {
		t.Errorf("ImageDigest = %q, want the image ID %q (imported images have no repo digest)", info.ImageDigest, insp.Image)
	}
	if info.Runtime != "docker" {
		t.Errorf("Runtime = %q", info.Runtime)
	}
	if info.Labels[container.LabelPodName] != "web-0" {
		t.Errorf("Labels = %v", info.Labels)
	}
	wantPod := container.Pod{Name: "web-0", Namespace: "shop", UID: "uid-1", Sandbox: true}
	if info.Pod != wantPod {
		t.Errorf("Pod = %+v, want %+v", info.Pod, wantPod)
	}

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		if l.PID <= 0 {
			t.Errorf("List returned %s with PID %d", l.Name, l.PID)
		}
		if l.ID == id {
			found = true
		}
	}
	if !found {
		t.Errorf("List does not include the running container %s", name)
	}
}

func TestIntegrationResolveAmbiguousPrefix(t *testing.T) {
	c, api := dockerEnv(t)
	ctx := context.Background()
	// Start containers until two share a first hex digit (at most 17 by the
	// pigeonhole principle).
	byFirst := map[byte]string{}
	var prefix string
	var pair [2]string
	for i := 0; i < 17 && prefix == ""; i++ {
		name := testName(t, fmt.Sprint(i))
		id := runContainer(t, api, name, nil, true)
		if other, ok := byFirst[id[0]]; ok {
			prefix, pair = id[:1], [2]string{other, name}
		}
		byFirst[id[0]] = name
	}
	if prefix == "" {
		t.Fatal("no two containers share a first ID digit after 17 tries")
	}
	_, err := c.Resolve(ctx, prefix)
	var amb *container.AmbiguousError
	if !errors.As(err, &amb) {
		t.Fatalf("Resolve(%q) error = %v, want *container.AmbiguousError", prefix, err)
	}
	for _, name := range pair {
		if !strings.Contains(err.Error(), name+" (") {
			t.Errorf("ambiguity error %q does not list %s", err, name)
		}
	}
	t.Logf("%v", err)
}

func TestIntegrationResolveUnknown(t *testing.T) {
	c, _ := dockerEnv(t)
	query := testName(t, "does-not-exist")
	_, err := c.Resolve(context.Background(), query)
	var nf *container.NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("Resolve(%q) error = %v, want *container.NotFoundError", query, err)
	}
	if !strings.Contains(err.Error(), query) || !strings.Contains(err.Error(), "docker ps") {
		t.Errorf("error %q should name the query and suggest docker ps", err)
	}
}

func TestIntegrationResolveStopped(t *testing.T) {
	c, api := dockerEnv(t)
	ctx := context.Background()

	stopped := testName(t, "stopped")
	id := runContainer(t, api, stopped, nil, true)
	timeout := 10
	if err := api.ContainerStop(ctx, id, containertypes.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	created := testName(t, "created")
	runContainer(t, api, created, nil, false)

	for _, name := range []string{stopped, created} {
		_, err := c.Resolve(ctx, name)
		if err == nil {
			t.Fatalf("Resolve(%q) of a container that is not running succeeded", name)
		}
		var nf *container.NotFoundError
		if errors.As(err, &nf) || !strings.Contains(err.Error(), "not running") || !strings.Contains(err.Error(), name) {
			t.Errorf("Resolve(%q) error = %q, want a not-running error naming it", name, err)
		}
		t.Logf("%v", err)
	}
}

func TestIntegrationContainerCgroup(t *testing.T) {
	c, api := dockerEnv(t)
	ctx := context.Background()
	name := testName(t, "cg")
	id := runContainer(t, api, name, nil, true)
	info, err := c.Resolve(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	mount, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := cgroup.PathOfPID(info.PID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rel, id) {
		t.Errorf("cgroup path %q of container %s does not contain its ID", rel, id)
	}
	dir, err := cgroup.Dir(mount, rel)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dir, mount+"/") {
		t.Errorf("cgroup dir %s is not under the v2 mount %s", dir, mount)
	}
	cgid, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("container %s pid %d: cgroup %s (id %d)", info.ShortID(), info.PID, dir, cgid)

	// Stopping the container empties its cgroup.
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cgroup.WaitEmpty(waitCtx, dir) }()
	timeout := 10
	if err := api.ContainerStop(ctx, id, containertypes.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitEmpty after docker stop: %v", err)
	}
}

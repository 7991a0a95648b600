// Package ctrtest creates throw-away containerd images and containers for
// integration tests, without a registry: the test image is an OCI image
// archive built in memory around one static binary and imported through
// containerd's API.
package ctrtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	ctrd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxtap/boxtap/internal/itest"
)

// Env is a connection to a containerd daemon used by one test.
type Env struct {
	Address string
	Client  *ctrd.Client
}

// Require connects to containerd at address (empty: the default socket),
// skipping the test (failing it in CI) when it does not answer.
func Require(t testing.TB, address string) *Env {
	t.Helper()
	itest.RequireRoot(t)
	if address == "" {
		address = "/run/containerd/containerd.sock"
	}
	c, err := ctrd.New(address, ctrd.WithTimeout(10*time.Second))
	itest.Require(t, err == nil, "needs containerd at %s: %v", address, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Version(ctx)
	if err != nil {
		c.Close()
	}
	itest.Require(t, err == nil, "needs a running containerd at %s (start it with scripts/ensure-deps.sh): %v", address, err)
	t.Cleanup(func() { c.Close() })
	return &Env{Address: address, Client: c}
}

// ImageArchive returns an OCI image archive (oci-layout, index.json,
// blobs) whose only file is bin at /NAME, its entrypoint, named ref.
func ImageArchive(bin []byte, name, ref string) ([]byte, error) {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerDigest := digest.FromBytes(layer.Bytes())
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Entrypoint: []string{"/" + name}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDigest}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	manifest := ocispec.Manifest{
		Versioned: ocispecs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgJSON), Size: int64(len(cfgJSON))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: layerDigest, Size: int64(layer.Len())}},
	}
	manJSON, err := json.Marshal(manifest)
	if err != nil {
		return nil, err
	}
	index := ocispec.Index{
		Versioned: ocispecs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType:   ocispec.MediaTypeImageManifest,
			Digest:      digest.FromBytes(manJSON),
			Size:        int64(len(manJSON)),
			Platform:    &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
			Annotations: map[string]string{"io.containerd.image.name": ref, ocispec.AnnotationRefName: ref},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	aw := tar.NewWriter(&out)
	add := func(path string, data []byte) error {
		if err := aw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := aw.Write(data)
		return err
	}
	blob := func(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }
	for _, f := range []struct {
		path string
		data []byte
	}{
		{ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
		{blob(digest.FromBytes(manJSON)), manJSON},
		{blob(digest.FromBytes(cfgJSON)), cfgJSON},
		{blob(layerDigest), layer.Bytes()},
	} {
		if err := add(f.path, f.data); err != nil {
			return nil, fmt.Errorf("image archive %s: %w", f.path, err)
		}
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// TestImage imports (once per namespace and binary) an image whose
// entrypoint is the static testapp, unpacks it, and returns it.
func (e *Env) TestImage(t testing.TB, ns string) ctrd.Image {
	t.Helper()
	data, err := os.ReadFile(itest.BuildTestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	ref := "docker.io/boxtap/testapp:" + hex.EncodeToString(sum[:])[:16]
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
	defer cancel()
	img, err := e.Client.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) {
		archive, aerr := ImageArchive(data, "testapp", ref)
		if aerr != nil {
			t.Fatalf("build image archive: %v", aerr)
		}
		imgs, ierr := e.Client.Import(ctx, bytes.NewReader(archive))
		if ierr != nil {
			t.Fatalf("import test image into containerd namespace %s: %v", ns, ierr)
		}
		if len(imgs) == 0 {
			t.Fatalf("import test image: no image imported")
		}
		img, err = e.Client.GetImage(ctx, ref)
	}
	if err != nil {
		t.Fatalf("get test image %s: %v", ref, err)
	}
	if ok, _ := img.IsUnpacked(ctx, "overlayfs"); !ok {
		if err := img.Unpack(ctx, "overlayfs"); err != nil {
			t.Fatalf("unpack test image: %v", err)
		}
	}
	return img
}

// RunOpts describe a container for Run.
type RunOpts struct {
	Namespace string
	ID        string            // default: "boxtap-ctr-<random>"
	Labels    map[string]string // container labels
	Args      []string          // testapp arguments, e.g. "serve", "-addr", ":8080"
	Hostname  string
}

// Task is a running containerd container created by Run.
type Task struct {
	ID        string
	Namespace string
	PID       uint32
	Log       string // path of the container's stdout+stderr

	env     *Env
	ctr     ctrd.Container
	task    ctrd.Task
	exit    <-chan ctrd.ExitStatus
	removed sync.Once
}

// RandomID returns "prefix-<8 hex>".
func RandomID(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Run creates and starts a container running the testapp with host
// networking, and removes it when the test ends.
func (e *Env) Run(t testing.TB, opts RunOpts) *Task {
	t.Helper()
	if opts.ID == "" {
		opts.ID = RandomID("boxtap-ctr")
	}
	img := e.TestImage(t, opts.Namespace)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), opts.Namespace), time.Minute)
	defer cancel()
	specOpts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithHostNamespace(specs.NetworkNamespace),
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		oci.WithProcessArgs(append([]string{"/testapp"}, opts.Args...)...),
	}
	if opts.Hostname != "" {
		specOpts = append(specOpts, oci.WithHostname(opts.Hostname))
	}
	ctr, err := e.Client.NewContainer(ctx, opts.ID,
		ctrd.WithImage(img),
		ctrd.WithNewSnapshot(opts.ID+"-snap", img),
		ctrd.WithContainerLabels(opts.Labels),
		ctrd.WithRuntime("io.containerd.runc.v2", nil),
		ctrd.WithNewSpec(specOpts...),
	)
	if err != nil {
		t.Fatalf("create containerd container %s/%s: %v", opts.Namespace, opts.ID, err)
	}
	tk := &Task{ID: opts.ID, Namespace: opts.Namespace, env: e, ctr: ctr}
	t.Cleanup(func() { tk.Remove(t) })
	tk.Log = filepath.Join(t.TempDir(), opts.ID+".log")
	task, err := ctr.NewTask(ctx, cio.LogFile(tk.Log))
	if err != nil {
		t.Fatalf("create task %s: %v", opts.ID, err)
	}
	tk.task = task
	exit, err := task.Wait(context.WithoutCancel(ctx))
	if err != nil {
		t.Fatalf("wait task %s: %v", opts.ID, err)
	}
	tk.exit = exit
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start task %s: %v", opts.ID, err)
	}
	tk.PID = task.Pid()
	return tk
}

// Kill sends sig to the container's init and waits (up to 30 s) for it to
// exit. The task is kept (so its cgroup stays) until the test ends.
func (tk *Task) Kill(t testing.TB, sig syscall.Signal) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), tk.Namespace)
	if err := tk.task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("kill %s: %v", tk.ID, err)
	}
	select {
	case <-tk.exit:
	case <-time.After(30 * time.Second):
		t.Fatalf("container %s did not exit within 30s of %v", tk.ID, sig)
	}
}

// Remove kills the container, deletes its task, then the container and
// its snapshot. It runs once; Run registers it as a cleanup, so call it
// only to remove a container earlier (e.g. before stopping its daemon).
func (tk *Task) Remove(t testing.TB) {
	tk.removed.Do(func() { tk.remove(t) })
}

func (tk *Task) remove(t testing.TB) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), tk.Namespace), 30*time.Second)
	defer cancel()
	if tk.task != nil {
		_ = tk.task.Kill(ctx, syscall.SIGKILL)
		if tk.exit != nil {
			select {
			case <-tk.exit:
			case <-ctx.Done():
			}
		}
		if _, err := tk.task.Delete(ctx, ctrd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			t.Logf("delete task %s: %v", tk.ID, err)
		}
	}
	if err := tk.ctr.Delete(ctx, ctrd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		t.Logf("delete container %s: %v", tk.ID, err)
	}
	if t.Failed() {
		if data, err := os.ReadFile(tk.Log); err == nil {
			t.Logf("log of containerd container %s:\n%s", tk.ID, tail(data, 2000))
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// RemoveNamespace deletes a namespace (and its images) when it holds no
// container; errors are logged, not fatal.
func (e *Env) RemoveNamespace(t testing.TB, ns string) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	imgs, err := e.Client.ImageService().List(ctx)
	if err == nil {
		for _, img := range imgs {
			_ = e.Client.ImageService().Delete(ctx, img.Name)
		}
	}
	// Content and snapshots go with garbage collection; retry while the
	// namespace still holds leases or blobs being collected.
	for range 20 {
		err = e.Client.NamespaceService().Delete(ctx, ns)
		if err == nil || errdefs.IsNotFound(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("remove containerd namespace %s: %v", ns, err)
	}
}

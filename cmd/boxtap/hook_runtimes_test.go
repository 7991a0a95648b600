package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// testAppTar writes a tar holding only /testapp, for "podman import" and
// "docker import".
func (e *hookEnv) testAppTar(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(e.testapp)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "testapp", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, "testapp.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// exampleFile reads a file of examples/ with the installed paths replaced
// by this test's.
func (e *hookEnv) exampleFile(t *testing.T, rel string, replace ...string) []byte {
	t.Helper()
	root, err := itest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "examples", rel))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(replace...).Replace(string(data))
	return []byte(s)
}

func command(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := os.CreateTemp("", "bxh-cmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return strings.TrimSpace(string(out)), err
}

// The podman hooks.d examples: the annotated variant traces only the
// annotated container (with an output-dir option), the always variant
// traces a container without annotation.
func TestHookPodmanHooksDir(t *testing.T) {
	e := newHookEnv(t)
	ph := newPodmanHooks(t, e)
	// A directory boxtap did not make: an annotation may not choose it.
	if err := os.Mkdir(filepath.Join(e.out, "admin"), 0o700); err != nil {
		t.Fatal(err)
	}
	podman := func(variant string, args ...string) (string, error) { return ph.podman(t, variant, args...) }
	annotated, always, image := "annotated", "always", ph.image
	run := []string{"run", "-d", "--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

	// Annotated server: called at once; its file goes to the output-dir it asked for.
	port := itest.FreePort(t)
	start := time.Now()
	id, err := podman(annotated, append(run, "--annotation", "io.boxtap.trace=output-dir=web", image, "/testapp", "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))...)
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, id)
	}
	first := firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/206", port), start)
	t.Logf("podman: first response %s after podman run started", first)
	if out, err := podman(annotated, "rm", "-f", "-t", "1", id); err != nil {
		t.Fatalf("podman rm: %v\n%s", err, out)
	}
	waitNoTracer(t, id, 10*time.Second)
	evs := readHookEvents(t, filepath.Join(e.out, "web", id+".json"))
	if len(evs) == 0 || evs[0].Status != 206 || evs[0].ContainerID != id {
		t.Fatalf("annotated server events: %+v\nhook log:\n%s", evs, e.hookLog())
	}
	// boxtap made the subdirectory itself, private, and the file through the
	// hardened sink.
	for path, mode := range map[string]os.FileMode{filepath.Join(e.out, "web"): 0o700, filepath.Join(e.out, "web", id+".json"): 0o600} {
		if st, err := os.Lstat(path); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %04o", path, st, err, mode)
		}
	}

	// An annotation naming a directory boxtap did not make: not traced,
	// one line says why, the container starts.
	refused, err := podman(annotated, append(run, "--annotation", "io.boxtap.trace=output-dir=admin", image, "/testapp", "sleep")...)
	if err != nil {
		t.Fatalf("podman run with a refused output-dir failed to start (the hook fails open): %v\n%s", err, refused)
	}
	if pids := tracerPIDs(refused); len(pids) != 0 {
		t.Errorf("a container was traced into a directory boxtap did not make: %v", pids)
	}
	if !strings.Contains(e.hookLog(), "was not made by boxtap") {
		t.Errorf("the hook log does not say why admin/ was refused:\n%s", e.hookLog())
	}
	if entries, _ := os.ReadDir(filepath.Join(e.out, "admin")); len(entries) != 0 {
		t.Errorf("something was written into admin/: %v", entries)
	}
	podman(annotated, "rm", "-f", "-t", "0", refused)

	// Not annotated, annotated hooks: not traced.
	plain, err := podman(annotated, append(run, image, "/testapp", "sleep")...)
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, plain)
	}
	if pids := tracerPIDs(plain); len(pids) != 0 {
		t.Errorf("a container without the annotation is traced: %v", pids)
	}
	podman(annotated, "rm", "-f", "-t", "0", plain)

	// Client that calls out once at start-up, always variant, no annotation.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusPartialContent)
	}))
	defer srv.Close()
	cid, err := podman(always, append(run, image, "/testapp", "get", "-url", srv.URL+"/podman-startup")...)
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, cid)
	}
	if out, err := podman(always, "wait", cid); err != nil {
		t.Fatalf("podman wait: %v\n%s", err, out)
	}
	waitNoTracer(t, cid, 30*time.Second)
	podman(always, "rm", "-f", cid)
	evs = readHookEvents(t, filepath.Join(e.out, cid+".json"))
	if !hasEvent(evs, "/podman-startup", http.StatusPartialContent, "ingress") {
		t.Fatalf("start-up call not in the file: %+v\nhook log:\n%s", evs, e.hookLog())
	}
}

func hasEvent(evs []hookEvent, path string, status int, dir string) bool {
	for _, ev := range evs {
		if ev.URIPath == path && ev.Status == status && ev.Direction == dir {
			return true
		}
	}
	return false
}

// privateDocker is a dockerd started by the test, on its own socket, state
// directories and containerd namespace, sharing the machine's containerd.
type privateDocker struct {
	host string
	cmd  *exec.Cmd
}

func startPrivateDocker(t *testing.T, e *hookEnv, daemonJSON []byte) *privateDocker {
	t.Helper()
	const containerdSock = "/run/containerd/containerd.sock"
	_, err := exec.LookPath("dockerd")
	itest.Require(t, err == nil, "needs dockerd (apt-get install docker.io)")
	_, err = os.Stat(containerdSock)
	itest.Require(t, err == nil, "needs containerd at %s (scripts/ensure-deps.sh starts it)", containerdSock)
	dir := filepath.Join(e.dir, "d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, daemonJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("boxtap-itest-%d", os.Getpid())
	sock := filepath.Join(dir, "docker.sock")
	log, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("dockerd", "--config-file", cfg,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "-H", "unix://"+sock,
		"--containerd", containerdSock, "--containerd-namespace", ns, "--containerd-plugins-namespace", ns+"-plugins",
		"--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip6tables=false")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	d := &privateDocker{host: "unix://" + sock, cmd: cmd}
	t.Cleanup(func() {
		d.docker(t, "rm", "-f", "$(all)")
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		for _, m := range []string{"exec/netns/default", "exec", "data"} {
			exec.Command("umount", "-R", filepath.Join(dir, m)).Run()
		}
		exec.Command("ctr", "namespaces", "rm", ns).Run()
		exec.Command("ctr", "namespaces", "rm", ns+"-plugins").Run()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.docker(t, "version"); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(log.Name())
			t.Fatalf("the private dockerd did not answer within 60s:\n%s", data)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *privateDocker) docker(t *testing.T, args ...string) (string, error) {
	if len(args) == 3 && args[2] == "$(all)" {
		ids, _ := command(t, "docker", "-H", d.host, "ps", "-aq")
		if ids == "" {
			return "", nil
		}
		args = append(args[:2], strings.Fields(ids)...)
	}
	return command(t, "docker", append([]string{"-H", d.host}, args...)...)
}

// docker run --runtime boxtap, through a private dockerd configured with
// examples/docker/daemon.json.
func TestHookDockerRuntime(t *testing.T) {
	e := newHookEnv(t)
	_, err := exec.LookPath("docker")
	itest.Require(t, err == nil, "needs the docker CLI")
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	daemonJSON := e.exampleFile(t, "docker/daemon.json",
		"/usr/local/bin/boxtap", e.boxtap,
		"--runtime-path=/usr/sbin/runc", "--runtime-path="+runc,
		`"--output-dir=/var/log/boxtap"`, fmt.Sprintf(`"--output-dir=%s", "--run-dir=%s"`, e.out, e.run))
	var check struct {
		Runtimes map[string]struct{ Path string }
	}
	if err := json.Unmarshal(daemonJSON, &check); err != nil || check.Runtimes["boxtap"].Path != e.boxtap {
		t.Fatalf("examples/docker/daemon.json: %v %+v", err, check)
	}
	d := startPrivateDocker(t, e, daemonJSON)
	image := "boxtap-hook-test:1"
	if out, err := d.docker(t, "import", e.testAppTar(t), image); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	run := []string{"run", "-d", "--runtime", "boxtap", "--network", "host"}

	port := itest.FreePort(t)
	start := time.Now()
	id, err := d.docker(t, append(run, image, "/testapp", "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))...)
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, id)
	}
	first := firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/207", port), start)
	t.Logf("docker: first response %s after docker run started", first)
	if out, err := d.docker(t, "rm", "-f", id); err != nil {
		t.Fatalf("docker rm: %v\n%s", err, out)
	}
	waitNoTracer(t, id, 10*time.Second)
	evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
	if len(evs) == 0 || evs[0].Status != 207 || evs[0].ContainerID != id {
		t.Fatalf("server events: %+v\nhook log:\n%s", evs, e.hookLog())
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAlreadyReported)
	}))
	defer srv.Close()
	cid, err := d.docker(t, append(run, image, "/testapp", "get", "-url", srv.URL+"/docker-startup")...)
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, cid)
	}
	if out, err := d.docker(t, "wait", cid); err != nil {
		t.Fatalf("docker wait: %v\n%s", err, out)
	}
	waitNoTracer(t, cid, 30*time.Second)
	d.docker(t, "rm", "-f", cid)
	evs = readHookEvents(t, filepath.Join(e.out, cid+".json"))
	if !hasEvent(evs, "/docker-startup", http.StatusAlreadyReported, "ingress") {
		t.Fatalf("start-up call not in the file: %+v\nhook log:\n%s", evs, e.hookLog())
	}
}

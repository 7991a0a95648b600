package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// podmanHooks runs podman with private storage and the hooks.d examples, installed with
// this test's boxtap, output and run directories.
type podmanHooks struct {
	e     *hookEnv
	dirs  map[string]string // hooks directory per example variant ("annotated", "always")
	image string
}

// newPodmanHooks requires podman, installs both hooks.d variants and imports the test
// image; everything podman created is removed when the test ends.
func newPodmanHooks(t *testing.T, e *hookEnv) *podmanHooks {
	t.Helper()
	_, err := exec.LookPath("podman")
	itest.Require(t, err == nil, "needs podman (apt-get install podman)")
	ph := &podmanHooks{e: e, dirs: map[string]string{}, image: "localhost/boxtap-hook-test:1"}
	for _, variant := range []string{"annotated", "always"} {
		dir := filepath.Join(e.dir, "hooks-"+variant)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data := e.exampleFile(t, "hooks.d/"+variant+"/boxtap.json",
			"/usr/local/bin/boxtap", e.boxtap,
			`"--output-dir=/var/log/boxtap"`, fmt.Sprintf(`"--output-dir=%s", "--run-dir=%s"`, e.out, e.run))
		if err := os.WriteFile(filepath.Join(dir, "boxtap.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ph.dirs[variant] = dir
	}
	if out, err := ph.podman(t, "annotated", "import", e.testAppTar(t), ph.image); err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		ph.podman(t, "annotated", "rm", "-f", "-a")
		ph.podman(t, "annotated", "rmi", "-f", "-a")
		// podman's overlay mounts live under the storage dir; unmount before removal.
		exec.Command("umount", "-R", filepath.Join(e.dir, "storage", "overlay")).Run()
	})
	return ph
}

// podman runs podman with the hooks of one variant.
func (ph *podmanHooks) podman(t *testing.T, variant string, args ...string) (string, error) {
	t.Helper()
	base := []string{"--root", filepath.Join(ph.e.dir, "storage"), "--runroot", filepath.Join(ph.e.dir, "runroot"),
		"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--hooks-dir", ph.dirs[variant]}
	return command(t, "podman", append(base, args...)...)
}

// runServer starts `testapp serve` on a free port of the host network in a container with
// the given annotation value (none when empty) and returns its id and base URL.
func (ph *podmanHooks) runServer(t *testing.T, variant, annotation string) (string, string) {
	t.Helper()
	port := itest.FreePort(t)
	args := []string{"run", "-d", "--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}
	if annotation != "" {
		args = append(args, "--annotation", "io.boxtap.trace="+annotation)
	}
	args = append(args, ph.image, "/testapp", "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	id, err := ph.podman(t, variant, args...)
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, id)
	}
	return id, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// remove removes a container and waits until its tracer, if any, has gone.
func (ph *podmanHooks) remove(t *testing.T, variant, id string) {
	t.Helper()
	if out, err := ph.podman(t, variant, "rm", "-f", "-t", "1", id); err != nil {
		t.Fatalf("podman rm: %v\n%s", err, out)
	}
	waitNoTracer(t, id, 30*time.Second)
}

// getWithHeaders makes one GET with extra request headers, once the server accepts.
func getWithHeaders(t *testing.T, url string, header http.Header) {
	t.Helper()
	waitAccepting(t, url)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// requestHeaderValues returns the values of one request header in each event of a hook's
// output file, read from the raw JSON.
func requestHeaderValues(t *testing.T, path, name string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the output: %v", err)
	}
	var all [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Args []struct {
				Name  string          `json:"name"`
				Value json.RawMessage `json:"value"`
			} `json:"args"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s: a line is not JSON (%v): %s", path, err, line)
		}
		for _, a := range ev.Args {
			if a.Name != "http_request" {
				continue
			}
			var r struct {
				Headers map[string][]string `json:"headers"`
			}
			if err := json.Unmarshal(a.Value, &r); err != nil {
				t.Fatalf("%s: bad http_request: %v", path, err)
			}
			all = append(all, r.Headers[name])
		}
	}
	return all
}

// TestHookAnnotationRedactHeaderAndTraceFalse runs podman with the hooks.d examples: the
// annotation io.boxtap.trace=redact-header=X-Tenant makes the tracer redact that header
// (which the defaults print, as an annotation without the option shows), and
// io.boxtap.trace=false keeps a container untraced under both variants, even the one that
// traces every container.
func TestHookAnnotationRedactHeaderAndTraceFalse(t *testing.T) {
	e := newHookEnv(t)
	ph := newPodmanHooks(t, e)
	const secret, visible = "tenant-4711-value", "visible-value"
	header := http.Header{"X-Tenant": {secret}, "X-Other": {visible}}

	for _, tc := range []struct {
		annotation string
		want       string // X-Tenant's value in the event
	}{
		{"redact-header=X-Tenant", "<redacted>"},
		{"true", secret},
	} {
		id, url := ph.runServer(t, "annotated", tc.annotation)
		getWithHeaders(t, url+"/status/200", header)
		ph.remove(t, "annotated", id)
		file := filepath.Join(e.out, id+".json")
		tokens := requestHeaderValues(t, file, "X-Tenant")
		others := requestHeaderValues(t, file, "X-Other")
		if len(tokens) != 1 || len(tokens[0]) != 1 || tokens[0][0] != tc.want || len(others) != 1 || fmt.Sprint(others[0]) != "["+visible+"]" {
			t.Errorf("io.boxtap.trace=%s: request headers X-Tenant %q, X-Other %q in the events; want one event with %q and %q\nhook log:\n%s",
				tc.annotation, tokens, others, tc.want, visible, e.hookLog())
		}
	}

	for _, variant := range []string{"annotated", "always"} {
		id, url := ph.runServer(t, variant, "false")
		// The prestart hook ran before `podman run -d` returned: a tracer would exist now.
		if pids := tracerPIDs(id); len(pids) != 0 {
			t.Errorf("%s hooks: a container with io.boxtap.trace=false has tracers %v", variant, pids)
		}
		getWithHeaders(t, url+"/status/200", header)
		ph.remove(t, variant, id)
		if _, err := os.Stat(filepath.Join(e.out, id+".json")); !os.IsNotExist(err) {
			t.Errorf("%s hooks: a container with io.boxtap.trace=false has an output file (%v)", variant, err)
		}
	}
	// Control: the always variant does trace a container without the annotation.
	id, url := ph.runServer(t, "always", "")
	getWithHeaders(t, url+"/status/200", header)
	ph.remove(t, "always", id)
	if n := len(requestHeaderValues(t, filepath.Join(e.out, id+".json"), "X-Other")); n != 1 {
		t.Errorf("always hooks: %d events for a container without annotation, want 1\nhook log:\n%s", n, e.hookLog())
	}
}

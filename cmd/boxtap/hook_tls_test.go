//go:build amd64

// TLS capture is built for amd64 only (see bpf/tls_other.go).

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// tlsHooks are a createRuntime and a poststop hook with extra options.
func (e *hookEnv) tlsHooks(extra ...string) *specs.Hooks {
	h := func(stage string) []specs.Hook {
		return []specs.Hook{{Path: e.boxtap, Args: append([]string{"boxtap", "hook", stage}, e.hookArgs(extra...)...)}}
	}
	return &specs.Hooks{CreateRuntime: h("createRuntime"), Poststop: h("poststop")}
}

// hostUsrBundle writes a bundle for container id that runs args from the
// host's /usr (read-only bind mounts: the container maps the host's very
// libssl.so.3 file) in a root file system of its own, with dir mounted
// read-write at the same path.
func (e *hookEnv) hostUsrBundle(t *testing.T, id string, hooks *specs.Hooks, ann map[string]string, dir string, args ...string) string {
	t.Helper()
	for _, f := range []string{"/usr/bin/curl", "/usr/sbin/nginx"} {
		_, err := os.Stat(f)
		itest.Require(t, err == nil, "needs Debian's curl and nginx (apt-get install curl nginx): %v", err)
	}
	b := e.bundle(t, id, hooks)
	root := filepath.Join(e.dir, "root-"+id)
	for _, d := range []string{"usr", "etc/ssl", "proc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"lib", "lib64", "bin", "sbin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group", "etc/ld.so.cache"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(b, "config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Root = &specs.Root{Path: root, Readonly: true}
	spec.Process.Args = args
	spec.Annotations = ann
	ro := []string{"rbind", "ro", "nosuid", "nodev"}
	for _, m := range []string{"/usr", "/etc/ssl", "/etc/passwd", "/etc/group", "/etc/ld.so.cache"} {
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: m, Type: "bind", Source: m, Options: ro})
	}
	if dir != "" {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: dir, Type: "bind", Source: dir, Options: []string{"rbind", "rw"}})
	}
	if data, err = json.MarshalIndent(&spec, "", " "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitListening waits until something accepts on 127.0.0.1:port.
func waitListening(t *testing.T, port int, what func() string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %d: %v; %s", port, err, what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A hooked nginx serving HTTPS (Debian's, dynamically linked libssl.so.3)
// is traced with --tls from its start: the first HTTPS responses are in its
// file, each once, with tls=true, its own ports and paths, and after
// poststop nothing is left. Without --tls (the hook's default) the file
// holds no event: the packets carry ciphertext only.
func TestHookTLSServerFirstResponses(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ann  string
		want int
	}{
		{"flag", []string{"--tls"}, "", 5},
		{"plain", nil, "", 0},
		{"annotation", nil, "tls=true", 5},
		{"annotationoff", []string{"--tls"}, "tls=false", 0},
		// The host tracer reads no TLS: the container gets a tracer of its own.
		{"hosttracer", []string{"--tls", "--tracer=host"}, "", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHookEnv(t)
			port := itest.FreePort(t)
			dir, conf := tlsTestDir(t, port, "ssl")
			id := e.prefix + "tls" + tc.name
			var ann map[string]string
			if tc.ann != "" {
				ann = map[string]string{"io.boxtap.trace": tc.ann}
			}
			b := e.hostUsrBundle(t, id, e.tlsHooks(tc.args...), ann, dir, "/usr/sbin/nginx", "-c", conf, "-p", dir, "-e", "stderr")
			if err := e.start(t, id, b); err != nil {
				t.Fatal(err)
			}
			waitListening(t, port, func() string {
				log, _ := os.ReadFile(filepath.Join(e.dir, id+".log"))
				return fmt.Sprintf("container log: %s\nhook log: %s", log, e.hookLog())
			})
			lport := httpsGets(t, port, 5, "/tls/", 201)
			if pids := tracerPIDs(id); len(pids) != 1 && tc.want > 0 {
				t.Fatalf("want one tracer of its own for %s, have %v", id, pids)
			}
			cgDir, cgID := cgroupOf(t, e.mount, e.initPID(t, id))
			e.kill(t, id)
			e.delete(t, id)
			waitNoTracer(t, id, 10*time.Second)
			checkNothingAttached(t, cgDir, cgID)
			evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
			if len(evs) != tc.want {
				t.Fatalf("%d events, want %d: %+v\nhook log:\n%s", len(evs), tc.want, evs, e.hookLog())
			}
			for i, ev := range evs {
				want := hookEvent{ContainerID: id, Direction: "egress", URIPath: fmt.Sprintf("/tls/%d", i), Status: 201, SrcPort: port, DstPort: lport, TLS: true}
				if ev != want {
					t.Fatalf("event %d:\n got %+v\nwant %+v", i, ev, want)
				}
			}
		})
	}
}

// A hooked container whose program (curl) makes one HTTPS call as soon as
// it starts: that call's response is in its file, read from curl's first
// SSL calls. The hook instruments the container's process before it execs
// curl (uprobes for that pid on the libssl.so.3 of its root file system),
// so no race with curl's start is involved. The server is the test's own
// nginx on the host, untraced.
func TestHookTLSClientAtStart(t *testing.T) {
	e := newHookEnv(t)
	port := itest.FreePort(t)
	startNginxOnHost(t, port)
	id := e.prefix + "tlscli"
	url := fmt.Sprintf("https://127.0.0.1:%d/at-start", port)
	b := e.hostUsrBundle(t, id, e.tlsHooks("--tls"), nil, "", "/usr/bin/curl", "-sSk", "--http1.1", "-o", "/dev/null", url)
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	e.wantOneTLSClientEvent(t, id, "curl", "/at-start", port)
}

// A hooked container whose program is an HTTPS server with OpenSSL linked
// statically (built here against Debian's libssl.a): it maps no libssl, so
// only the hook, which instruments the program named by the bundle before
// it is exec'd, can read it; its responses are in its file with tls=true.
func TestHookTLSStaticServer(t *testing.T) {
	e := newHookEnv(t)
	gcc, err := exec.LookPath("gcc")
	itest.Require(t, err == nil, "needs gcc (apt-get install gcc)")
	_, err = os.Stat("/usr/lib/x86_64-linux-gnu/libssl.a")
	itest.Require(t, err == nil, "needs OpenSSL's static libraries (apt-get install libssl-dev): %v", err)
	port := itest.FreePort(t)
	dir, _ := tlsTestDir(t, port, "ssl")
	bin := filepath.Join(dir, "tls_static_server")
	if out, err := exec.Command(gcc, "-O2", "-static", "-o", bin, "../../tracer/testdata/tls_static_server.c", "-lssl", "-lcrypto").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	id := e.prefix + "tlsstatic"
	b := e.hostUsrBundle(t, id, e.tlsHooks("--tls"), nil, dir, bin, strconv.Itoa(port), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	waitListening(t, port, func() string {
		log, _ := os.ReadFile(filepath.Join(e.dir, id+".log"))
		return fmt.Sprintf("container log: %s\nhook log: %s", log, e.hookLog())
	})
	const n = 12
	lport := httpsGets(t, port, n, "/s", 200)
	e.kill(t, id)
	e.delete(t, id)
	waitNoTracer(t, id, 10*time.Second)
	evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
	if len(evs) != n {
		t.Fatalf("%d events, want %d: %+v\nhook log:\n%s", len(evs), n, evs, e.hookLog())
	}
	for i, ev := range evs {
		want := hookEvent{ContainerID: id, Direction: "egress", URIPath: fmt.Sprintf("/s%d", i), Status: 200, SrcPort: port, DstPort: lport, TLS: true}
		if ev != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, ev, want)
		}
	}
}

// A hooked container whose program (python3) loads OpenSSL with dlopen
// from a directory the hook does not pre-arm (a copy of libssl.so.3 in
// a directory of its own, loaded through ctypes, which Python's ssl module
// then uses): the tracer instruments the process at its exec notice,
// including a uprobe on its dynamic loader, and that uprobe reports the
// dlopen, so the copy gets its uprobes. The program makes its HTTPS call
// once the test sees them; the response is in the container's file.
func TestHookTLSDlopenOutsideLibraryDirs(t *testing.T) {
	_, err := exec.LookPath("bpftool")
	itest.Require(t, err == nil, "needs bpftool on PATH (apt-get install bpftool)")
	_, err = os.Stat("/usr/bin/python3")
	itest.Require(t, err == nil, "needs Debian's python3 (apt-get install python3): %v", err)
	e := newHookEnv(t)
	port := itest.FreePort(t)
	startNginxOnHost(t, port)
	dir := t.TempDir()
	lib, err := os.ReadFile("/usr/lib/x86_64-linux-gnu/libssl.so.3")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "own"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "own", "libssl.so.3"), lib, 0o755); err != nil {
		t.Fatal(err)
	}
	id := e.prefix + "tlsdlopen"
	b := e.hostUsrBundle(t, id, e.tlsHooks("--tls"), nil, dir, "/usr/bin/python3", "-c", `
import ctypes, os, sys, time
d = sys.argv[1]
ctypes.CDLL(d + "/own/libssl.so.3")
import http.client, ssl
open(d + "/loaded", "w").close()
for i in range(1200):
    if os.path.exists(d + "/go"): break
    time.sleep(0.05)
else: sys.exit("no go file")
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[2]), context=ssl._create_unverified_context(), timeout=30)
c.request("GET", "/dlopen"); r = c.getresponse(); r.read()
if r.status != 201: sys.exit("status %d" % r.status)
`, dir, strconv.Itoa(port))
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	logs := func() string {
		log, _ := os.ReadFile(filepath.Join(e.dir, id+".log"))
		return fmt.Sprintf("container log: %s\nhook log: %s", log, e.hookLog())
	}
	deadline := time.Now().Add(time.Minute)
	for _, err := os.Stat(filepath.Join(dir, "loaded")); err != nil; _, err = os.Stat(filepath.Join(dir, "loaded")) {
		if time.Now().After(deadline) {
			t.Fatalf("python3 did not load ssl: %v; %s", err, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pids := tracerPIDs(id)
	if len(pids) != 1 {
		t.Fatalf("want one tracer for %s, have %v", id, pids)
	}
	py := e.initPID(t, id)
	// SSL_write, SSL_read and their _ex forms, entry and return, and
	// SSL_free, on the copy (the only libssl under /proc/PID/root/).
	for got := uprobesOf(t, pids[0], py); got != 9; got = uprobesOf(t, pids[0], py) {
		if got > 9 || time.Now().After(deadline) {
			t.Fatalf("%d uprobes of the tracer on python3's libssl (pid %d), want 9; %s", got, py, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.wantOneTLSClientEvent(t, id, "python3", "/dlopen", port)
}

// wantOneTLSClientEvent waits for container id, whose client (prog) made
// one HTTPS request for uri to the host's server on port, to stop and be
// deleted, and requires that request to be its file's one event.
func (e *hookEnv) wantOneTLSClientEvent(t *testing.T, id, prog, uri string, port int) {
	t.Helper()
	e.waitStopped(t, id)
	if log, _ := os.ReadFile(filepath.Join(e.dir, id+".log")); len(log) != 0 {
		t.Fatalf("%s in the container failed: %s", prog, log)
	}
	e.delete(t, id)
	waitNoTracer(t, id, 30*time.Second)
	evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1: %+v\nhook log:\n%s", len(evs), evs, e.hookLog())
	}
	want := hookEvent{ContainerID: id, Direction: "ingress", URIPath: uri, Status: 201, SrcPort: port, DstPort: evs[0].DstPort, TLS: true}
	if evs[0] != want || want.DstPort == 0 || want.DstPort == port {
		t.Fatalf("got %+v\nwant %+v (any client port)", evs[0], want)
	}
}

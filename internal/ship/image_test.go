package ship

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"gopkg.in/yaml.v3"

	"github.com/boxtap/boxtap/internal/itest"
)

const (
	imageTimeout     = 30 * time.Minute // make image: make release (two cross builds), then import
	containerTimeout = 2 * time.Minute  // a container starting, tracing or exiting
	cliTimeout       = 2 * time.Minute  // one docker or ctr command
)

// TestImageHoldsOnlyTheBinaryAndTracesANeighbourWithTheDaemonSetSettings runs make image,
// checks that the image holds nothing but /boxtap and is in Docker and in containerd's
// k8s.io namespace, and runs `boxtap version` from it with Docker. Then it runs `boxtap
// trace` from the k8s.io copy of the image with ctr, as the kubelet would through containerd,
// with the capabilities, security settings, mounts and host PID namespace that
// examples/kubernetes/daemonset.yaml gives its pod (read from the file, and checked on the
// running process), tracing a neighbour Docker container's responses to stdout through
// containerd, as the DaemonSet does.
//
// The one setting not taken from the DaemonSet: boxtap shares the host's cgroup namespace
// (ctr's default). A pod gets a cgroup namespace of its own on cgroup v2, and boxtap does not
// yet resolve cgroup paths across cgroup namespaces (issue #15); the test logs this.
func TestImageHoldsOnlyTheBinaryAndTracesANeighbourWithTheDaemonSetSettings(t *testing.T) {
	itest.RequireRoot(t)
	itest.RequireBPF(t)
	d := itest.RequireDocker(t)
	_, err := exec.LookPath("ctr")
	itest.Require(t, err == nil, "needs containerd's ctr command (apt-get install containerd, or run scripts/ensure-deps.sh)")
	root := moduleRoot(t)
	spec := readDaemonSet(t, filepath.Join(root, "examples", "kubernetes", "daemonset.yaml"))

	image := "localhost/boxtap-itest-ship-" + randomHex(t)
	const version = "v0.0.0-shipimage"
	makeImage(t, root, image, version)

	checkImageContent(t, image+":latest")
	for _, tag := range []string{version, "latest"} {
		if got := cli(t, "docker", "image", "inspect", "--format", "{{.Id}}", image+":"+tag); got == "" {
			t.Errorf("docker has no %s:%s", image, tag)
		}
	}
	refs := strings.Fields(cli(t, "ctr", "-n", "k8s.io", "images", "ls", "-q"))
	for _, tag := range []string{version, "latest"} {
		if !slices.Contains(refs, image+":"+tag) {
			t.Errorf("containerd's k8s.io namespace has no %s:%s", image, tag)
		}
	}
	out := cli(t, "docker", "run", "--rm", "--network", "none", image+":latest", "version")
	if first, _, _ := strings.Cut(out, "\n"); first != "boxtap "+version {
		t.Errorf("boxtap version in the image printed %q, want first line %q", out, "boxtap "+version)
	}

	// The neighbour: testapp serving HTTP on the host's loopback.
	port := itest.FreePort(t)
	neighbour := d.Run(t, itest.RunOpts{Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := neighbour.WaitLog("listening on", containerTimeout); err != nil {
		t.Fatal(err)
	}

	// Docker 20.10 (Debian 12's) does not know CAP_BPF or CAP_PERFMON, and the kubelet runs
	// pods through containerd anyway: boxtap runs from containerd's k8s.io namespace, with ctr.
	run := spec.ctrRun(t, t.TempDir())
	if cmd := spec.Spec.Template.Spec.Containers[0].Command; !slices.Equal(cmd, []string{"/boxtap"}) {
		t.Fatalf("DaemonSet command %v, want [/boxtap], the image's only file", cmd)
	}
	id := "boxtap-itest-ship-" + randomHex(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	args := append([]string{"-n", "k8s.io", "run", "--rm", "--pid-file", pidFile}, run.flags...)
	args = append(args, image+":latest", id, "/boxtap",
		"trace", "--runtime=containerd", "--containerd-address="+spec.containerdAddress(t),
		"--namespace=moby", "--count=3", neighbour.ID)
	t.Cleanup(func() { removeCtrContainer(t, id) })
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	tracer := itest.StartCmd(t, exec.CommandContext(ctx, "ctr", args...))
	// The pod sees containerd's socket only, not Docker's: a Docker container found in
	// containerd's moby namespace has no Docker name there, so boxtap names it by its ID.
	if err := tracer.WaitStderr(fmt.Sprintf("tracing %s (%s)\n", neighbour.ID, itest.ShortID(neighbour.ID)), containerTimeout); err != nil {
		t.Fatal(err)
	}
	checkTask(t, pidFile, run.caps)

	paths := []string{"/status/200", "/status/204", "/status/404"}
	for _, p := range paths {
		get(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, p))
	}
	if err := tracer.Wait(containerTimeout); err != nil {
		t.Fatalf("boxtap trace in the image: %v\nstderr:\n%s", err, tracer.Stderr())
	}
	if !strings.Contains(tracer.Stderr(), "boxtap: 3 events, 0 lost records") {
		t.Errorf("stderr lacks the counts line for 3 events:\n%s", tracer.Stderr())
	}
	checkEvents(t, tracer.Lines(), neighbour.ID, neighbour.ID, []int{200, 204, 404})
}

// checkTask checks the running boxtap task (its host PID in pidFile): it holds exactly the
// capabilities caps, and shares the host's cgroup namespace. The latter is not the
// DaemonSet's doing: a pod gets a cgroup namespace of its own on cgroup v2, but Debian 12's
// ctr cannot give a container one. boxtap in a private cgroup namespace, as in a pod, is
// proven by cmd/boxtap's TestTraceFromAPrivateCgroupNamespaceFindsTheNeighbour, which runs it from a
// runc bundle.
func checkTask(t *testing.T, pidFile string, caps uint64) {
	t.Helper()
	pid := strings.TrimSpace(string(readFile(t, pidFile)))
	status := string(readFile(t, filepath.Join("/proc", pid, "status")))
	want := fmt.Sprintf("%016x", caps)
	for _, key := range []string{"CapPrm", "CapEff", "CapBnd"} {
		if got := statusField(status, key); got != want {
			t.Errorf("boxtap task %s: %s %s, want %s (exactly the DaemonSet's capabilities)", pid, key, got, want)
		}
	}
	if got, want := nsOf(t, pid, "pid"), nsOf(t, "self", "pid"); got != want {
		t.Errorf("boxtap task %s: pid namespace %s, want the host's %s (hostPID: true)", pid, got, want)
	}
	if got := statusField(status, "NoNewPrivs"); got != "1" {
		t.Errorf("boxtap task %s: NoNewPrivs %s, want 1 (allowPrivilegeEscalation: false)", pid, got)
	}
	if got, want := nsOf(t, pid, "cgroup"), nsOf(t, "self", "cgroup"); got != want {
		t.Fatalf("boxtap task %s: cgroup namespace %s, want the host's %s", pid, got, want)
	}
}

// nsOf is the namespace link of /proc/PID/ns/KIND.
func nsOf(t *testing.T, pid, kind string) string {
	t.Helper()
	link, err := os.Readlink(filepath.Join("/proc", pid, "ns", kind))
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// statusField returns the value of a "Key:\tvalue" line of /proc/PID/status.
func statusField(status, key string) string {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// removeCtrContainer kills and removes a containerd container of the k8s.io namespace that
// `ctr run --rm` may have left when the test stopped early.
func removeCtrContainer(t *testing.T, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ctr", "-n", "k8s.io", "tasks", "rm", "-f", id).CombinedOutput(); err != nil && !strings.Contains(string(out), "not found") {
		t.Logf("ctr tasks rm %s: %v %s", id, err, out)
	}
	if out, err := exec.CommandContext(ctx, "ctr", "-n", "k8s.io", "containers", "rm", id).CombinedOutput(); err != nil && !strings.Contains(string(out), "not found") {
		t.Logf("ctr containers rm %s: %v %s", id, err, out)
	}
}

// daemonSet is the part of examples/kubernetes/daemonset.yaml that decides what boxtap's
// container may do and see.
type daemonSet struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Template struct {
			Spec struct {
				HostPID    bool `yaml:"hostPID"`
				Containers []struct {
					Command         []string `yaml:"command"`
					Args            []string `yaml:"args"`
					SecurityContext struct {
						Privileged               bool  `yaml:"privileged"`
						AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
						ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
						RunAsUser                *int  `yaml:"runAsUser"`
						RunAsGroup               *int  `yaml:"runAsGroup"`
						Capabilities             struct {
							Drop []string `yaml:"drop"`
							Add  []string `yaml:"add"`
						} `yaml:"capabilities"`
						SeccompProfile  struct{ Type string } `yaml:"seccompProfile"`
						AppArmorProfile struct{ Type string } `yaml:"appArmorProfile"`
					} `yaml:"securityContext"`
					Resources struct {
						Limits struct{ Memory string } `yaml:"limits"`
					} `yaml:"resources"`
					VolumeMounts []struct {
						Name             string `yaml:"name"`
						MountPath        string `yaml:"mountPath"`
						ReadOnly         bool   `yaml:"readOnly"`
						MountPropagation string `yaml:"mountPropagation"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name     string `yaml:"name"`
					HostPath struct {
						Path string `yaml:"path"`
					} `yaml:"hostPath"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// readDaemonSet returns the DaemonSet document of the multi-document YAML file at path; it
// must have exactly one container.
func readDaemonSet(t *testing.T, path string) *daemonSet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for {
		var ds daemonSet
		if err := dec.Decode(&ds); errors.Is(err, io.EOF) {
			t.Fatalf("%s has no DaemonSet", path)
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if ds.Kind == "DaemonSet" {
			if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
				t.Fatalf("%s: the DaemonSet has %d containers, want 1", path, n)
			}
			return &ds
		}
	}
}

// capabilityNumbers maps every Linux capability name (without CAP_) to its number.
var capabilityNumbers = map[string]int{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
	"SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
	"NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
	"SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
	"SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
	"SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
	"SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
	"BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

// podRun is the pod spec of the DaemonSet as `ctr run` flags, with the capability set the
// container's process must end up with.
type podRun struct {
	flags []string
	caps  uint64 // bit per capability: exactly the DaemonSet's added ones
}

// ctrRun turns the pod spec into `ctr run` flags: host PID namespace, capabilities,
// seccomp, AppArmor, no-new-privileges, read-only root, user, memory limit and the hostPath
// mounts, except that the output directory (/var/log/boxtap) is logDir instead of the host's.
// A setting the translation does not know fails the test, so the DaemonSet cannot gain one
// that this test silently leaves out. ctr's defaults already match some settings: no seccomp
// and no AppArmor profile (Unconfined), no new privileges, user 0, a network namespace of its
// own (no hostNetwork) and the host's cgroup namespace.
func (ds *daemonSet) ctrRun(t *testing.T, logDir string) podRun {
	t.Helper()
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	sc := c.SecurityContext
	var r podRun
	if pod.HostPID { // this process's PID namespace is the host's, where the daemons run
		r.flags = append(r.flags, "--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", os.Getpid()))
	}
	if sc.Privileged {
		t.Fatal("the DaemonSet's container is privileged; this test runs the least-privilege pod")
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Fatalf("DaemonSet drops capabilities %v; only [ALL] is translated", sc.Capabilities.Drop)
	}
	for _, name := range sc.Capabilities.Add {
		n, ok := capabilityNumbers[name]
		if !ok {
			t.Fatalf("DaemonSet adds unknown capability %q", name)
		}
		r.caps |= 1 << n
		r.flags = append(r.flags, "--cap-add", "CAP_"+name)
	}
	for name, n := range capabilityNumbers { // drop ALL: every capability not added
		if r.caps&(1<<n) == 0 {
			r.flags = append(r.flags, "--cap-drop", "CAP_"+name)
		}
	}
	if typ := sc.SeccompProfile.Type; typ != "Unconfined" {
		t.Fatalf("DaemonSet seccomp profile %q: only Unconfined is translated (ctr's default)", typ)
	}
	if typ := sc.AppArmorProfile.Type; typ != "Unconfined" {
		t.Fatalf("DaemonSet AppArmor profile %q: only Unconfined is translated (ctr's default)", typ)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Fatal("DaemonSet allows privilege escalation; only allowPrivilegeEscalation: false is translated (ctr's default)")
	}
	if sc.ReadOnlyRootFilesystem {
		r.flags = append(r.flags, "--read-only")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsGroup == nil || *sc.RunAsGroup != 0 {
		t.Fatal("DaemonSet runAsUser/runAsGroup: only 0/0 is translated (ctr's default)")
	}
	if mem, ok := strings.CutSuffix(c.Resources.Limits.Memory, "Mi"); ok {
		mib, err := strconv.Atoi(mem)
		if err != nil {
			t.Fatalf("DaemonSet memory limit %q: %v", c.Resources.Limits.Memory, err)
		}
		r.flags = append(r.flags, "--memory-limit", strconv.Itoa(mib<<20))
	} else if c.Resources.Limits.Memory != "" {
		t.Fatalf("DaemonSet memory limit %q: only Mi is translated", c.Resources.Limits.Memory)
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		hostPaths[v.Name] = v.HostPath.Path
	}
	for _, m := range c.VolumeMounts {
		host := hostPaths[m.Name]
		if host == "" {
			t.Fatalf("DaemonSet mount %s is not a hostPath volume", m.Name)
		}
		if m.MountPath == "/var/log/boxtap" {
			host = logDir
		}
		opts := "rbind:rw"
		if m.ReadOnly {
			opts = "rbind:ro"
		}
		switch m.MountPropagation {
		case "HostToContainer":
			opts += ":rslave"
		case "", "None":
		default:
			t.Fatalf("DaemonSet mount %s: propagation %q not translated", m.Name, m.MountPropagation)
		}
		r.flags = append(r.flags, "--mount", "type=bind,src="+host+",dst="+m.MountPath+",options="+opts)
	}
	return r
}

// containerdAddress is the --containerd-address the DaemonSet passes.
func (ds *daemonSet) containerdAddress(t *testing.T) string {
	t.Helper()
	for _, a := range ds.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--containerd-address="); ok {
			return v
		}
	}
	t.Fatal("the DaemonSet passes no --containerd-address=")
	return ""
}

// makeImage runs `make image` with IMAGE, a DIST of the test's own and VERSION, and removes
// the image's two tags from Docker and containerd when the test ends.
func makeImage(t *testing.T, root, image, version string) {
	t.Helper()
	t.Cleanup(func() {
		for _, tag := range []string{version, "latest"} {
			ref := image + ":" + tag
			if out, err := exec.Command("docker", "rmi", ref).CombinedOutput(); err != nil {
				t.Logf("docker rmi %s: %v %s", ref, err, out)
			}
			if out, err := exec.Command("ctr", "-n", "k8s.io", "images", "rm", ref).CombinedOutput(); err != nil {
				t.Logf("ctr images rm %s: %v %s", ref, err, out)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), imageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "--no-print-directory", "image", "IMAGE="+image, "DIST="+filepath.Join(t.TempDir(), "dist"))
	cmd.Dir = root
	cmd.Env = append(envWithout("VERSION", "IMAGE", "DIST", "MAKEFLAGS"), "VERSION="+version)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image:\n%s", out)
}

// checkImageContent reads the image back with docker save: one layer whose only entry is
// /boxtap (0755), which is also the entrypoint.
func checkImageContent(t *testing.T, ref string) {
	t.Helper()
	if ep := cli(t, "docker", "image", "inspect", "--format", "{{json .Config.Entrypoint}}", ref); ep != `["/boxtap"]` {
		t.Errorf("%s entrypoint %s, want [\"/boxtap\"]", ref, ep)
	}
	size := cli(t, "docker", "image", "inspect", "--format", "{{.Size}}", ref)
	t.Logf("image %s: %s bytes", ref, size)

	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	saved, err := exec.CommandContext(ctx, "docker", "save", ref).Output()
	if err != nil {
		t.Fatalf("docker save %s: %v", ref, err)
	}
	files := tarFiles(t, saved)
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("docker save %s: manifest.json %s: %v", ref, files["manifest.json"], err)
	}
	if n := len(manifest[0].Layers); n != 1 {
		t.Fatalf("%s has %d layers, want 1", ref, n)
	}
	layer := tar.NewReader(bytes.NewReader(files[manifest[0].Layers[0]]))
	var entries []string
	for {
		h, err := layer.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("read layer of %s: %v", ref, err)
		}
		entries = append(entries, fmt.Sprintf("%s %o", h.Name, h.Mode&0o7777))
	}
	if !slices.Equal(entries, []string{"boxtap 755"}) {
		t.Errorf("the layer of %s holds %v, want only [boxtap 755]", ref, entries)
	}
}

// tarFiles returns the regular files of a tar archive by name.
func tarFiles(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		} else if err != nil {
			t.Fatalf("read docker save archive: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read %s from the docker save archive: %v", h.Name, err)
			}
			files[h.Name] = data
		}
	}
}

// checkEvents: stdout holds exactly one event per wanted status, in order, each a response of
// a testapp process, attributed to the container id and name.
func checkEvents(t *testing.T, lines []string, id, name string, statuses []int) {
	t.Helper()
	if len(lines) != len(statuses) {
		t.Fatalf("%d stdout lines, want %d events:\n%s", len(lines), len(statuses), strings.Join(lines, "\n"))
	}
	for i, line := range lines {
		var ev trace.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("stdout line %d is not a Tracee event: %v\n%s", i+1, err, line)
		}
		if ev.EventID != 2011 || ev.EventName != "net_packet_http_response" {
			t.Errorf("event %d: id %d name %q, want 2011 net_packet_http_response", i, ev.EventID, ev.EventName)
		}
		if ev.Container.ID != id || ev.Container.Name != name || ev.ProcessName != "testapp" {
			t.Errorf("event %d: container %q %q process %q, want %q %q testapp", i, ev.Container.ID, ev.Container.Name, ev.ProcessName, id, name)
		}
		var resp *trace.ProtoHTTPResponse
		for _, a := range ev.Args {
			if r, ok := a.Value.(trace.ProtoHTTPResponse); ok && a.Name == "http_response" {
				resp = &r
			}
		}
		if resp == nil || resp.StatusCode != statuses[i] || resp.Protocol != "HTTP/1.1" {
			t.Errorf("event %d: http_response %+v, want status %d HTTP/1.1", i, resp, statuses[i])
		}
	}
}

// get sends one GET on a connection of its own and reads the whole response.
func get(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// cli runs a command and returns its trimmed stdout, failing the test on error.
func cli(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// TestTraceContainerdContainerByID traces a container created directly in
// containerd (not through Docker), in a namespace of its own, by its ID,
// with --runtime auto (Docker is asked first and does not know it). The
// container carries Kubernetes CRI labels set by the test, so its events
// must carry the pod fields and the Kubernetes container name.
func TestTraceContainerdContainerByID(t *testing.T) {
	e := newWatchEnv(t, "")
	ns := e.namespace(t)
	port := itest.FreePort(t)
	labels := map[string]string{
		container.LabelPodName:       "shop-web-5f7c",
		container.LabelPodNamespace:  "shop",
		container.LabelPodUID:        "6b1d2c3e-1111-2222-3333-444455556666",
		container.LabelContainerName: "web",
	}
	tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Labels: labels, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})

	p := e.startBoxtap(t, "trace", tk.ID, "--count", "3")
	if err := p.WaitStderr(fmt.Sprintf("tracing web (%s)\n", itest.ShortID(tk.ID)), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 3)
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	if len(x.events) != 3 {
		t.Fatalf("%d events, want 3; stderr:\n%s", len(x.events), x.stderr)
	}
	for i, ev := range x.events {
		if ev.Container.ID != tk.ID || ev.Container.Name != "web" {
			t.Errorf("event %d: container %+v, want id %s name web", i, ev.Container, tk.ID)
		}
		if !strings.HasPrefix(ev.Container.ImageName, "docker.io/boxtap/testapp:") || !strings.HasPrefix(ev.Container.ImageDigest, "sha256:") {
			t.Errorf("event %d: image %q digest %q", i, ev.Container.ImageName, ev.Container.ImageDigest)
		}
		k := ev.Kubernetes
		if k.PodName != "shop-web-5f7c" || k.PodNamespace != "shop" || k.PodUID != labels[container.LabelPodUID] || k.PodSandbox {
			t.Errorf("event %d: kubernetes %+v", i, k)
		}
		if rt := argString(ev, "container_runtime"); rt != "containerd" {
			t.Errorf("event %d: container_runtime %q, want containerd", i, rt)
		}
		if code, _ := responseOf(t, ev); code != 200 {
			t.Errorf("event %d: status %d", i, code)
		}
		if int(ev.HostProcessID) != int(tk.PID) {
			t.Errorf("event %d: host pid %d, want the container's init %d", i, ev.HostProcessID, tk.PID)
		}
	}
	checkDetached(t, e.cgroupOfPID(t, tk.PID))
}

// TestTraceContainerdSandboxAndNamespaceFilter: a pod sandbox container sets
// podSandbox; --namespace that does not hold the container does not find it,
// and the error names where boxtap looked.
func TestTraceContainerdSandboxAndNamespaceFilter(t *testing.T) {
	e := newWatchEnv(t, "")
	ns := e.namespace(t)
	port := itest.FreePort(t)
	tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Labels: map[string]string{
		"io.cri-containerd.kind":    "sandbox",
		container.LabelPodName:      "shop-web-5f7c",
		container.LabelPodNamespace: "shop",
	}, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})

	p := e.startBoxtap(t, "trace", "--runtime", "containerd", "--namespace", "boxtap-no-such-ns", tk.ID)
	x := stopTrace(t, p, nil)
	if x.code == 0 || !strings.Contains(x.stderr, "boxtap-no-such-ns") || !strings.Contains(x.stderr, tk.ID) {
		t.Fatalf("wrong namespace: exit %d, stderr:\n%s", x.code, x.stderr)
	}

	dir := t.TempDir() + "/out"
	p = e.startBoxtap(t, "trace", "--runtime", "containerd", "--namespace", ns, "--output-dir", dir, "--count", "2", tk.ID)
	if err := p.WaitStderr("tracing "+tk.ID, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 2)
	if x := stopTrace(t, p, nil); x.code != 0 {
		t.Fatalf("exit %d:\n%s", x.code, x.stderr)
	}
	evs := fileEvents(t, dir+"/"+ns+"@"+tk.ID+".json")
	if len(evs) != 2 {
		t.Fatalf("%d events in the container's file, want 2", len(evs))
	}
	for _, ev := range evs {
		if !ev.Kubernetes.PodSandbox || ev.Kubernetes.PodName != "shop-web-5f7c" {
			t.Errorf("sandbox event: kubernetes %+v", ev.Kubernetes)
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("output dir mode: %v %v", st.Mode(), err)
	}
}

// TestTraceDockerContainerThroughContainerd: with --runtime containerd, a
// Docker container found in containerd's moby namespace (by ID) is still
// reported with its Docker name.
func TestTraceDockerContainerThroughContainerd(t *testing.T) {
	e := newWatchEnv(t, "")
	d := itest.RequireDocker(t)
	dc := d.Run(t, itest.RunOpts{Args: []string{"sleep"}})
	p := e.startBoxtap(t, "trace", "--runtime", "containerd", "--duration", "1s", dc.ID)
	x := stopTrace(t, p, nil)
	if x.code != 0 || !strings.Contains(x.stderr, fmt.Sprintf("tracing %s (%s)\n", dc.Name, itest.ShortID(dc.ID))) {
		t.Fatalf("exit %d; want \"tracing %s\" on stderr:\n%s", x.code, dc.Name, x.stderr)
	}
}

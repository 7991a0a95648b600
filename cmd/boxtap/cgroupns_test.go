package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// boxtap itself in a container with a cgroup namespace of its own (the
// default for pods on cgroup v2), run the way
// examples/kubernetes/daemonset.yaml runs it: the host's PID and network
// namespaces, only the capabilities BPF, PERFMON, NET_ADMIN and SYS_PTRACE,
// no seccomp or AppArmor profile, no new privileges, a read-only root, and
// the host's /sys/fs/cgroup, /sys/fs/bpf, /sys/kernel/btf and containerd
// socket mounted. (runc runs it: this Docker does not know CAP_BPF.) It
// traces a neighbour container started through containerd, whose
// /proc/PID/cgroup path it sees as "/../..." and resolves from its own
// namespace root.
func TestTraceFromAPrivateCgroupNamespaceFindsTheNeighbour(t *testing.T) {
	e := newWatchEnv(t, "")
	h := newHookEnv(t)
	ns := e.namespace(t)
	port := itest.FreePort(t)
	labels := map[string]string{
		container.LabelPodName:       "shop-web-5f7c",
		container.LabelPodNamespace:  "shop",
		container.LabelPodUID:        "6b1d2c3e-1111-2222-3333-444455556666",
		container.LabelContainerName: "web",
	}
	tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Labels: labels, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})

	id := h.prefix + "cgns"
	bundle := h.bundle(t, id, nil)
	// The container's root holds boxtap alone, so it needs the static build:
	// a race-built boxtap links libc dynamically.
	daemonSetSpec(t, bundle, itest.BuildBoxtapWithoutRace(t), "trace", "--runtime=containerd", "--containerd-address=/run/containerd/containerd.sock", "--namespace", ns, tk.ID, "--count", "3")
	t.Cleanup(func() { h.remove(id) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	p := itest.StartProc(t, ctx, "runc", "--root", h.root, "run", "--bundle", bundle, id)
	if err := p.WaitStderr(fmt.Sprintf("tracing web (%s)\n", itest.ShortID(tk.ID)), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 3)
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap in the container exited %d:\n%s", x.code, x.stderr)
	}
	if len(x.events) != 3 {
		t.Fatalf("%d events, want 3; stderr:\n%s", len(x.events), x.stderr)
	}
	for i, ev := range x.events {
		k := ev.Kubernetes
		if ev.Container.ID != tk.ID || k.PodName != "shop-web-5f7c" || k.PodNamespace != "shop" || k.PodUID != labels[container.LabelPodUID] {
			t.Errorf("event %d: container %+v kubernetes %+v", i, ev.Container, k)
		}
		if code, _ := responseOf(t, ev); code != 200 {
			t.Errorf("event %d: status %d", i, code)
		}
	}
	checkDetached(t, e.cgroupOfPID(t, tk.PID))
}

// daemonSetSpec rewrites a runc bundle to run boxtap (bin, bound at
// /boxtap) with args as the DaemonSet does, in a private cgroup namespace.
func daemonSetSpec(t *testing.T, bundle, bin string, args ...string) {
	t.Helper()
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Args = append([]string{"/boxtap"}, args...)
	spec.Process.NoNewPrivileges = true
	caps := []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"}
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	spec.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.CgroupNamespace}}
	spec.Linux.Seccomp = nil
	spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = nil, nil
	var mounts []specs.Mount
	for _, m := range spec.Mounts {
		if m.Destination != "/sys/fs/cgroup" {
			mounts = append(mounts, m)
		}
	}
	bind := func(src, dst string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
	}
	spec.Mounts = append(mounts,
		bind(bin, "/boxtap", "ro"),
		bind("/sys/fs/cgroup", "/sys/fs/cgroup", "ro"),
		bind("/sys/fs/bpf", "/sys/fs/bpf", "ro"),
		bind("/sys/kernel/btf", "/sys/kernel/btf", "ro"),
		bind("/run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
	)
	if data, err = json.Marshal(&spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

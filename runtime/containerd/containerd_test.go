package containerd_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/containerd"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

func TestNewReportsUnreachableSocket(t *testing.T) {
	_, err := containerd.New(context.Background(), t.TempDir()+"/missing.sock", nil)
	if err == nil {
		t.Fatal("no error for a missing socket")
	}
	msg := err.Error()
	if !strings.Contains(msg, "missing.sock") || !strings.Contains(msg, "--containerd-address") || strings.Contains(msg, "\n") {
		t.Fatalf("error should name the socket and the fix on one line: %q", msg)
	}
}

// TestContainerdNamespaceContainer creates a container directly in
// containerd (no Docker), in a namespace of its own, with Kubernetes labels,
// and finds it by ID, ID prefix and pod container name.
func TestContainerdNamespaceContainer(t *testing.T) {
	env := ctrtest.Require(t, "")
	ns := ctrtest.RandomID("boxtap-itest")
	t.Cleanup(func() { env.RemoveNamespace(t, ns) })
	labels := map[string]string{
		container.LabelPodName:       "web-7d4b9",
		container.LabelPodNamespace:  "shop",
		container.LabelPodUID:        "0f1e2d3c-aaaa-bbbb-cccc-123456789abc",
		container.LabelContainerName: "nginx",
	}
	ctx := context.Background()
	c, err := containerd.New(ctx, env.Address, []string{ns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	evCtx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	events, errs := c.Events(evCtx)

	tk := env.Run(t, ctrtest.RunOpts{Namespace: ns, Labels: labels, Args: []string{"sleep"}, Hostname: "pod-host"})

	select {
	case ev := <-events:
		if ev.ID != tk.ID || ev.Namespace != ns || ev.PID != tk.PID || ev.Time.IsZero() {
			t.Fatalf("start event %+v, want %s/%s pid %d", ev, ns, tk.ID, tk.PID)
		}
	case err := <-errs:
		t.Fatalf("event stream ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no task start event within 20s")
	}

	for _, q := range []string{tk.ID, tk.ID[:len(tk.ID)-3], "nginx"} {
		info, err := c.Resolve(ctx, q)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", q, err)
		}
		if info.ID != tk.ID || info.PID != int(tk.PID) || info.Namespace != ns || info.Runtime != containerd.RuntimeName {
			t.Fatalf("Resolve(%q) = %+v", q, info)
		}
		if info.Name != "nginx" || info.Pod.Name != "web-7d4b9" || info.Pod.Namespace != "shop" || info.Pod.UID != labels[container.LabelPodUID] || info.Pod.Sandbox {
			t.Fatalf("Resolve(%q): pod fields %+v name %q", q, info.Pod, info.Name)
		}
		if !strings.HasPrefix(info.Image, "docker.io/boxtap/testapp:") || !strings.HasPrefix(info.ImageDigest, "sha256:") {
			t.Fatalf("Resolve(%q): image %q digest %q", q, info.Image, info.ImageDigest)
		}
		if info.Hostname != "pod-host" {
			t.Fatalf("Resolve(%q): hostname %q", q, info.Hostname)
		}
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != tk.ID {
		t.Fatalf("List in namespace %s = %+v", ns, list)
	}
	if l, _ := c.List(ctx, ns); len(l) != 0 {
		t.Fatalf("List skipping %s still returned %d containers", ns, len(l))
	}
	nss, err := c.Namespaces(ctx)
	if err != nil || !slices.Equal(nss, []string{ns}) {
		t.Fatalf("Namespaces = %v, %v", nss, err)
	}

	// Another namespace filter does not see it; an exited task is not running.
	other, err := containerd.New(ctx, env.Address, []string{"boxtap-no-such-namespace"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var nf *container.NotFoundError
	if _, err := other.Resolve(ctx, tk.ID); !errors.As(err, &nf) {
		t.Fatalf("Resolve in another namespace: %v, want NotFoundError", err)
	}
	tk.Kill(t, 15)
	if _, err := c.Inspect(ctx, containerd.Ref{Namespace: ns, ID: tk.ID}); !errors.Is(err, containerd.ErrNotRunning) {
		t.Fatalf("Inspect of an exited task: %v, want ErrNotRunning", err)
	}
}

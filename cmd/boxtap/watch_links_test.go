package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// containerd IDs are unique only within a namespace: two containers with
// one ID in two namespaces are both traced, each into NAMESPACE@ID.json
// (the second one was refused, "already open"). Their by-name links go by
// pod namespace/pod/container, so a container name that repeats across pods
// gets one link per pod, and a third container claiming a running
// container's pod and name gets NAME~KEY.json instead of taking the link.
func TestWatchSameIDInTwoNamespacesAndPodLinks(t *testing.T) {
	e := newWatchEnv(t, "")
	ns1, ns2 := e.namespace(t), e.namespace(t)
	dir := filepath.Join(t.TempDir(), "out")
	p := e.startBoxtap(t, "watch", "--runtime", "containerd", "--namespace", ns1, "--namespace", ns2, "--output-dir", dir)
	pod := func(name string) map[string]string {
		return map[string]string{
			container.LabelContainerName: "web",
			container.LabelPodName:       name,
			container.LabelPodNamespace:  "shop",
			container.LabelPodUID:        "uid-" + name,
		}
	}
	id := ctrtest.RandomID("bxl")
	ports := []int{itest.FreePort(t), itest.FreePort(t), itest.FreePort(t)}
	serve := func(i int) []string { return []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", ports[i])} }
	a := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns1, ID: id, Labels: pod("front-1"), Args: serve(0)})
	b := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns2, ID: id, Labels: pod("front-2"), Args: serve(1)})
	if err := p.WaitStderr("tracing web ("+itest.ShortID(id)+")", traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	// The claimant starts once the first two are traced, so the order is known.
	c := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns1, Labels: pod("front-1"), Args: serve(2)})
	for i, tk := range []*ctrtest.Task{a, b, c} {
		getN(t, fmt.Sprintf("http://127.0.0.1:%d/", ports[i]), 1)
		waitFileEvents(t, filepath.Join(dir, tk.Namespace+"@"+tk.ID+".json"), 1, traceStartTimeout)
	}
	for rel, want := range map[string]string{
		"shop/front-1/web.json":                          ns1 + "@" + id + ".json",
		"shop/front-2/web.json":                          ns2 + "@" + id + ".json",
		"shop/front-1/web~" + ns1 + "@" + c.ID + ".json": ns1 + "@" + c.ID + ".json",
	} {
		target, err := filepath.EvalSymlinks(filepath.Join(dir, "by-name", rel))
		if err != nil {
			t.Errorf("by-name/%s: %v", rel, err)
			continue
		}
		if filepath.Base(target) != want {
			t.Errorf("by-name/%s -> %s, want %s", rel, filepath.Base(target), want)
		}
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatal(err)
	}
	// Every event carries Tracee's kubernetes fields from the CRI labels.
	for tk, podName := range map[*ctrtest.Task]string{a: "front-1", b: "front-2", c: "front-1"} {
		checkPodFields(t, filepath.Join(dir, tk.Namespace+"@"+tk.ID+".json"), podName, "shop", "uid-"+podName)
	}
}

// checkPodFields checks the kubernetes object of every event in a file.
func checkPodFields(t *testing.T, path, name, namespace, uid string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Kubernetes struct {
				PodName      string `json:"podName"`
				PodNamespace string `json:"podNamespace"`
				PodUID       string `json:"podUID"`
			} `json:"kubernetes"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		k := ev.Kubernetes
		if k.PodName != name || k.PodNamespace != namespace || k.PodUID != uid {
			t.Errorf("%s: kubernetes %+v, want %s/%s uid %s", path, k, namespace, name, uid)
		}
		n++
	}
	if n == 0 {
		t.Errorf("%s: no events", path)
	}
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A container whose bundle sits where containerd's shims put bundles
// (.../io.containerd.runtime.v2.task/<namespace>/<id>) is containerd's: its
// name and pod come from containerd's CRI keys only, never from the CRI-O
// or generic keys that a pod author can add as plain annotations (they used
// to win when they came first in a fixed order). Its file is keyed by
// namespace and ID, and its by-name link goes by pod namespace/pod/container.
// Both --tracer modes hand the same identity to the events.
func TestHookIdentityFromTheLaunchingRuntimeOnly(t *testing.T) {
	for _, mode := range []string{tracerPerContainer, tracerHost} {
		t.Run(mode, func(t *testing.T) { hookIdentityFromTheLaunchingRuntimeOnly(t, mode) })
	}
}

func hookIdentityFromTheLaunchingRuntimeOnly(t *testing.T, mode string) {
	e := newHookEnv(t)
	port := itest.FreePort(t)
	id := e.prefix + "ident"
	const ns = "bxh-ns"
	args := e.hookArgs("--tracer=" + mode)
	hooks := &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: e.boxtap, Args: append([]string{"boxtap", "hook", "createRuntime"}, args...)}},
		Poststop:      []specs.Hook{{Path: e.boxtap, Args: append([]string{"boxtap", "hook", "poststop"}, args...)}},
	}
	made := e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	bundle := filepath.Join(e.dir, "io.containerd.runtime.v2.task", ns, id)
	if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(made, bundle); err != nil {
		t.Fatal(err)
	}
	setAnnotations(t, bundle, map[string]string{
		"io.kubernetes.cri.container-type":    "container",
		"io.kubernetes.cri.container-name":    "web",
		"io.kubernetes.cri.sandbox-name":      "front-1",
		"io.kubernetes.cri.sandbox-namespace": "shop",
		"io.kubernetes.cri.sandbox-uid":       "uid-front-1",
		// What a pod author could add to claim another identity.
		"io.kubernetes.cri-o.ContainerType": "container",
		"io.kubernetes.cri-o.Labels":        `{"io.kubernetes.container.name":"payments","io.kubernetes.pod.name":"pay-7d9","io.kubernetes.pod.namespace":"finance"}`,
		"io.kubernetes.container.name":      "payments",
		"io.kubernetes.pod.namespace":       "finance",
	})
	if err := e.start(t, id, bundle); err != nil {
		t.Fatal(err)
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/200", port), time.Now())
	e.kill(t, id)
	e.delete(t, id)
	waitNoTracer(t, id, 10*time.Second)
	waitHostTracers(t, e.run, 0, 10*time.Second)

	file := filepath.Join(e.out, ns+"@"+id+".json")
	type ident struct {
		Container struct {
			Name string `json:"name"`
		} `json:"container"`
		Kubernetes struct {
			PodName      string `json:"podName"`
			PodNamespace string `json:"podNamespace"`
			PodUID       string `json:"podUID"`
		} `json:"kubernetes"`
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v\nhook log:\n%s", err, e.hookLog())
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	n := 0
	for ; sc.Scan(); n++ {
		var ev ident
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Container.Name != "web" || ev.Kubernetes.PodName != "front-1" || ev.Kubernetes.PodNamespace != "shop" || ev.Kubernetes.PodUID != "uid-front-1" {
			t.Fatalf("event identity %+v, want web in pod shop/front-1 uid uid-front-1 (containerd's keys)", ev)
		}
	}
	if n == 0 {
		t.Fatal("no events")
	}
	target, err := filepath.EvalSymlinks(filepath.Join(e.out, "by-name", "shop", "front-1", "web.json"))
	if err != nil || filepath.Base(target) != ns+"@"+id+".json" {
		t.Errorf("by-name/shop/front-1/web.json -> %q, %v", target, err)
	}
	if _, err := os.Lstat(filepath.Join(e.out, "by-name", "finance")); !os.IsNotExist(err) {
		t.Errorf("a link was made for the forged identity: %v", err)
	}
}

// setAnnotations adds annotations to a bundle's config.json.
func setAnnotations(t *testing.T, bundle string, ann map[string]string) {
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
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	for k, v := range ann {
		spec.Annotations[k] = v
	}
	if data, err = json.Marshal(&spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

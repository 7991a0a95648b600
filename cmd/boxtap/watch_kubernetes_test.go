package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// k8sObject is the part of a Kubernetes manifest this test reads.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				HostPID                      bool  `yaml:"hostPID"`
				AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
				Containers                   []struct {
					Name            string   `yaml:"name"`
					Command         []string `yaml:"command"`
					Args            []string `yaml:"args"`
					SecurityContext struct {
						Privileged               *bool `yaml:"privileged"`
						AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
						Capabilities             struct {
							Add  []string `yaml:"add"`
							Drop []string `yaml:"drop"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
						ReadOnly  bool   `yaml:"readOnly"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name     string `yaml:"name"`
					HostPath *struct {
						Path string `yaml:"path"`
						Type string `yaml:"type"`
					} `yaml:"hostPath"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readManifests(t *testing.T, path string) []k8sObject {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(false)
	var out []k8sObject
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(out)+1, err)
		}
		if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: document %d lacks kind, apiVersion or name", path, len(out)+1)
		}
		out = append(out, o)
	}
}

// TestKubernetesDaemonSetMatchesCLI parses examples/kubernetes and checks
// that the DaemonSet's args are a valid `boxtap watch` command line and
// that every path they name is mounted from the host.
func TestKubernetesDaemonSetMatchesCLI(t *testing.T) {
	objs := readManifests(t, filepath.Join("..", "..", "examples", "kubernetes", "daemonset.yaml"))
	var ds *k8sObject
	for i := range objs {
		if objs[i].Kind == "DaemonSet" {
			ds = &objs[i]
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet in daemonset.yaml")
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID must be true: boxtap reads /proc/<pid> of other pods' containers")
	}
	if tok := pod.AutomountServiceAccountToken; tok == nil || *tok {
		t.Error("automountServiceAccountToken must be false: boxtap never calls the Kubernetes API")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "watch" {
		t.Fatalf("args %v do not start with watch", c.Args)
	}

	// The args must parse with boxtap's own CLI definition.
	var cmd struct {
		Watch watchCmd `cmd:""`
	}
	parser, err := kong.New(&cmd, kong.Name("boxtap"), kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := parser.Parse(c.Args)
	if err != nil {
		t.Fatalf("DaemonSet args %v: %v", c.Args, err)
	}
	if kctx.Command() != "watch" {
		t.Fatalf("parsed command %q", kctx.Command())
	}
	w := cmd.Watch
	if w.OutputDir != "/var/log/boxtap" {
		t.Errorf("--output-dir %q, want /var/log/boxtap", w.OutputDir)
	}
	if err := w.outputFlags.check(&w.captureFlags); err != nil {
		t.Errorf("output flags: %v", err)
	}

	// Every path the flags use is mounted, from the host path of the same name.
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]bool{} // mount path, writable
	for _, m := range c.VolumeMounts {
		hp, ok := hostPaths[m.Name]
		if !ok {
			t.Errorf("volumeMount %s has no hostPath volume", m.Name)
			continue
		}
		if hp != m.MountPath {
			t.Errorf("volume %s: host %s mounted at %s; boxtap expects the host's paths", m.Name, hp, m.MountPath)
		}
		mounts[m.MountPath] = !m.ReadOnly
	}
	for path, writable := range map[string]bool{
		w.ContainerdAddress: false,
		w.OutputDir:         true,
		"/sys/fs/cgroup":    false,
		"/sys/fs/bpf":       false,
	} {
		got, ok := mounts[path]
		if !ok {
			t.Errorf("%s is not mounted", path)
		} else if writable && !got {
			t.Errorf("%s is mounted read-only; boxtap writes there", path)
		}
	}
	if w.Runtime != "auto" && w.Runtime != "containerd" {
		t.Errorf("--runtime %s on a Kubernetes node without Docker", w.Runtime)
	}
	if len(w.Namespace) > 0 && !slices.Contains(w.Namespace, "k8s.io") {
		t.Errorf("--namespace %v leaves out k8s.io, where Kubernetes' containers are", w.Namespace)
	}

	// Least privilege: all capabilities dropped, then only these added.
	sc := c.SecurityContext
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the container must not be privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", sc.Capabilities.Drop)
	}
	added := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if want := []string{"BPF", "NET_ADMIN", "PERFMON", "SYS_PTRACE"}; !slices.Equal(added, want) {
		t.Errorf("capabilities.add = %v, want %v", added, want)
	}
	for _, cap := range added {
		if strings.HasPrefix(cap, "CAP_") {
			t.Errorf("capability %s: Kubernetes wants names without CAP_", cap)
		}
	}
}

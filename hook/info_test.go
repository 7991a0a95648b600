package hook

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/runtime/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const ctrdBundle = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/0123456789abcdef"

// Every runtime's own keys, as a pod author could also write them into
// another runtime's container.
var forged = map[string]string{
	"io.kubernetes.cri.container-name":    "payments",
	"io.kubernetes.cri.container-type":    "container",
	"io.kubernetes.cri.sandbox-name":      "payments-7d9",
	"io.kubernetes.cri.sandbox-namespace": "finance",
	"io.kubernetes.cri-o.Labels":          `{"io.kubernetes.container.name":"payments","io.kubernetes.pod.name":"payments-7d9","io.kubernetes.pod.namespace":"finance"}`,
	"io.kubernetes.pod.name":              "payments-7d9",
	"io.kubernetes.pod.namespace":         "finance",
	"io.kubernetes.container.name":        "payments",
	"io.podman.annotations.name":          "payments",
	"org.opencontainers.container.name":   "payments",
	"io.container.manager":                "libpod",
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// Identity comes only from the keys of the runtime that launched the
// container; before, the first key found in a fixed cross-runtime order
// won, so a pod could claim another container's name, pod and namespace.
func TestContainerInfoReadsOnlyTheLaunchingRuntimesKeys(t *testing.T) {
	tests := []struct {
		name   string
		bundle string
		pinned string
		ann    map[string]string
		want   container.Info
	}{
		{
			name:   "containerd CRI",
			bundle: ctrdBundle,
			ann: map[string]string{
				"io.kubernetes.cri.container-name":    "web",
				"io.kubernetes.cri.container-type":    "container",
				"io.kubernetes.cri.sandbox-name":      "web-5f6",
				"io.kubernetes.cri.sandbox-namespace": "shop",
				"io.kubernetes.cri.sandbox-uid":       "u-1",
				"io.kubernetes.cri.image-name":        "nginx:1.27",
				// a pod annotation passed through, claiming another name
				"io.kubernetes.container.name": "payments",
				"io.kubernetes.pod.namespace":  "finance",
			},
			want: container.Info{Runtime: RuntimeContainerd, Namespace: "k8s.io", Name: "web", Image: "nginx:1.27",
				Pod: container.Pod{Name: "web-5f6", Namespace: "shop", UID: "u-1"}},
		},
		{
			name:   "CRI-O, with the containerd and podman keys forged by the pod",
			bundle: "/run/containers/storage/overlay-containers/0123456789abcdef/userdata",
			ann: merge(forged, map[string]string{
				"io.kubernetes.cri-o.ContainerType": "container",
				"io.kubernetes.cri-o.ImageName":     "nginx:1.27",
				"io.kubernetes.cri-o.Labels":        `{"io.kubernetes.container.name":"web","io.kubernetes.pod.name":"web-5f6","io.kubernetes.pod.namespace":"shop","io.kubernetes.pod.uid":"u-1"}`,
			}),
			want: container.Info{Runtime: RuntimeCRIO, Name: "web", Image: "nginx:1.27",
				Pod: container.Pod{Name: "web-5f6", Namespace: "shop", UID: "u-1"}},
		},
		{
			name:   "podman: no names in its annotations, none taken from others'",
			bundle: "/var/lib/containers/storage/overlay-containers/0123456789abcdef/userdata",
			ann:    merge(forged, map[string]string{"io.kubernetes.cri-o.Created": "2026-11-30T05:01:25Z"}),
			want:   container.Info{Runtime: RuntimePodman},
		},
		{
			name:   "Docker through boxtap runc",
			bundle: "/run/containerd/io.containerd.runtime.v2.task/moby/0123456789abcdef",
			ann:    forged,
			want:   container.Info{Runtime: RuntimeDocker},
		},
		{
			name:   "Docker in a namespace of its own, as boxtap runc pins it",
			bundle: "/run/containerd/io.containerd.runtime.v2.task/docker-2/0123456789abcdef",
			pinned: RuntimeDocker,
			ann:    forged,
			want:   container.Info{Runtime: RuntimeDocker},
		},
		{
			name:   "CRI-O pinned by the hook's configuration",
			bundle: "/run/containers/storage/overlay-containers/0123456789abcdef/userdata",
			pinned: RuntimeCRIO,
			ann:    map[string]string{"io.kubernetes.cri-o.Labels": `{"io.kubernetes.container.name":"web"}`, "io.kubernetes.cri.container-name": "payments"},
			want:   container.Info{Runtime: RuntimeCRIO, Name: "web"},
		},
		{
			name:   "containerd CRI keys outside containerd's bundle directory",
			bundle: "/tmp/bundle",
			ann:    map[string]string{"io.kubernetes.cri.container-name": "payments", "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-namespace": "finance"},
			want:   container.Info{Runtime: RuntimeOCI},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &specs.State{ID: "0123456789abcdef", Pid: 7, Bundle: tt.bundle}
			got := ContainerInfo(st, Bundle{Hostname: "h", Annotations: tt.ann}, tt.pinned)
			tt.want.ID, tt.want.PID, tt.want.Hostname = st.ID, 7, "h"
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ContainerInfo =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestTenant(t *testing.T) {
	for _, tc := range []struct {
		info container.Info
		want string
	}{
		{container.Info{Runtime: RuntimeContainerd, Pod: container.Pod{Namespace: "shop"}}, "shop"},
		{container.Info{Runtime: RuntimeCRIO, Pod: container.Pod{Namespace: "shop"}}, "shop"},
		{container.Info{Runtime: RuntimePodman, Pod: container.Pod{Namespace: "shop"}}, ""},
		{container.Info{Runtime: RuntimeDocker}, ""},
	} {
		if got := Tenant(tc.info); got != tc.want {
			t.Errorf("Tenant(%+v) = %q, want %q", tc.info, got, tc.want)
		}
	}
}

// FuzzContainerInfo: whatever the annotations and bundle path, identity
// comes from one runtime's keys only: no pod unless the runtime is a CRI
// runtime, and a containerd namespace only from containerd's bundle path.
func FuzzContainerInfo(f *testing.F) {
	for k, v := range forged {
		f.Add(ctrdBundle, k, v, "io.kubernetes.cri.container-type", "sandbox")
	}
	f.Add("/run/containerd/io.containerd.runtime.v2.task/../x/y", "io.kubernetes.cri-o.ContainerType", "container", "io.kubernetes.cri-o.Labels", `{"io.kubernetes.pod.namespace":"a"}`)
	f.Add("relative/io.containerd.runtime.v2.task/ns/id", "", "", "", "")
	f.Fuzz(func(t *testing.T, bundle, k1, v1, k2, v2 string) {
		ann := map[string]string{k1: v1, k2: v2}
		info := ContainerInfo(&specs.State{ID: "id", Bundle: bundle}, Bundle{Annotations: ann}, "")
		switch info.Runtime {
		case RuntimeContainerd, RuntimeCRIO:
		default:
			if info.Pod != (container.Pod{}) || info.Name != "" || info.Image != "" {
				t.Fatalf("%s container got an identity from annotations %v: %+v", info.Runtime, ann, info)
			}
		}
		if info.Namespace != "" {
			if info.Runtime != RuntimeContainerd || !strings.Contains(filepath.Clean(bundle), containerdTaskDir+"/"+info.Namespace+"/") {
				t.Fatalf("namespace %q not from containerd's bundle path %q", info.Namespace, bundle)
			}
		}
		if info.Runtime == RuntimeCRIO && ann[annCRIOType] == "" {
			t.Fatalf("CRI-O without its ContainerType: %v", ann)
		}
	})
}

// FuzzParseBundle: any config.json either decodes or is refused, and a
// decoded one round-trips its fields.
func FuzzParseBundle(f *testing.F) {
	f.Add([]byte(`{"hostname":"h","annotations":{"a":"b"},"linux":{"cgroupsPath":"system.slice:docker:abc"}}`))
	f.Add([]byte(`{"root":{"path":"rootfs","readonly":true},"process":{"args":["/usr/sbin/nginx","-g"]}}`))
	f.Add([]byte(`{"linux":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"annotations":{"a":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(map[string]any{"hostname": b.Hostname, "annotations": b.Annotations, "linux": map[string]string{"cgroupsPath": b.CgroupsPath}, "root": map[string]string{"path": b.Root}, "process": map[string][]string{"args": {b.Exe}}})
		if err != nil {
			t.Fatal(err)
		}
		b2, err := ParseBundle(again)
		if err != nil || !reflect.DeepEqual(b, b2) && !(len(b.Annotations) == 0 && len(b2.Annotations) == 0) {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", b, again, b2, err)
		}
	})
}

func TestBundleRootFS(t *testing.T) {
	for _, tt := range []struct{ root, want string }{
		{"", ""},
		{"rootfs", "/run/b/rootfs"},
		{"/var/lib/c/merged/", "/var/lib/c/merged"},
	} {
		if got := (Bundle{Root: tt.root}).RootFS("/run/b"); got != tt.want {
			t.Errorf("RootFS with root.path %q = %q, want %q", tt.root, got, tt.want)
		}
	}
}

// root.path and process.args[0] are read for TLS capture; a config whose
// process boxtap cannot read is still a bundle, without them.
func TestParseBundleRootAndProgram(t *testing.T) {
	for _, tt := range []struct {
		in         string
		root, exe  string
		annotation string
	}{
		{`{"root":{"path":"rootfs"},"process":{"args":["/usr/sbin/nginx","-g","daemon off;"]},"annotations":{"a":"b"}}`, "rootfs", "/usr/sbin/nginx", "b"},
		{`{"process":{"args":[]},"annotations":{"a":"b"}}`, "", "", "b"},
		{`{"root":{"path":7},"process":{"args":"nginx"},"annotations":{"a":"b"}}`, "", "", "b"},
	} {
		b, err := ParseBundle([]byte(tt.in))
		if err != nil || b.Root != tt.root || b.Exe != tt.exe || b.Annotations["a"] != tt.annotation {
			t.Errorf("ParseBundle(%s) = %+v, %v; want root %q, exe %q", tt.in, b, err, tt.root, tt.exe)
		}
	}
}

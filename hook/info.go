package hook

import (
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/boxtap/boxtap/runtime/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runtimes that launch hooked containers, as ContainerInfo names them.
const (
	RuntimeContainerd = "containerd" // containerd, with or without its CRI plugin
	RuntimeDocker     = "docker"     // dockerd through containerd (boxtap runc)
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
	RuntimeOCI        = "oci" // anything else: no names are read
)

// containerdTaskDir is the directory under which containerd's runtime v2
// shims put each bundle, as <state>/io.containerd.runtime.v2.task/<ns>/<id>.
const containerdTaskDir = "io.containerd.runtime.v2.task"

// Annotations that CRI-O and containerd's CRI plugin set on every container
// they create, over any value a pod brought.
const (
	annCRIOType   = "io.kubernetes.cri-o.ContainerType"
	annCRIOLabels = "io.kubernetes.cri-o.Labels"
	annCRIOImage  = "io.kubernetes.cri-o.ImageName"

	annCRIType         = "io.kubernetes.cri.container-type"
	annCRIName         = "io.kubernetes.cri.container-name"
	annCRIImage        = "io.kubernetes.cri.image-name"
	annCRISandboxName  = "io.kubernetes.cri.sandbox-name"
	annCRISandboxNS    = "io.kubernetes.cri.sandbox-namespace"
	annCRISandboxUID   = "io.kubernetes.cri.sandbox-uid"
	annPodmanManager   = "io.container.manager"
	podmanManagerValue = "libpod"
)

// RuntimeAuto asks DetectRuntime to find the runtime itself.
const RuntimeAuto = "auto"

// Runtimes lists the values of the hook's --runtime flag.
var Runtimes = []string{RuntimeAuto, RuntimeContainerd, RuntimeDocker, RuntimeCRIO, RuntimePodman, RuntimeOCI}

// DetectRuntime tells which runtime launched a container. pinned, when not
// "" or "auto", is the hook configuration's word for it (the configuration
// is the administrator's: "boxtap runc" writes "docker" into the hooks it
// adds). Otherwise it goes by what only that runtime controls, in this
// order:
//
//  1. the bundle path: containerd's shims keep bundles in
//     .../io.containerd.runtime.v2.task/<namespace>/<id>; the namespace
//     "moby" is Docker's;
//  2. io.kubernetes.cri-o.ContainerType, which CRI-O sets on every
//     container, replacing a pod's own value;
//  3. io.container.manager=libpod, which podman sets (its users are root
//     on the host, so they could set anything anyway);
//  4. otherwise "oci", and no names are read.
//
// The containerd namespace is returned for containerd only: Docker's IDs
// are unique whatever its namespace.
func DetectRuntime(bundle string, ann map[string]string, pinned string) (runtime, namespace string) {
	ns, fromContainerd := containerdNamespace(bundle)
	switch pinned {
	case "", RuntimeAuto:
	case RuntimeContainerd:
		return pinned, ns
	default:
		return pinned, ""
	}
	if fromContainerd {
		if ns == "moby" {
			return RuntimeDocker, ""
		}
		return RuntimeContainerd, ns
	}
	switch {
	case ann[annCRIOType] != "":
		return RuntimeCRIO, ""
	case ann[annPodmanManager] == podmanManagerValue:
		return RuntimePodman, ""
	}
	return RuntimeOCI, ""
}

// containerdNamespace returns the namespace of a containerd shim's bundle
// path, .../io.containerd.runtime.v2.task/<ns>/<id>.
func containerdNamespace(bundle string) (string, bool) {
	if bundle == "" || !filepath.IsAbs(bundle) {
		return "", false
	}
	b := filepath.Clean(bundle)
	parent := filepath.Dir(b)
	if filepath.Base(filepath.Dir(parent)) != containerdTaskDir {
		return "", false
	}
	ns := filepath.Base(parent)
	if ns == "" || ns == "." || ns == "/" {
		return "", false
	}
	return ns, true
}

// ContainerInfo describes the container of a hook's state. Names, image
// and pod are read only from the keys of the runtime that launched it
// (DetectRuntime), never from another runtime's keys, which a pod author may
// set freely: in a CRI-O pod, say, io.kubernetes.cri.container-name is just
// a pod annotation.
//
// pinned is the hook's --runtime (see DetectRuntime).
func ContainerInfo(st *specs.State, b Bundle, pinned string) container.Info {
	ann := map[string]string{}
	for k, v := range b.Annotations {
		ann[k] = v
	}
	for k, v := range st.Annotations { // the runtime's copy of the same
		ann[k] = v
	}
	runtime, ns := DetectRuntime(st.Bundle, ann, pinned)
	info := container.Info{ID: st.ID, Hostname: b.Hostname, PID: st.Pid, Runtime: runtime}
	switch runtime {
	case RuntimeContainerd:
		info.Namespace = ns
		info.Name = ann[annCRIName]
		info.Image = ann[annCRIImage]
		if ann[annCRIType] != "" {
			info.Pod = container.Pod{
				Name:      ann[annCRISandboxName],
				Namespace: ann[annCRISandboxNS],
				UID:       ann[annCRISandboxUID],
				Sandbox:   ann[annCRIType] == "sandbox",
			}
		}
	case RuntimeCRIO:
		// The kubelet's container labels, which pods cannot set.
		var labels map[string]string
		_ = json.Unmarshal([]byte(ann[annCRIOLabels]), &labels)
		info.Name = labels[container.LabelContainerName]
		info.Image = ann[annCRIOImage]
		info.Pod = container.PodFromLabels(labels)
		info.Pod.Sandbox = ann[annCRIOType] == "sandbox"
	}
	info.Name = strings.TrimPrefix(info.Name, "/")
	return info
}

// Tenant is who may share an annotation's output subdirectory with the
// container: its Kubernetes namespace, as the CRI recorded it, or "" for
// containers outside Kubernetes (whose users are root on the host).
func Tenant(info container.Info) string {
	if info.Runtime == RuntimeContainerd || info.Runtime == RuntimeCRIO {
		return info.Pod.Namespace
	}
	return ""
}

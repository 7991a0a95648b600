package hook

import (
	"strings"

	"github.com/boxtap/boxtap/runtime/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations that runtimes and CRI implementations put on containers and
// that name them.
var nameAnnotations = []string{
	"io.kubernetes.cri.container-name", // containerd CRI
	"io.kubernetes.cri-o.ContainerName",
	"io.kubernetes.container.name",
	"io.podman.annotations.name",
	"org.opencontainers.container.name",
}

var imageAnnotations = []string{
	"io.kubernetes.cri.image-name",
	"io.kubernetes.cri-o.ImageName",
	"org.opencontainers.image.ref.name",
}

// ContainerInfo describes the container of a hook's state, with the names
// its runtime recorded in the annotations (state and config.json).
func ContainerInfo(st *specs.State, b Bundle) container.Info {
	ann := map[string]string{}
	for k, v := range b.Annotations {
		ann[k] = v
	}
	for k, v := range st.Annotations {
		ann[k] = v
	}
	info := container.Info{
		ID:       st.ID,
		Hostname: b.Hostname,
		PID:      st.Pid,
		Runtime:  runtimeOf(ann),
		Name:     first(ann, nameAnnotations),
		Image:    first(ann, imageAnnotations),
	}
	info.Name = strings.TrimPrefix(info.Name, "/")
	pod := container.Pod{
		Name:      firstOf(ann, "io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"),
		Namespace: firstOf(ann, "io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"),
		UID:       firstOf(ann, "io.kubernetes.pod.uid", "io.kubernetes.cri.sandbox-uid"),
		Sandbox:   ann["io.kubernetes.cri.container-type"] == "sandbox" || ann["io.kubernetes.cri-o.ContainerType"] == "sandbox",
	}
	info.Pod = pod
	return info
}

func runtimeOf(ann map[string]string) string {
	switch {
	case ann["io.container.manager"] == "libpod":
		return "podman"
	case firstOf(ann, "io.kubernetes.cri-o.ContainerType") != "":
		return "cri-o"
	case firstOf(ann, "io.kubernetes.cri.container-type") != "":
		return "containerd"
	}
	return "oci"
}

func first(ann map[string]string, keys []string) string { return firstOf(ann, keys...) }

func firstOf(ann map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := ann[k]; v != "" {
			return v
		}
	}
	return ""
}

// Package container describes a container found through a runtime (Docker,
// containerd, ...) in runtime-neutral terms, and picks one container out of a
// list by name or ID the way a user types it on the command line.
package container

import (
	"fmt"
	"github.com/boxtap/boxtap/internal/display"
	"sort"
	"strings"
)

// Pod is the Kubernetes pod a container belongs to, as recorded by the CRI in
// the container's labels. All fields are empty outside Kubernetes.
type Pod struct {
	Name      string
	Namespace string
	UID       string
	// Sandbox is true for the pod's sandbox ("pause") container.
	Sandbox bool
}

// Info is what boxtap needs to know about one container.
type Info struct {
	ID          string
	Name        string // without a leading "/"
	Image       string // image reference as configured, e.g. "nginx:1.27"
	ImageDigest string // image ID ("sha256:...") or a repo digest
	Runtime     string // "docker", "containerd", ...
	Namespace   string // containerd namespace when relevant
	Hostname    string // the container's UTS hostname, as its processes see it
	Labels      map[string]string
	PID         int // init PID on the host; 0 if the container is not running
	Pod         Pod
}

// ShortID returns the form people read. A generated ID (Docker's and the CRI's
// are 64 hex digits) is cut to its first 12 characters, as Docker prints it. An
// ID someone chose (containerd and nerdctl accept any name) is kept whole:
// cutting "web-frontend-1" and "web-frontend-2" would make them one.
func (i Info) ShortID() string {
	const short = 12
	if len(i.ID) <= short || !isHex(i.ID) {
		return i.ID
	}
	return i.ID[:short]
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Labels set by the CRI implementations (containerd's CRI plugin, dockershim,
// cri-dockerd) on the containers they create.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
	labelCRIKind       = "io.cri-containerd.kind"
	labelDockerType    = "io.kubernetes.docker.type"
)

// PodFromLabels extracts the Kubernetes pod identity from CRI container labels.
// A nil or unrelated label map yields the zero Pod.
func PodFromLabels(labels map[string]string) Pod {
	return Pod{
		Name:      labels[LabelPodName],
		Namespace: labels[LabelPodNamespace],
		UID:       labels[LabelPodUID],
		Sandbox:   labels[labelCRIKind] == "sandbox" || labels[labelDockerType] == "podsandbox",
	}
}

// NotFoundError reports that no container matched a query.
type NotFoundError struct {
	Query string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no container matches %q: give a running container's name or ID as shown by `docker ps`", e.Query)
}

// AmbiguousError reports that a query matched more than one container.
type AmbiguousError struct {
	Query   string
	Matches []Info
}

func (e *AmbiguousError) Error() string {
	names := make([]string, 0, len(e.Matches))
	for _, m := range e.Matches {
		names = append(names, fmt.Sprintf("%s (%s)", display.Quote(m.Name), m.ShortID()))
	}
	return fmt.Sprintf("%q matches %d containers: %s; give a longer ID prefix or the full name",
		e.Query, len(e.Matches), strings.Join(names, ", "))
}

// Match picks the one candidate that query designates. In order of precedence:
// an exact name (with or without a leading "/"), an exact full ID, or an ID
// prefix that only one candidate has. Names and IDs are compared exactly; ID
// prefixes are compared case-insensitively, since IDs are hex.
//
// It returns *NotFoundError when nothing matches and *AmbiguousError when
// several candidates match at the same level of precedence.
func Match(query string, candidates []Info) (Info, error) {
	if query == "" || strings.TrimLeft(query, "/") == "" {
		return Info{}, &NotFoundError{Query: query}
	}
	name := strings.TrimPrefix(query, "/")

	byName := filter(candidates, func(c Info) bool { return strings.TrimPrefix(c.Name, "/") == name })
	if len(byName) > 0 {
		return one(query, byName)
	}
	byID := filter(candidates, func(c Info) bool { return c.ID == query })
	if len(byID) > 0 {
		return one(query, byID)
	}
	lower := strings.ToLower(query)
	byPrefix := filter(candidates, func(c Info) bool {
		return c.ID != "" && strings.HasPrefix(strings.ToLower(c.ID), lower)
	})
	if len(byPrefix) > 0 {
		return one(query, byPrefix)
	}
	return Info{}, &NotFoundError{Query: query}
}

func filter(candidates []Info, keep func(Info) bool) []Info {
	var out []Info
	for _, c := range candidates {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// one returns the single match, or an AmbiguousError listing the matches in a
// stable order (by name, then ID) so messages are reproducible.
func one(query string, matches []Info) (Info, error) {
	if len(matches) == 1 {
		return matches[0], nil
	}
	sorted := append([]Info(nil), matches...)
	sort.Slice(sorted, func(a, b int) bool {
		if sorted[a].Name != sorted[b].Name {
			return sorted[a].Name < sorted[b].Name
		}
		return sorted[a].ID < sorted[b].ID
	})
	return Info{}, &AmbiguousError{Query: query, Matches: sorted}
}

package output

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// DockerNamespace is the containerd namespace of Docker's containers. Docker
// IDs are unique on a host, so their files are keyed by ID alone, whether a
// container was found through Docker or in this namespace.
const DockerNamespace = "moby"

// Owner names the container a FileSink writes for.
type Owner struct {
	// Namespace is the containerd namespace; "" for Docker and for
	// runtimes without namespaces (their IDs are unique on the host).
	Namespace string
	// ID is the container's ID, unique within Namespace.
	ID string
	// Name is the container's name ("" for none): the Kubernetes
	// container name inside a pod.
	Name string
	// PodNamespace and PodName name the Kubernetes pod, when there is one.
	PodNamespace, PodName string
}

// validNamespace matches containerd's namespace identifiers (never '@').
var validNamespace = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// FileKey is the name, without ".json", of a container's file: ID for
// Docker and for runtimes without namespaces, NAMESPACE@ID for any other
// containerd namespace. containerd IDs are unique only within a namespace,
// and '@' occurs in neither part, so distinct containers never share a key.
func FileKey(namespace, id string) (string, error) {
	if err := CheckID(id); err != nil {
		return "", err
	}
	if namespace == "" || namespace == DockerNamespace {
		return id, nil
	}
	if len(namespace) > 76 || !validNamespace.MatchString(namespace) {
		return "", fmt.Errorf("containerd namespace %q cannot name a file: letters, digits and single '.', '_' or '-' between them, at most 76", namespace)
	}
	return namespace + "@" + id, nil
}

// linkElems is the path of an owner's by-name link below by-name/, one
// escaped element each, the last ending in ".json":
//
//	Kubernetes pod:                  POD-NAMESPACE/POD/CONTAINER.json
//	other containerd namespaces:     NAMESPACE/NAME.json
//	Docker, runtimes w/o namespaces: NAME.json
//
// It is nil when the container has no name to link.
func linkElems(o Owner) []string {
	if o.Name == "" || o.Name == o.ID {
		return nil
	}
	var dirs []string
	switch {
	case o.PodNamespace != "" && o.PodName != "":
		dirs = []string{o.PodNamespace, o.PodName}
	case o.Namespace != "" && o.Namespace != DockerNamespace:
		dirs = []string{o.Namespace}
	}
	elems := make([]string, 0, len(dirs)+1)
	for _, d := range dirs {
		elems = append(elems, escapeDirElem(d))
	}
	return append(elems, EscapeName(o.Name)+".json")
}

// maxEscaped bounds an escaped element; longer ones are cut and get a hash
// of the whole name, which keeps them distinct and within NAME_MAX.
const (
	maxEscaped = 200
	cutTo      = 180
)

// EscapeName turns any name into one path element, such that distinct
// names always give distinct elements (unlike replacing characters, which
// made "api/v1" and "api_v1" one file): '%', '/', '\', '~', control
// characters, invalid UTF-8, line and paragraph separators and bidi
// controls are written %XX (per byte), as is a leading '.', so the result
// is never "", "." or "..". A result longer than 200 bytes is cut to 180
// and ends in "~" and 16 hex digits of the name's SHA-256 ('~' appears
// nowhere else unescaped).
func EscapeName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		if needsEscape(r, size, i) {
			for j := i; j < i+size; j++ {
				fmt.Fprintf(&b, "%%%02X", name[j])
			}
		} else {
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	s := b.String()
	if s == "" {
		return "%"
	}
	if len(s) <= maxEscaped {
		return s
	}
	sum := sha256.Sum256([]byte(name))
	return s[:cutPoint(s, cutTo)] + "~" + hex.EncodeToString(sum[:8])
}

func needsEscape(r rune, size, at int) bool {
	switch {
	case r == utf8.RuneError && size <= 1:
		return true
	case r == '%', r == '/', r == '\\', r == '~', r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r == '\u2028', r == '\u2029', r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\u200e', r == '\u200f':
		return true
	case r == '.' && at == 0:
		return true
	}
	return false
}

// cutPoint is the largest index <= limit that splits s neither inside a
// UTF-8 sequence nor inside a %XX escape.
func cutPoint(s string, limit int) int {
	cut := 0
	for i := 0; i < len(s); {
		n := 1
		if s[i] == '%' {
			n = 3
		} else {
			_, n = utf8.DecodeRuneInString(s[i:])
		}
		if i+n > limit {
			break
		}
		i += n
		cut = i
	}
	return cut
}

// escapeDirElem escapes a directory element of a link path. It never ends
// in ".json", so a directory never takes the place of a link (a Docker
// container "x" and a containerd namespace "x.json" stay apart).
func escapeDirElem(name string) string {
	s := EscapeName(name)
	if strings.HasSuffix(s, ".json") {
		s = strings.TrimSuffix(s, ".json") + "%2Ejson"
	}
	return s
}

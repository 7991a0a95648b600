package cgroup

import (
	"fmt"
	"path"
	"strings"
)

// defaultSlice is the parent slice runtimes use when the slice part of a
// systemd cgroupsPath is empty (rootful containers).
const defaultSlice = "system.slice"

// ExpandSystemd turns an OCI linux.cgroupsPath into a path relative to the
// cgroup2 mount (without a leading "/").
//
// The systemd form "slice:prefix:name" names a transient unit
// "prefix-name.scope" (or "name" itself when it ends in ".slice") inside
// slice, and systemd places a slice "a-b-c.slice" at a.slice/a-b.slice/a-b-c.slice:
//
//	system.slice:docker:abc      -> system.slice/docker-abc.scope
//	user-1000.slice:podman:x     -> user.slice/user-1000.slice/podman-x.scope
//	:cri-containerd:abc          -> system.slice/cri-containerd-abc.scope
//	-.slice:p:n                  -> p-n.scope   (root slice)
//
// Any other value is a plain cgroupfs path and is returned cleaned, without
// its leading "/". Paths with ".." components are rejected.
func ExpandSystemd(cgroupsPath string) (string, error) {
	if strings.ContainsRune(cgroupsPath, 0) {
		return "", fmt.Errorf("cgroupsPath %q contains a NUL byte", cgroupsPath)
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 || strings.Contains(parts[0], "/") {
		return cleanPlain(cgroupsPath)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = defaultSlice
	}
	parent, err := expandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("cgroupsPath %q: %w", cgroupsPath, err)
	}
	unit, err := unitName(prefix, name)
	if err != nil {
		return "", fmt.Errorf("cgroupsPath %q: %w", cgroupsPath, err)
	}
	if parent == "" {
		return unit, nil
	}
	return parent + "/" + unit, nil
}

func cleanPlain(p string) (string, error) {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("cgroupsPath %q contains \"..\": it must stay inside the cgroup hierarchy", p)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+p), "/"), nil
}

// expandSlice maps a slice unit name to its directory path: "a-b-c.slice"
// becomes "a.slice/a-b.slice/a-b-c.slice"; the root slice "-.slice" (or "-")
// becomes "".
func expandSlice(slice string) (string, error) {
	const suffix = ".slice"
	if slice == "-" || slice == "-.slice" {
		return "", nil
	}
	if !strings.HasSuffix(slice, suffix) || len(slice) == len(suffix) {
		return "", fmt.Errorf("slice %q must be a systemd slice name like \"system.slice\" or \"user-1000.slice\"", slice)
	}
	if strings.Contains(slice, "/") {
		return "", fmt.Errorf("slice %q must not contain \"/\"; write nested slices with dashes (\"a-b.slice\")", slice)
	}
	base := strings.TrimSuffix(slice, suffix)
	var dirs []string
	prefix := ""
	for _, comp := range strings.Split(base, "-") {
		if comp == "" {
			return "", fmt.Errorf("slice %q has an empty component between dashes", slice)
		}
		if prefix == "" {
			prefix = comp
		} else {
			prefix += "-" + comp
		}
		dirs = append(dirs, prefix+suffix)
	}
	return strings.Join(dirs, "/"), nil
}

// unitName is "prefix-name.scope", or name itself when it is a slice.
func unitName(prefix, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("unit name is empty; write \"slice:prefix:name\"")
	}
	if strings.Contains(name, "/") || strings.Contains(prefix, "/") {
		return "", fmt.Errorf("unit prefix %q and name %q must not contain \"/\"", prefix, name)
	}
	if strings.HasSuffix(name, ".slice") {
		return name, nil
	}
	if prefix == "" {
		return name + ".scope", nil
	}
	return prefix + "-" + name + ".scope", nil
}

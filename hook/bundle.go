package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/boxtap/boxtap/runtime/cgroup"
)

// maxConfigBytes bounds config.json reads.
const maxConfigBytes = 16 << 20

// Bundle is what boxtap reads from a bundle's config.json.
type Bundle struct {
	Hostname    string
	CgroupsPath string
	Annotations map[string]string
	// Root is root.path as written: the container's root file system,
	// relative to the bundle unless absolute.
	Root string
	// Exe is process.args[0]: the program the container runs, "" when
	// config.json names none.
	Exe string
}

// ReadBundle reads the fields boxtap uses from <bundle>/config.json.
func ReadBundle(bundle string) (Bundle, error) {
	data, err := readConfig(bundle)
	if err != nil {
		return Bundle{}, err
	}
	b, err := ParseBundle(data)
	if err != nil {
		return Bundle{}, fmt.Errorf("%s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return b, nil
}

// ParseBundle decodes the fields boxtap uses from a config.json.
func ParseBundle(data []byte) (Bundle, error) {
	if len(data) > maxConfigBytes {
		return Bundle{}, fmt.Errorf("config.json is %d bytes, more than %d", len(data), maxConfigBytes)
	}
	var cfg struct {
		Hostname    string            `json:"hostname"`
		Annotations map[string]string `json:"annotations"`
		Linux       *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Bundle{}, fmt.Errorf("not a valid OCI config: %w", err)
	}
	b := Bundle{Hostname: cfg.Hostname, Annotations: cfg.Annotations}
	// Root and program serve TLS capture only: a config whose root or
	// process boxtap cannot read is still traced.
	var prog struct {
		Root *struct {
			Path string `json:"path"`
		} `json:"root"`
		Process *struct {
			Args []string `json:"args"`
		} `json:"process"`
	}
	if json.Unmarshal(data, &prog) == nil {
		if prog.Root != nil {
			b.Root = prog.Root.Path
		}
		if prog.Process != nil && len(prog.Process.Args) > 0 {
			b.Exe = prog.Process.Args[0]
		}
	}
	if cfg.Linux != nil {
		b.CgroupsPath = cfg.Linux.CgroupsPath
	}
	return b, nil
}

// readConfig reads <bundle>/config.json: a regular file, opened without
// blocking (a FIFO there must not hang the hook), at most maxConfigBytes.
func readConfig(bundle string) ([]byte, error) {
	if bundle == "" {
		return nil, errors.New("no bundle directory to read config.json from")
	}
	path := filepath.Join(bundle, "config.json")
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the container's OCI config: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the container's OCI config: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > maxConfigBytes {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", path, st.Size(), maxConfigBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the container's OCI config: %w", err)
	}
	return data, nil
}

// CgroupDir finds the container's cgroup v2 directory under mount: from
// the init PID's /proc/PID/cgroup when pid > 0 and that works, else from
// linux.cgroupsPath in the bundle's config.json, in its plain form
// ("/docker/<id>") or its systemd form ("slice:prefix:name"). A relative
// plain path is taken from the root of the hierarchy.
func CgroupDir(mount string, pid int, bundle string) (string, error) {
	var pidErr error
	if pid > 0 {
		rel, err := cgroup.PathOfPID(pid)
		if err == nil {
			dir, err := cgroup.Dir(mount, rel)
			if err == nil && rel != "/" {
				return dir, nil
			}
			if err == nil {
				err = errors.New("it is the root cgroup")
			}
			pidErr = fmt.Errorf("the cgroup of init PID %d: %w", pid, err)
		} else {
			pidErr = err
		}
	} else {
		pidErr = errors.New("the state has no init PID")
	}
	b, err := ReadBundle(bundle)
	if err != nil {
		return "", fmt.Errorf("finding the container's cgroup: %v; and %w", pidErr, err)
	}
	if b.CgroupsPath == "" {
		return "", fmt.Errorf("finding the container's cgroup: %v; and config.json has no linux.cgroupsPath", pidErr)
	}
	rel, err := cgroup.ExpandSystemd(b.CgroupsPath)
	if err != nil {
		return "", fmt.Errorf("finding the container's cgroup: %v; and linux.cgroupsPath: %w", pidErr, err)
	}
	if rel == "" {
		return "", fmt.Errorf("finding the container's cgroup: %v; and linux.cgroupsPath %q is the root cgroup", pidErr, b.CgroupsPath)
	}
	dir, err := cgroup.Dir(mount, rel)
	if err != nil {
		return "", fmt.Errorf("finding the container's cgroup: %v; and linux.cgroupsPath %q: %w", pidErr, b.CgroupsPath, err)
	}
	return dir, nil
}

// RootFS is the absolute path of the container's root file system for the
// bundle at dir, "" when config.json names none.
func (b Bundle) RootFS(dir string) string {
	if b.Root == "" {
		return ""
	}
	if filepath.IsAbs(b.Root) {
		return filepath.Clean(b.Root)
	}
	return filepath.Join(dir, b.Root)
}

package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrNoV2Mount is returned (wrapped) when no cgroup2 file system is mounted.
var ErrNoV2Mount = errors.New("no cgroup v2 mount found in /proc/self/mountinfo: boxtap needs the unified cgroup hierarchy (cgroup2); mount it or boot with systemd.unified_cgroup_hierarchy=1")

// Mount returns the mount point of the cgroup v2 hierarchy as seen by this
// process, e.g. "/sys/fs/cgroup" (pure v2) or "/sys/fs/cgroup/unified"
// (hybrid).
func Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	return FindV2Mount(f)
}

// FindV2Mount parses text in the /proc/PID/mountinfo format and returns the
// mount point of the cgroup2 file system. When several cgroup2 mounts exist
// (bind mounts of sub-cgroups), the first whose root is "/" wins; otherwise
// the first cgroup2 mount is returned. Malformed lines are skipped.
func FindV2Mount(mountinfo io.Reader) (string, error) {
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	var fallback string
	for sc.Scan() {
		m, ok := parseMountinfoLine(sc.Text())
		if !ok || m.fsType != "cgroup2" || !strings.HasPrefix(m.mountPoint, "/") {
			continue
		}
		if m.root == "/" {
			return m.mountPoint, nil
		}
		if fallback == "" {
			fallback = m.mountPoint
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if fallback != "" {
		return fallback, nil
	}
	return "", ErrNoV2Mount
}

type mountEntry struct {
	root, mountPoint, fsType string
}

// parseMountinfoLine splits one mountinfo line:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//
// Field 7 is zero or more optional fields ended by the "-" separator.
func parseMountinfoLine(line string) (mountEntry, bool) {
	fields := strings.Fields(line)
	if len(fields) < 7 {
		return mountEntry{}, false
	}
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+1 >= len(fields) {
		return mountEntry{}, false
	}
	return mountEntry{
		root:       unescapeOctal(fields[3]),
		mountPoint: unescapeOctal(fields[4]),
		fsType:     unescapeOctal(fields[sep+1]),
	}, true
}

// unescapeOctal undoes the kernel's mountinfo escaping of space, tab, newline
// and backslash as \040, \011, \012 and \134. Any other backslash sequence is
// kept as is.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (int(s[i+1]-'0') << 6) | (int(s[i+2]-'0') << 3) | int(s[i+3]-'0')
			if v <= 0xff {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

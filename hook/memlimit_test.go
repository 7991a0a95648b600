package hook

import (
	"strings"
	"testing"
)

func TestFindMemoryV1Mount(t *testing.T) {
	cases := []struct {
		name, mountinfo, want string
		ok                    bool
	}{
		{"hybrid", "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/memory", true},
		{"co-mounted", "35 31 0:32 / /sys/fs/cgroup/cpu,memory rw - cgroup cgroup rw,cpu,memory\n", "/sys/fs/cgroup/cpu,memory", true},
		{"optional fields", "35 31 0:32 / /m rw shared:9 master:2 - cgroup cgroup rw,memory\n", "/m", true},
		{"pure v2", "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", "", false},
		{"memsw is not memory", "35 31 0:32 / /x rw - cgroup cgroup rw,memsw\n", "", false},
		{"malformed", "35 31 -\n\n- cgroup cgroup memory\n", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := findMemoryV1Mount(strings.NewReader(tc.mountinfo))
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzFindMemoryV1Mount(f *testing.F) {
	f.Add("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")
	f.Fuzz(func(t *testing.T, s string) {
		if m, ok := findMemoryV1Mount(strings.NewReader(s)); ok && (m == "" || !strings.Contains(s, m)) {
			t.Fatalf("mount %q not from the input", m)
		}
	})
}

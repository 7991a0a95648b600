package tlssource

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// auxv builds a 64-bit auxiliary vector from key, value pairs.
func auxv(kv ...uint64) []byte {
	b := make([]byte, 0, 8*len(kv))
	for _, w := range kv {
		b = binary.NativeEndian.AppendUint64(b, w)
	}
	return b
}

func TestAuxvBase(t *testing.T) {
	for _, tc := range []struct {
		name string
		auxv []byte
		want uint64
		ok   bool
	}{
		{"dynamic program", auxv(33, 0x7ffd000, 6, 4096, 7, 0x7f1234560000, 9, 0x401000, 0, 0), 0x7f1234560000, true},
		{"static program", auxv(6, 4096, 7, 0, 0, 0), 0, false},
		{"after AT_NULL", auxv(6, 4096, 0, 0, 7, 0x7f00), 0, false},
		{"none", auxv(6, 4096), 0, false},
		{"cut short", auxv(6, 4096, 7)[:20], 0, false},
		{"empty", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := auxvBase(tc.auxv)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("auxvBase = %#x, %v; want %#x, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestMappingAt(t *testing.T) {
	const maps = `55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 11 /usr/bin/sleep
7f1234560000-7f1234561000 r--p 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7f1234561000-7f1234587000 r-xp 00001000 08:01 12 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7f1234590000-7f1234591000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
`
	for _, tc := range []struct {
		name string
		addr uint64
		want string
		ok   bool
	}{
		{"loader", 0x7f1234560000, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", true},
		{"not a start", 0x7f1234560800, "", false},
		{"anonymous", 0x7f1234590000, "", false},
		{"special", 0x7ffd00000000, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := mappingAt([]byte(maps), tc.addr)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("mappingAt = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// loaderOf finds the dynamic loader of a running dynamic program (Debian's
// sleep) as the program's own PT_INTERP names it, and none in a program
// with no loader.
func TestLoaderOf(t *testing.T) {
	cmd := exec.Command("/usr/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	// Wait until sleep sleeps. /proc/PID/exe names sleep as soon as exec
	// begins, before the kernel has mapped the loader and written the
	// auxiliary vector (a CI run caught that window); a process blocked in
	// its sleep system call has run the loader. boxtap itself looks at a
	// process only from sched_process_exec, which fires after exec is done.
	for i := 0; ; i++ {
		sc, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
		nr, _, _ := strings.Cut(string(sc), " ")
		if err == nil && (nr == strconv.Itoa(unix.SYS_CLOCK_NANOSLEEP) || nr == strconv.Itoa(unix.SYS_NANOSLEEP)) {
			break
		}
		if i == 1000 {
			t.Fatalf("pid %d is not sleeping: /proc/%d/syscall = %q, %v", pid, pid, sc, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	maps, err := readMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := loaderOf(pid, maps)
	want, err := filepath.EvalSymlinks("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Fatal(err)
	}
	if !ok || got != want {
		t.Fatalf("loaderOf(sleep) = %q, %v; want %q", got, ok, want)
	}
	if _, ok := loaderOf(pid, []byte("00400000-00401000 r-xp 00000000 08:01 1 /x\n")); ok {
		t.Fatal("a loader found in mappings without it")
	}
}

func FuzzLoader(f *testing.F) {
	f.Add(auxv(7, 0x7f00, 0, 0), "7f00-7f01 r--p 00000000 08:01 1 /lib/ld-musl-x86_64.so.1\n")
	f.Add(auxv(7, 0), "")
	f.Fuzz(func(t *testing.T, a []byte, maps string) {
		base, ok := auxvBase(a)
		if !ok {
			return
		}
		if p, ok := mappingAt([]byte(maps), base); ok && (!strings.HasPrefix(p, "/") || strings.Contains(p, "\n")) {
			t.Fatalf("bad path %q", p)
		}
	})
}

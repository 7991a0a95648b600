package cgroup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needKernel skips the test when it cannot run here (not root, no cgroup2),
// but fails it when CI=true, where the environment must provide these.
func needKernel(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration test cannot run: %s (CI=true requires it)", why)
	}
	t.Skipf("skipping integration test: %s", why)
}

// realMount returns the host's cgroup2 mount, or skips.
func realMount(t *testing.T) string {
	t.Helper()
	needKernel(t, os.Geteuid() == 0, "needs root")
	mount, err := Mount()
	needKernel(t, err == nil, fmt.Sprintf("no cgroup2 mount: %v", err))
	return mount
}

// tempCgroup creates a child cgroup under the real mount and removes it at
// the end of the test (killing anything left in it first).
func tempCgroup(t *testing.T, mount string) (dir, rel string) {
	t.Helper()
	name := fmt.Sprintf("boxtap-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	dir = filepath.Join(mount, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		needKernel(t, false, fmt.Sprintf("cannot create a cgroup under %s: %v", mount, err))
	}
	t.Cleanup(func() {
		// cgroup.kill exists since 5.14; ignore failure on older kernels.
		_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 50; i++ {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("could not remove test cgroup %s", dir)
	})
	return dir, "/" + name
}

// sleeperIn starts `sleep` and moves it into the cgroup dir.
func sleeperIn(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatalf("move pid %d into %s: %v", cmd.Process.Pid, dir, err)
	}
	return cmd
}

// kernfsID reads the cgroup ID through name_to_handle_at, the way systemd and
// bpftool do: on cgroup2 the file handle is the 64-bit kernfs node ID.
func kernfsID(t *testing.T, dir string) uint64 {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", dir, err)
	}
	b := h.Bytes()
	if len(b) != 8 {
		t.Fatalf("cgroup file handle has %d bytes, want 8", len(b))
	}
	return binary.NativeEndian.Uint64(b)
}

func TestIntegrationCgroupOfProcess(t *testing.T) {
	mount := realMount(t)
	dir, rel := tempCgroup(t, mount)
	cmd := sleeperIn(t, dir)

	got, err := PathOfPID(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if got != rel {
		t.Fatalf("PathOfPID = %q, want %q", got, rel)
	}
	resolved, err := Dir(mount, got)
	if err != nil {
		t.Fatal(err)
	}
	if resolved != dir {
		t.Fatalf("Dir = %q, want %q", resolved, dir)
	}

	id, err := ID(resolved)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if id != st.Ino {
		t.Errorf("ID = %d, stat inode = %d", id, st.Ino)
	}
	if h := kernfsID(t, dir); id != h {
		t.Errorf("ID = %d, kernfs file handle ID = %d", id, h)
	}
	t.Logf("pid %d: cgroup %s, dir %s, id %d", cmd.Process.Pid, got, resolved, id)
}

func TestIntegrationWaitEmptyOnExit(t *testing.T) {
	mount := realMount(t)
	dir, _ := tempCgroup(t, mount)
	cmd := sleeperIn(t, dir)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch := waitAsync(ctx, dir)
	assertBlocked(t, ch)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := <-ch; err != nil {
		t.Fatalf("WaitEmpty after the last process exited: %v", err)
	}
}

func TestIntegrationWaitEmptyOnRemoval(t *testing.T) {
	mount := realMount(t)
	dir, _ := tempCgroup(t, mount)
	cmd := sleeperIn(t, dir)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch := waitAsync(ctx, dir)
	assertBlocked(t, ch)

	// A cgroup can only be removed once empty; kill, reap and remove it at
	// once, so WaitEmpty may see either the emptiness or the removal.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for i := 0; ; i++ {
		err := os.Remove(dir)
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("rmdir %s: %v", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-ch; err != nil {
		t.Fatalf("WaitEmpty after removal: %v", err)
	}
	if err := WaitEmpty(ctx, dir); err != nil {
		t.Fatalf("WaitEmpty on a removed cgroup: %v", err)
	}
}

func TestIntegrationWaitEmptyCancel(t *testing.T) {
	mount := realMount(t)
	dir, _ := tempCgroup(t, mount)
	sleeperIn(t, dir)

	ctx, cancel := context.WithCancel(context.Background())
	ch := waitAsync(ctx, dir)
	assertBlocked(t, ch)
	cancel()
	if err := <-ch; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitEmpty = %v, want context.Canceled", err)
	}
}

func TestIntegrationMountMatchesProc(t *testing.T) {
	mount := realMount(t)
	var fs unix.Statfs_t
	if err := unix.Statfs(mount, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("Mount() = %s has fs type %#x, want cgroup2", mount, fs.Type)
	}
	own, err := PathOfPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dir(mount, own); err != nil {
		t.Fatalf("own cgroup does not resolve: %v", err)
	}
	t.Logf("cgroup2 mount %s, own cgroup %s", mount, own)
}

// TestIntegrationRecreatedCgroupCountsAsGone: a cgroup removed and created
// again at the same path (docker restart) while nobody looked must read as
// gone through the handle opened before, never as the new one's processes.
func TestIntegrationRecreatedCgroupCountsAsGone(t *testing.T) {
	mount := realMount(t)
	dir, _ := tempCgroup(t, mount)
	first := sleeperIn(t, dir)
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if done, err := emptyOrGone(d, dir, false); err != nil || done {
		t.Fatalf("populated cgroup: done=%v err=%v, want false, nil", done, err)
	}
	_ = first.Process.Kill()
	_ = first.Wait()
	for i := 0; ; i++ {
		if err := os.Remove(dir); err == nil {
			break
		} else if i == 100 {
			t.Fatalf("rmdir %s: %v", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("recreate %s: %v", dir, err)
	}
	sleeperIn(t, dir) // the new cgroup is populated
	if done, err := emptyOrGone(d, dir, false); err != nil || !done {
		t.Fatalf("recreated cgroup read through the old handle: done=%v err=%v, want true, nil", done, err)
	}
}

// TestIntegrationWaitEmptyIDSeesAnotherCgroupAsGone: when the directory at the
// path is no longer the cgroup with the given id, that cgroup is gone.
func TestIntegrationWaitEmptyIDSeesAnotherCgroupAsGone(t *testing.T) {
	mount := realMount(t)
	dir, _ := tempCgroup(t, mount)
	sleeperIn(t, dir)
	id, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitEmptyID(ctx, dir, id+1); err != nil {
		t.Fatalf("WaitEmptyID with another id: %v, want nil at once", err)
	}
	ch := make(chan error, 1)
	go func() { ch <- WaitEmptyID(ctx, dir, id) }()
	assertBlocked(t, ch)
	cancel()
	if err := <-ch; err == nil {
		t.Fatal("WaitEmptyID on the populated cgroup returned nil, want the cancellation")
	}
}

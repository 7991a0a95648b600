package hook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RunDir is the directory of the tracers' pid files, e.g. /run/boxtap.
type RunDir string

// PIDFile is the pid file of container id's tracer.
func (d RunDir) PIDFile(id string) string { return filepath.Join(string(d), id+".pid") }

// WritePID records pid as the tracer of container id. It fails if a live
// tracer is already recorded for id.
func (d RunDir) WritePID(id string, pid int) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("creating the run directory: %w", err)
	}
	if old, err := d.ReadPID(id); err == nil && processAlive(old) {
		return fmt.Errorf("container %s is already traced by boxtap process %d", id, old)
	}
	tmp := d.PIDFile(id) + ".tmp" + strconv.Itoa(pid)
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing the tracer's pid file: %w", err)
	}
	if err := os.Rename(tmp, d.PIDFile(id)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the tracer's pid file: %w", err)
	}
	return nil
}

// ReadPID returns the pid recorded for container id.
func (d RunDir) ReadPID(id string) (int, error) {
	data, err := os.ReadFile(d.PIDFile(id))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s does not hold a pid", d.PIDFile(id))
	}
	return pid, nil
}

// RemovePID removes container id's pid file if it still names pid.
func (d RunDir) RemovePID(id string, pid int) {
	if cur, err := d.ReadPID(id); err == nil && cur == pid {
		os.Remove(d.PIDFile(id))
	}
}

func processAlive(pid int) bool {
	return unix.Kill(pid, 0) == nil || errors.Is(unix.Kill(pid, 0), unix.EPERM)
}

// Readiness messages the tracer writes to its readiness pipe: one line,
// "attached" or "error: <message>".
const readyOK = "attached"

// SignalReady tells the waiting hook that tracing started (err == nil) or
// why it could not, then closes w.
func SignalReady(w io.WriteCloser, err error) error {
	msg := readyOK
	if err != nil {
		msg = "error: " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	_, werr := io.WriteString(w, msg+"\n")
	return errors.Join(werr, w.Close())
}

// WaitReady reads the tracer's readiness line. It returns nil once the
// tracer reported "attached", the tracer's error if it reported one, and an
// error if the pipe closed first (the tracer died) or ctx ended first.
func WaitReady(ctx context.Context, r *os.File) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = r.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == readyOK:
		return nil
	case strings.HasPrefix(line, "error: "):
		return errors.New(strings.TrimPrefix(line, "error: "))
	case errors.Is(err, os.ErrDeadlineExceeded):
		if ctx.Err() != nil {
			return fmt.Errorf("the tracer did not attach in time (%w); raise --timeout, or check the log for why it is slow", context.DeadlineExceeded)
		}
		return errors.New("the tracer did not attach in time; raise --timeout")
	case err != nil:
		return fmt.Errorf("the tracer exited before attaching (%v); see the hook log", err)
	default:
		return fmt.Errorf("the tracer sent an unexpected readiness line %q", line)
	}
}

// TracerCgroup is the cgroup a tracer runs in: <mount>/boxtap/<id>, away
// from the runtime's cgroup (whose clean-up would kill it) and from the
// container's (whose accounting must not include it).
type TracerCgroup struct {
	Dir   string
	fd    *os.File
	memV1 string // v1 memory cgroup (hybrid hosts), see LimitMemory
}

// NewTracerCgroup creates <mount>/boxtap/<id> (it may exist already, left
// empty by an earlier run).
func NewTracerCgroup(mount, id string) (*TracerCgroup, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(mount, "boxtap", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the tracer's cgroup %s: %w", dir, err)
	}
	fd, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the tracer's cgroup: %w", err)
	}
	return &TracerCgroup{Dir: dir, fd: fd}, nil
}

// FD is the directory's descriptor, for CLONE_INTO_CGROUP.
func (c *TracerCgroup) FD() int { return int(c.fd.Fd()) }

// Close releases the descriptor (the cgroup stays).
func (c *TracerCgroup) Close() error { return c.fd.Close() }

// Kill kills every process in the cgroup and removes it; for a tracer that
// did not become ready in time.
func (c *TracerCgroup) Kill() {
	_ = os.WriteFile(filepath.Join(c.Dir, "cgroup.kill"), []byte("1"), 0)
	RemoveCgroupDir(c.Dir, time.Second)
	if c.memV1 != "" {
		RemoveCgroupDir(c.memV1, time.Second)
	}
}

// RemoveCgroupDir removes an (emptying) cgroup directory, retrying for up
// to wait while its last processes exit.
func RemoveCgroupDir(dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LeaveCgroup moves the calling process from its own cgroup dir into
// dir's parent and removes dir, so that a tracer leaves no cgroup behind.
// It must be the last process in dir.
func LeaveCgroup(dir string) error {
	parent := filepath.Dir(dir)
	if err := os.WriteFile(filepath.Join(parent, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("leaving cgroup %s: %w", dir, err)
	}
	return RemoveCgroupDir(dir, time.Second)
}

// WaitExit waits until process pid (not necessarily our child) has exited,
// or ctx ends. It uses a pidfd, so a recycled pid is never mistaken for
// the process.
func WaitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("watching process %d: %w", pid, err)
	}
	defer unix.Close(fd)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 20)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("watching process %d: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
	}
}

// SignalPID sends sig to pid through a pidfd.
func SignalPID(pid int, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// LiveTracer returns the pid of container id's tracer if its pid file names
// a live boxtap hook-tracer process for id. A stale pid file (the process
// is gone, or the pid now belongs to something else) is removed.
func (d RunDir) LiveTracer(id string) (int, bool) {
	pid, err := d.ReadPID(id)
	if err != nil {
		return 0, false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err == nil && IsTracerCmdline(cmdline, id) {
		return pid, true
	}
	d.RemovePID(id, pid)
	return 0, false
}

// TracerSubcommand is the hidden subcommand a tracer runs as.
const TracerSubcommand = "hook-tracer"

// IsTracerCmdline reports whether a /proc/PID/cmdline (NUL-separated) is
// that of the tracer of container id: it has the TracerSubcommand and
// "--id=<id>" arguments.
func IsTracerCmdline(cmdline []byte, id string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	sub, idArg := false, false
	for _, a := range args {
		sub = sub || a == TracerSubcommand
		idArg = idArg || a == "--id="+id
	}
	return sub && idArg
}

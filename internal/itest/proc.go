package itest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a background process started by StartProc. Its stdout is collected as lines and its
// stderr as text; both can be read while it runs. It is killed (with its process group) when
// the test ends, if still running.
type Proc struct {
	cmd *exec.Cmd

	mu      sync.Mutex
	lines   []string      // complete stdout lines, without "\n"
	partial []byte        // stdout after the last "\n"
	stderr  bytes.Buffer  // all of stderr
	changed chan struct{} // closed and replaced whenever output arrives

	done    chan struct{} // closed when the process has exited and output is drained
	waitErr error         // set before done is closed
}

// StartProc starts bin with args. Cancelling ctx kills the process and its process group.
func StartProc(t testing.TB, ctx context.Context, bin string, args ...string) *Proc {
	t.Helper()
	return StartCmd(t, exec.CommandContext(ctx, bin, args...))
}

// StartCmd starts a prepared command (set Env, Dir, ... first; leave Stdout and Stderr unset).
// The process gets its own process group so that cleanup also kills its children.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	if cmd.Stdout != nil || cmd.Stderr != nil {
		t.Fatalf("StartCmd: leave Stdout and Stderr of %s unset; Proc collects them", cmd.Path)
	}
	p := &Proc{cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
	cmd.Stdout = stdoutSink{p}
	cmd.Stderr = stderrSink{p}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if cmd.Cancel != nil { // made by exec.CommandContext: on cancel, kill the whole group
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second // do not hang on pipes held open by grandchildren
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		if len(p.partial) > 0 {
			p.lines = append(p.lines, string(p.partial))
			p.partial = nil
		}
		p.waitErr = err
		p.notifyLocked()
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Logf("process %d (%s) did not exit after SIGKILL", cmd.Process.Pid, cmd.Path)
			}
		}
		if t.Failed() {
			t.Logf("%s stderr (last 4 KiB):\n%s", cmd.Path, tail(p.Stderr(), 4096))
		}
	})
	return p
}

type stdoutSink struct{ p *Proc }

func (s stdoutSink) Write(b []byte) (int, error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		p.lines = append(p.lines, string(p.partial[:i]))
		p.partial = p.partial[i+1:]
	}
	p.notifyLocked()
	return len(b), nil
}

type stderrSink struct{ p *Proc }

func (s stderrSink) Write(b []byte) (int, error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stderr.Write(b)
	p.notifyLocked()
	return len(b), nil
}

func (p *Proc) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Lines returns a copy of the complete stdout lines so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Stderr returns everything written to stderr so far.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// waitFor polls cond (under p.mu) on every output change until it holds, the process exits
// (one last check), or the timeout passes.
func (p *Proc) waitFor(timeout time.Duration, cond func() bool) (ok, exited bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		met, changed := cond(), p.changed
		p.mu.Unlock()
		if met {
			return true, false
		}
		select {
		case <-changed:
		case <-p.done:
			p.mu.Lock()
			met = cond()
			p.mu.Unlock()
			return met, true
		case <-timer.C:
			return false, false
		}
	}
}

// WaitLine waits for a stdout line containing substr and returns it.
func (p *Proc) WaitLine(substr string, timeout time.Duration) (string, error) {
	var found string
	ok, exited := p.waitFor(timeout, func() bool {
		for _, l := range p.lines {
			if strings.Contains(l, substr) {
				found = l
				return true
			}
		}
		return false
	})
	if ok {
		return found, nil
	}
	return "", p.waitError(fmt.Sprintf("a stdout line containing %q", substr), timeout, exited)
}

// WaitLines waits until stdout has at least n complete lines and returns them all.
func (p *Proc) WaitLines(n int, timeout time.Duration) ([]string, error) {
	ok, exited := p.waitFor(timeout, func() bool { return len(p.lines) >= n })
	if ok {
		return p.Lines(), nil
	}
	return p.Lines(), p.waitError(fmt.Sprintf("%d stdout lines (have %d)", n, len(p.Lines())), timeout, exited)
}

// WaitStderr waits until stderr contains substr.
func (p *Proc) WaitStderr(substr string, timeout time.Duration) error {
	ok, exited := p.waitFor(timeout, func() bool { return strings.Contains(p.stderr.String(), substr) })
	if ok {
		return nil
	}
	return p.waitError(fmt.Sprintf("%q on stderr", substr), timeout, exited)
}

func (p *Proc) waitError(what string, timeout time.Duration, exited bool) error {
	why := fmt.Sprintf("not within %s", timeout)
	if exited {
		why = fmt.Sprintf("process exited first (%v)", p.exitErr())
	}
	return fmt.Errorf("%s: waiting for %s: %s; stderr (last 2 KiB):\n%s", p.cmd.Path, what, why, tail(p.Stderr(), 2048))
}

func (p *Proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitErr == nil {
		return errors.New("exit status 0")
	}
	return p.waitErr
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, p.cmd.Path, p.PID(), err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit error (nil for
// status 0). It does not kill the process on timeout; the test's cleanup does.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s; stderr (last 2 KiB):\n%s", p.cmd.Path, p.PID(), timeout, tail(p.Stderr(), 2048))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

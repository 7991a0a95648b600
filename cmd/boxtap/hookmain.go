package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/boxtap/boxtap/hook"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/output"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Defaults of the hook's settings that hookMain needs when the command
// line cannot be parsed.
const (
	defaultHookTimeout   = 5 * time.Second
	defaultHookOutputDir = "/var/log/boxtap"
)

// isHookRun reports whether argv runs "boxtap hook" (not its --help), which
// main hands to hookMain before kong could exit 80 on a bad flag.
func isHookRun(argv []string) bool {
	if len(argv) < 2 || argv[1] != "hook" {
		return false
	}
	for _, a := range argv[2:] {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" {
			return false
		}
	}
	return true
}

// hookMain runs "boxtap hook" within --timeout from its first instruction,
// failing open on anything: a bad command line, a signal, a panic, a stuck
// read. It returns the exit code.
func hookMain(args []string) (code int) {
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer func() {
		// Only a panic in kong itself gets here; runBounded has its own.
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "boxtap hook: internal error (please report it): panic: %q\n", fmt.Sprint(r))
			s := lenientHookSettings(args)
			code = s.failCode()
		}
	}()
	var c cli
	var err error
	k, err := kong.New(&c, append(kongOptions(), kong.Exit(func(int) {}))...)
	if err == nil {
		_, err = k.Parse(args)
	}
	h := &c.Hook
	if err != nil {
		err = fmt.Errorf("bad command line (%v); see boxtap hook --help", err)
		h.hookSettings = lenientHookSettings(args)
	}
	return h.runBounded(ctx, start, err, nil, h.run)
}

// lenientHookSettings picks --output-dir, --timeout and --fail-closed out of
// a command line that kong refused, so that the error is logged where the
// administrator looks and fails the way they asked.
func lenientHookSettings(args []string) hookSettings {
	s := hookSettings{OutputDir: defaultHookOutputDir, Timeout: defaultHookTimeout}
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(args[i], "=")
		if !hasVal && i+1 < len(args) && (name == "--output-dir" || name == "--timeout") {
			val = args[i+1]
		}
		switch name {
		case "--output-dir":
			if val != "" {
				s.OutputDir = val
			}
		case "--timeout":
			if d, err := time.ParseDuration(val); err == nil && d > 0 {
				s.Timeout = d
			}
		case "--fail-closed":
			s.FailClosed = !hasVal || val == "true"
		}
	}
	return s
}

func (s *hookSettings) failCode() int {
	if s.FailClosed {
		return 1
	}
	return 0
}

// hookGuard is how long before --timeout the hook's work is cut off, to
// leave time to clean up and log; a watchdog ends the process at half of it
// whatever is stuck.
func hookGuard(timeout time.Duration) time.Duration {
	return min(timeout/10, 500*time.Millisecond)
}

// runBounded runs work under the hook's guarantees: it returns (or the
// process exits) before start+--timeout, SIGTERM ends it, and any error or
// panic is logged and gives exit 0 (1 with --fail-closed). lg nil means the
// hook's usual logger.
func (c *hookCmd) runBounded(ctx context.Context, start time.Time, parseErr error, lg *hookLogger, work func(context.Context, *hookLogger) error) (code int) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	deadline := start.Add(timeout)
	guard := hookGuard(timeout)
	failCode := c.failCode()
	if lg == nil {
		lg = newHookLogger(c.OutputDir, c.Stage, guard/4)
	}
	defer lg.Close()
	outcome := "the container starts untraced"
	if c.FailClosed {
		outcome = "failing the start (--fail-closed)"
	}
	watchdog := time.AfterFunc(time.Until(deadline.Add(-guard/2)), func() {
		lg.Errorf("gave up: the hook did not finish within --timeout %s; %s", timeout, outcome)
		os.Exit(failCode)
	})
	defer watchdog.Stop()
	defer func() {
		if r := recover(); r != nil {
			lg.Errorf("internal error (please report it): panic: %q; %s\n%s", fmt.Sprint(r), outcome, debug.Stack())
			code = failCode
		}
	}()
	if parseErr != nil {
		lg.Errorf("%v; %s", parseErr, outcome)
		return failCode
	}
	wctx, cancel := context.WithDeadline(ctx, deadline.Add(-guard))
	defer cancel()
	err := work(wctx, lg)
	if err == nil {
		return 0
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("interrupted by a signal: %w", err)
	}
	lg.Errorf("%v; %s", err, outcome)
	return failCode
}

// readStateBounded reads the OCI state from f until ctx ends. A runtime may
// keep stdin open after writing the state (or never write it): the first
// whole JSON value is taken without waiting for the end of input, and the
// read gives up when ctx does.
func readStateBounded(ctx context.Context, f *os.File) (*specs.State, error) {
	// A pollable copy of the descriptor: deadlines need non-blocking mode.
	// The mode belongs to the open file, so it is put back afterwards.
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("reading the OCI state from stdin: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("reading the OCI state from stdin: %w", err)
	}
	in := os.NewFile(uintptr(fd), "stdin")
	defer func() {
		_ = unix.SetNonblock(fd, false)
		in.Close()
	}()
	if dl, ok := ctx.Deadline(); ok {
		_ = in.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = in.SetReadDeadline(time.Now()) })
	defer stop()
	st, err := hook.ReadState(in)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("no complete OCI state on stdin within --timeout (%w); is boxtap hook run by an OCI runtime?", context.Cause(ctx))
	}
	return st, err
}

// hookLogger reports what the hook did: to syslog (the journal, where
// present) when /dev/log exists, else to boxtap-hook.log in the output
// directory (created 0700 if missing), and errors always to stderr, which
// runtimes show when a hook fails. Every write to syslog has a deadline: a
// stalled log daemon must not hold up a container's start. Safe for
// concurrent use (the watchdog logs too).
type hookLogger struct {
	born    time.Time // when the hook began its work, for the timings it logs
	stage   string
	maxWait time.Duration
	stderr  io.Writer

	mu   sync.Mutex
	id   string
	dir  *output.Dir
	sys  *syslogConn
	file *os.File
}

func newHookLogger(outDir, stage string, maxWait time.Duration) *hookLogger {
	lg := &hookLogger{born: time.Now(), stage: stage, maxWait: max(maxWait, 10*time.Millisecond), stderr: os.Stderr}
	if d, err := output.OpenDir(outDir, output.DirOptions{}); err == nil {
		lg.dir = d
	} else {
		fmt.Fprintf(os.Stderr, "boxtap hook: %v\n", err)
	}
	if s, err := dialSyslog(syslogSocket, lg.maxWait); err == nil {
		lg.sys = s
		return lg
	}
	if lg.dir != nil {
		if f, err := lg.dir.OpenAppend(hookLogName); err == nil {
			lg.file = f
		} else {
			fmt.Fprintf(os.Stderr, "boxtap hook: %v\n", err)
		}
	}
	return lg
}

func (l *hookLogger) setID(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.id = id
}

func (l *hookLogger) line(level, format string, args ...any) string {
	stage := l.stage
	if stage == "" {
		stage = "hook"
	}
	id := l.id
	if id == "" {
		id = "-"
	}
	return fmt.Sprintf("%s %s: %s: %s", display.Quote(stage), id, level, fmt.Sprintf(format, args...))
}

func (l *hookLogger) Errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := l.line("error", format, args...)
	fmt.Fprintln(l.stderr, "boxtap "+msg)
	l.write(syslog.LOG_ERR, msg)
}

func (l *hookLogger) Infof(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.write(syslog.LOG_INFO, l.line("info", format, args...))
}

func (l *hookLogger) write(sev syslog.Priority, msg string) {
	switch {
	case l.sys != nil:
		if err := l.sys.write(sev, msg, time.Now().Add(l.maxWait)); err != nil {
			fmt.Fprintf(l.stderr, "boxtap hook: syslog: %v; the message was: %s\n", err, msg)
		}
	case l.file != nil:
		fmt.Fprintf(l.file, "%s boxtap %s\n", time.Now().Format(time.RFC3339Nano), msg)
	}
}

// childOutput is where the tracer's stdout and stderr go: the log file
// next to the output, else /dev/null. Never the runtime's pipes, which
// would keep the runtime waiting.
func (l *hookLogger) childOutput() io.WriteCloser {
	if l.dir != nil {
		if f, err := l.dir.OpenAppend(hookLogName); err == nil {
			return f
		}
	}
	if f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		return f
	}
	return nopWriteCloser{io.Discard}
}

func (l *hookLogger) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil {
		l.sys.conn.Close()
	}
	if l.file != nil {
		l.file.Close()
	}
	if l.dir != nil {
		l.dir.Close()
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// syslogConn writes to the local syslog socket. log/syslog offers no
// deadline on its writes, and a full /dev/log queue blocks a writer for as
// long as the daemon is stuck; this sets one per message.
type syslogConn struct {
	conn net.Conn
	pid  int
}

const syslogSocket = "/dev/log"

func dialSyslog(path string, wait time.Duration) (*syslogConn, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	var errs []error
	for _, network := range []string{"unixgram", "unix"} {
		c, err := net.DialTimeout(network, path, wait)
		if err == nil {
			return &syslogConn{conn: c, pid: os.Getpid()}, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// write sends one message in the local syslog format (as log/syslog does
// for a Unix socket), facility daemon.
func (s *syslogConn) write(sev syslog.Priority, msg string, deadline time.Time) error {
	if err := s.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	pri := syslog.LOG_DAEMON | sev
	_, err := fmt.Fprintf(s.conn, "<%d>%s boxtap-hook[%d]: %s\n", pri, time.Now().Format(time.Stamp), s.pid, strings.TrimSuffix(msg, "\n"))
	return err
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/hook"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/internal/telemetry"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/cgroup"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/tracer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// hookLogName is the log file written next to the output when there is no
// syslog socket.
const hookLogName = "boxtap-hook.log"

// hookSettings are the options shared by "boxtap hook" and the hooks that
// "boxtap runc" installs.
type hookSettings struct {
	OutputDir         string        `name:"output-dir" default:"/var/log/boxtap" help:"Write <container-id>.json here (it must exist)." placeholder:"DIR"`
	RunDir            string        `name:"run-dir" default:"/run/boxtap" help:"Directory of the tracers' pid files." placeholder:"DIR"`
	Timeout           time.Duration `default:"5s" help:"Give up (and fail open, or closed with --fail-closed) if the tracer has not attached within this time; poststop waits this long for the flush."`
	FailClosed        bool          `name:"fail-closed" help:"Fail the container's start when tracing cannot start (default: log the error and let it start)."`
	RequireAnnotation bool          `name:"require-annotation" help:"Trace only containers that carry the io.boxtap.trace annotation."`
	RingSize          string        `name:"ring-size" default:"2MiB" help:"Kernel ring buffer of each container's tracer: a power of two from 16KiB, e.g. 2MiB." placeholder:"SIZE"`
	RedactHeader      []string      `name:"redact-header" sep:"none" help:"Also redact this header's value (repeatable)." placeholder:"NAME"`
	MemoryBudget      string        `name:"memory-budget" default:"192MiB" help:"Most memory each container's tracer may use; its cgroup gets it as memory.max. Connection state is held to a third of it (see boxtap trace --help)." placeholder:"SIZE"`
	hookOTLPFlags
}

// args renders the settings as command-line flags, for the hooks that
// "boxtap runc" writes into config.json.
func (s *hookSettings) args() []string {
	a := []string{
		"--output-dir=" + s.OutputDir,
		"--run-dir=" + s.RunDir,
		"--timeout=" + s.Timeout.String(),
		"--ring-size=" + s.RingSize,
		"--memory-budget=" + s.MemoryBudget,
	}
	if s.FailClosed {
		a = append(a, "--fail-closed")
	}
	if s.RequireAnnotation {
		a = append(a, "--require-annotation")
	}
	for _, h := range s.RedactHeader {
		a = append(a, "--redact-header="+h)
	}
	return append(a, s.hookOTLPFlags.args()...)
}

type hookCmd struct {
	Stage string `arg:"" optional:"" help:"createRuntime or prestart (start tracing), poststop (stop); inferred from the state's status when omitted."`
	hookSettings
}

func (hookCmd) Help() string {
	return `Run by an OCI runtime (runc, podman, CRI-O, containerd through its base
spec, Docker through "boxtap runc"), with the container state on stdin.

In createRuntime or prestart, boxtap attaches to the container's cgroup before
its process starts and leaves a tracer running in a cgroup of its own; the
tracer writes <output-dir>/<container-id>.json and exits when the container
ends (poststop, or its cgroup empties). The hook returns once the programs are
attached, always within --timeout.

Errors go to syslog (or ` + hookLogName + ` in the output directory) and, by
default, the hook still exits 0 so that the container starts (--fail-closed
fails the start instead). The annotation io.boxtap.trace=false turns tracing
off for one container; its value may also carry options, e.g.
io.boxtap.trace=output-dir=web,redact-header=X-Token, and filters named
like boxtap trace's flags (status=, method=, path=, host=, min-latency=,
direction=; repeat a key for OR), e.g. io.boxtap.trace=status=5xx,status=404.`
}

func (c *hookCmd) Run(ctx context.Context) error {
	lg := newHookLogger(c.OutputDir, c.Stage)
	defer lg.Close()
	err := c.run(ctx, lg)
	if err == nil {
		return nil
	}
	lg.Errorf("%v", err)
	if c.FailClosed {
		return &exitError{code: 1}
	}
	return nil
}

func (c *hookCmd) run(ctx context.Context, lg *hookLogger) error {
	st, err := hook.ReadState(os.Stdin)
	if err != nil {
		return err
	}
	lg.id = st.ID
	action, err := hook.ParseStage(c.Stage, st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	switch action {
	case hook.ActionStart:
		return c.start(ctx, st, lg)
	case hook.ActionStop:
		return c.stop(ctx, st, lg)
	}
	return nil
}

// start attaches to the container through a detached tracer and returns
// once the tracer reports its programs attached.
func (c *hookCmd) start(ctx context.Context, st *specs.State, lg *hookLogger) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("boxtap hook runs as uid %d, not root: it cannot load eBPF programs; run the hook from a rootful runtime (rootless podman cannot trace)", os.Geteuid())
	}
	b, berr := hook.ReadBundle(st.Bundle)
	ann := map[string]string{}
	for k, v := range b.Annotations {
		ann[k] = v
	}
	for k, v := range st.Annotations {
		ann[k] = v
	}
	value, annotated := ann[hook.Annotation]
	if c.RequireAnnotation && !annotated {
		return nil
	}
	req, err := hook.ParseAnnotation(value)
	if err != nil {
		return err
	}
	if !req.Trace {
		lg.Infof("not traced: annotation %s=%s", hook.Annotation, display.Quote(value))
		return nil
	}
	outDir, err := hook.OutputDirWithin(c.OutputDir, req.OutputDir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(outDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("output directory %s does not exist; create it (mkdir -p %s) or pass --output-dir", display.Quote(outDir), display.Quote(outDir))
	}
	runDir := hook.RunDir(c.RunDir)
	if pid, ok := runDir.LiveTracer(st.ID); ok {
		lg.Infof("already traced by process %d", pid)
		return nil
	}
	if _, err := parseRingSize(c.RingSize); err != nil {
		return err
	}
	if _, err := parseMemoryBudget(c.MemoryBudget); err != nil {
		return err
	}
	mount, err := cgroup.Mount()
	if err != nil {
		return err
	}
	dir, err := hook.CgroupDir(mount, st.Pid, st.Bundle)
	if err != nil {
		if berr != nil {
			err = errors.Join(err, berr)
		}
		return err
	}
	info := hook.ContainerInfo(st, b)
	return c.spawnTracer(ctx, mount, dir, filepath.Join(outDir, st.ID+".json"), info, req.RedactHeaders, req.Filter, lg)
}

// spawnTracer starts "boxtap hook-tracer" detached: its own session, its
// own cgroup, stdio on the hook log or /dev/null, and a readiness pipe on
// fd 3 that it writes "attached" (or why not) to.
func (c *hookCmd) spawnTracer(ctx context.Context, mount, cgroupDir, outFile string, info container.Info, redact []string, filter output.FilterSpec, lg *hookLogger) error {
	own, err := hook.NewTracerCgroup(mount, info.ID)
	if err != nil {
		return err
	}
	defer own.Close()
	budget, err := parseMemoryBudget(c.MemoryBudget)
	if err != nil {
		return err
	}
	if err := own.LimitMemory(budget); err != nil {
		own.Kill()
		return err
	}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encoding container info: %w", err)
	}
	args := []string{
		hook.TracerSubcommand,
		"--id=" + info.ID,
		"--cgroup-dir=" + cgroupDir,
		"--own-cgroup=" + own.Dir,
		"--output-file=" + outFile,
		"--run-dir=" + c.RunDir,
		"--info=" + string(infoJSON),
		"--ring-size=" + c.RingSize,
		"--memory-budget=" + c.MemoryBudget,
	}
	for _, h := range append(append([]string{}, c.RedactHeader...), redact...) {
		args = append(args, "--redact-header="+h)
	}
	args = append(args, filter.Args()...)
	args = append(args, c.hookOTLPFlags.args()...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("creating the readiness pipe: %w", err)
	}
	defer pr.Close()
	stdio := lg.childOutput()
	defer stdio.Close()
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdio, stdio
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: own.FD()}
	if err := cmd.Start(); err != nil {
		pw.Close()
		own.Kill()
		return fmt.Errorf("starting the tracer: %w", err)
	}
	pw.Close()
	if err := own.JoinMemoryV1(cmd.Process.Pid); err != nil {
		own.Kill()
		_ = cmd.Wait()
		return err
	}
	if err := hook.WaitReady(ctx, pr); err != nil {
		own.Kill()
		_ = cmd.Wait()
		return err
	}
	lg.Infof("tracing %s (cgroup %s) into %s, tracer pid %d", info.ID, display.Quote(cgroupDir), display.Quote(outFile), cmd.Process.Pid)
	return cmd.Process.Release()
}

// stop signals the container's tracer and waits until it has flushed and
// exited.
func (c *hookCmd) stop(ctx context.Context, st *specs.State, lg *hookLogger) error {
	runDir := hook.RunDir(c.RunDir)
	pid, ok := runDir.LiveTracer(st.ID)
	if ok {
		if err := hook.SignalPID(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("stopping tracer %d: %w", pid, err)
		}
		if err := hook.WaitExit(ctx, pid); err != nil {
			return fmt.Errorf("tracer %d did not finish writing within --timeout %s: %w", pid, c.Timeout, err)
		}
		lg.Infof("tracer %d finished", pid)
	}
	// A tracer that was killed could not remove its cgroup.
	if mount, err := cgroup.Mount(); err == nil && hook.ValidID(st.ID) == nil {
		_ = hook.RemoveCgroupDir(filepath.Join(mount, "boxtap", st.ID), 0)
		if dir := hook.MemoryV1Dir(st.ID); dir != "" {
			_ = hook.RemoveCgroupDir(dir, 0)
		}
	}
	return nil
}

// hookTracerCmd is the detached per-container tracer.
type hookTracerCmd struct {
	ID           string   `name:"id" required:""`
	CgroupDir    string   `name:"cgroup-dir" required:""`
	OwnCgroup    string   `name:"own-cgroup"`
	OutputFile   string   `name:"output-file" required:""`
	RunDir       string   `name:"run-dir" required:""`
	Info         string   `name:"info"`
	RingSize     string   `name:"ring-size" default:"2MiB"`
	RedactHeader []string `name:"redact-header" sep:"none"`
	hookFilterFlags
	MemoryBudget string `name:"memory-budget" default:"192MiB"`
	hookOTLPFlags
}

func (c *hookTracerCmd) Run(ctx context.Context) error {
	ready := os.NewFile(3, "readiness pipe")
	if ready == nil {
		return errors.New("hook-tracer is started by boxtap hook, with a readiness pipe on fd 3")
	}
	defer func() {
		if c.OwnCgroup != "" {
			if err := hook.LeaveCgroup(c.OwnCgroup); err != nil {
				fmt.Fprintln(os.Stderr, "boxtap tracer:", err)
			}
			if err := hook.LeaveMemoryV1(c.ID); err != nil {
				fmt.Fprintln(os.Stderr, "boxtap tracer:", err)
			}
		}
	}()
	t, err := c.setup()
	if err != nil {
		_ = hook.SignalReady(ready, err)
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	defer t.close()
	if err := hook.SignalReady(ready, nil); err != nil {
		// The hook gave up (deadline): it kills this cgroup anyway.
		return fmt.Errorf("container %s: reporting readiness: %w", c.ID, err)
	}
	return t.run(ctx)
}

// hookTracer is one container's running tracer.
type hookTracer struct {
	id     string
	coll   *bpf.Collection
	tr     *tracer.Tracer
	tg     *tracer.Target
	file   *os.File
	runDir hook.RunDir
	spans  *telemetry.Spans // nil without --otlp-endpoint
}

func (c *hookTracerCmd) setup() (t *hookTracer, err error) {
	var info container.Info
	if c.Info != "" {
		if err := json.Unmarshal([]byte(c.Info), &info); err != nil {
			return nil, fmt.Errorf("decoding --info: %w", err)
		}
	}
	info.ID = c.ID
	cgID, err := cgroup.ID(c.CgroupDir)
	if err != nil {
		return nil, err
	}
	ring, err := parseRingSize(c.RingSize)
	if err != nil {
		return nil, err
	}
	budget, err := parseMemoryBudget(c.MemoryBudget)
	if err != nil {
		return nil, err
	}
	coll, err := bpf.Load(bpf.Options{RingBytes: ring})
	if err != nil {
		return nil, err
	}
	t = &hookTracer{id: c.ID, coll: coll, runDir: hook.RunDir(c.RunDir)}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	t.file, err = os.OpenFile(c.OutputFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return t, fmt.Errorf("opening the output file: %w", err)
	}
	sink := output.NewLineSink(t.file, output.NewRedactor(c.RedactHeader, false))
	filter, err := c.hookFilterFlags.filter()
	if err != nil {
		return t, err
	}
	opts := tracer.Options{Filter: filter, StateBudget: applyMemoryBudget(budget)}
	if t.spans, err = c.hookOTLPFlags.spans(context.Background()); err != nil {
		return t, err
	}
	if t.spans != nil {
		opts.Observer = t.spans
	}
	t.tr = tracer.New(coll, opts)
	t.tg, err = t.tr.Add(info, c.CgroupDir, cgID, sink)
	if err != nil {
		return t, err
	}
	if err := t.runDir.WritePID(c.ID, os.Getpid()); err != nil {
		return t, err
	}
	return t, nil
}

// run reads events until ctx ends (SIGTERM from the poststop hook) or the
// container's cgroup empties or disappears.
func (t *hookTracer) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := cgroup.WaitEmptyID(ctx, t.tg.CgroupDir, t.tg.CgroupID()); err != nil {
			return // stopping by signal: Run drains, close removes
		}
		// Detach while Run still runs, so it drains the last records.
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		if err := t.tr.Remove(rctx, t.tg); err != nil {
			fmt.Fprintf(os.Stderr, "boxtap tracer %s: detaching: %v\n", t.id, err)
		}
		t.tg = nil
		cancel()
	}()
	runErr := t.tr.Run(ctx)
	cancel()
	wg.Wait()
	return runErr
}

// close detaches, flushes and syncs the output, and releases everything.
func (t *hookTracer) close() {
	if t.tg != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := t.tr.Remove(rctx, t.tg); err != nil {
			fmt.Fprintf(os.Stderr, "boxtap tracer %s: detaching: %v\n", t.id, err)
		}
		rcancel()
		t.tg = nil
	}
	if t.file != nil {
		if err := t.file.Sync(); err != nil {
			fmt.Fprintf(os.Stderr, "boxtap tracer %s: syncing output: %v\n", t.id, err)
		}
		t.file.Close()
	}
	closeHookSpans(t.id, t.spans)
	t.runDir.RemovePID(t.id, os.Getpid())
	if err := t.coll.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "boxtap tracer %s: releasing eBPF objects: %v\n", t.id, err)
	}
}

// hookLogger reports what the hook did: to syslog (the journal, where
// present) when /dev/log exists, else to boxtap-hook.log in the output
// directory, and always to stderr, which runtimes show when a hook fails.
type hookLogger struct {
	stage  string
	id     string
	outDir string
	sys    *syslog.Writer
	file   *os.File
}

func newHookLogger(outDir, stage string) *hookLogger {
	lg := &hookLogger{stage: stage, outDir: outDir}
	if _, err := os.Stat("/dev/log"); err == nil {
		if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "boxtap-hook"); err == nil {
			lg.sys = w
			return lg
		}
	}
	if f, err := os.OpenFile(filepath.Join(outDir, hookLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640); err == nil {
		lg.file = f
	}
	return lg
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
	return fmt.Sprintf("%s %s: %s: %s", stage, id, level, fmt.Sprintf(format, args...))
}

func (l *hookLogger) Errorf(format string, args ...any) {
	msg := l.line("error", format, args...)
	fmt.Fprintln(os.Stderr, "boxtap "+msg)
	switch {
	case l.sys != nil:
		_ = l.sys.Err(msg)
	case l.file != nil:
		fmt.Fprintf(l.file, "%s boxtap %s\n", time.Now().Format(time.RFC3339Nano), msg)
	}
}

func (l *hookLogger) Infof(format string, args ...any) {
	msg := l.line("info", format, args...)
	switch {
	case l.sys != nil:
		_ = l.sys.Info(msg)
	case l.file != nil:
		fmt.Fprintf(l.file, "%s boxtap %s\n", time.Now().Format(time.RFC3339Nano), msg)
	}
}

// childOutput is where the tracer's stdout and stderr go: the log file
// next to the output, else /dev/null. Never the runtime's pipes, which
// would keep the runtime waiting.
func (l *hookLogger) childOutput() io.WriteCloser {
	if f, err := os.OpenFile(filepath.Join(l.outDir, hookLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640); err == nil {
		return f
	}
	if f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		return f
	}
	return nopWriteCloser{io.Discard}
}

func (l *hookLogger) Close() {
	if l.sys != nil {
		l.sys.Close()
	}
	if l.file != nil {
		l.file.Close()
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/hook"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/internal/telemetry"
	"github.com/boxtap/boxtap/internal/tlssource"
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
	OutputDir         string        `name:"output-dir" default:"/var/log/boxtap" help:"Write <container-id>.json here; created (0700) if missing, refused if another user owns it or it is world-writable." placeholder:"DIR"`
	RunDir            string        `name:"run-dir" default:"/run/boxtap" help:"Directory of the tracers' pid files." placeholder:"DIR"`
	Timeout           time.Duration `default:"5s" help:"Give up (and fail open, or closed with --fail-closed) if the tracer has not attached within this time; poststop waits this long for the flush."`
	FailClosed        bool          `name:"fail-closed" help:"Fail the container's start when tracing cannot start (default: log the error and let it start)."`
	RequireAnnotation bool          `name:"require-annotation" help:"Trace only containers that carry the io.boxtap.trace annotation."`
	RingSize          string        `name:"ring-size" default:"2MiB" help:"Kernel ring buffer of each container's tracer: a power of two from 16KiB, e.g. 2MiB." placeholder:"SIZE"`
	RedactHeader      []string      `name:"redact-header" sep:"none" help:"Also redact this header's value (repeatable)." placeholder:"NAME"`
	MemoryBudget      string        `name:"memory-budget" default:"192MiB" help:"Most memory each container's tracer may use; its cgroup gets it as memory.max. Connection state is held to a third of it (see boxtap trace --help)." placeholder:"SIZE"`
	Runtime           string        `name:"runtime" default:"auto" enum:"auto,containerd,docker,cri-o,podman,oci" help:"The runtime that runs this hook, whose annotations alone name the container (auto: from the bundle path and what only each runtime sets; see README)." placeholder:"NAME"`
	MaxSize           byteSize      `name:"max-size" default:"0" help:"Rotate a container's file before it grows past this size, e.g. 50M (0: never)." placeholder:"SIZE"`
	MaxFiles          int           `name:"max-files" default:"5" help:"With --max-size: rotated files kept per container (<id>.json.1 is the newest)." placeholder:"N"`
	Tracer            string        `name:"tracer" default:"host" enum:"host,per-container" help:"host: one host tracer, started by the first hook and ended with the last container, traces them all, so a start costs a hand-over (see README); per-container: each container gets its own tracer process, which loads the eBPF programs at each start."`
	TLS               bool          `name:"tls" help:"Also read HTTPS as plaintext from the OpenSSL (libssl.so) the container's processes map, from their first call (as boxtap trace --tls; the annotation's tls=false turns it off for one container). A container traced with TLS gets a tracer of its own even with --tracer=host."`
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
	if s.Runtime != "" && s.Runtime != hook.RuntimeAuto {
		a = append(a, "--runtime="+s.Runtime)
	}
	if s.MaxSize != 0 {
		a = append(a, "--max-size="+strconv.FormatInt(int64(s.MaxSize), 10), "--max-files="+strconv.Itoa(s.MaxFiles))
	}
	if s.Tracer != "" {
		a = append(a, "--tracer="+s.Tracer)
	}
	if s.FailClosed {
		a = append(a, "--fail-closed")
	}
	if s.TLS {
		a = append(a, "--tls")
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
its process starts. By default (--tracer=host) the first hook starts one host
tracer in a cgroup of its own, which loads the eBPF programs once; every
later hook hands its container over <run-dir>/host.sock and returns on
"attached". The host tracer writes <output-dir>/<container-id>.json
(<namespace>@<id>.json for a containerd namespace other than Docker's) for
each container, through the same hardened sink as "trace --output-dir",
detaches a container when it ends (poststop, or its cgroup empties), and
exits with the last one. With --tracer=per-container each container gets a
tracer process of its own instead, which loads the programs at each start.

The whole hook, from reading stdin on, ends within --timeout; SIGTERM ends it
at once. Errors, bad flags and internal errors go to stderr and to syslog (or
` + hookLogName + ` in the output directory, created 0700 if missing) and,
by default, the hook still exits 0 so that the container starts
(--fail-closed fails the start instead).

The annotation io.boxtap.trace=false turns tracing off for one container;
its value may also carry options, e.g.
io.boxtap.trace=output-dir=web,redact-header=X-Token, where output-dir names
a subdirectory that boxtap creates itself, per Kubernetes namespace, and
filters named like boxtap trace's flags (status=, method=, path=, host=,
min-latency=, direction=; repeat a key for OR), e.g.
io.boxtap.trace=status=5xx,status=404, and tls=true or tls=false (read
HTTPS as plaintext, as --tls, for this container or not). Names and pod come only from the
annotations of the runtime that launched the container (--runtime, or auto:
see README).`
}

// Run is reached through kong only when main did not dispatch to
// hookMain (it always does); it applies the same bounds.
func (c *hookCmd) Run(ctx context.Context) error {
	if code := c.runBounded(ctx, time.Now(), nil, nil, c.run); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

func (c *hookCmd) run(ctx context.Context, lg *hookLogger) error {
	st, err := readStateBounded(ctx, os.Stdin)
	if err != nil {
		return err
	}
	lg.setID(st.ID)
	action, err := hook.ParseStage(c.Stage, st)
	if err != nil {
		return err
	}
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
	info := hook.ContainerInfo(st, b, c.Runtime)
	key, err := output.FileKey(info.Namespace, info.ID)
	if err != nil {
		return err
	}
	runDir := hook.RunDir(c.RunDir)
	if pid, ok := runDir.LiveTracer(key); ok {
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
	tls := tlsArm{on: c.TLS}
	if req.TLS != nil {
		tls.on = *req.TLS
	}
	if tls.on {
		tls.pid, tls.rootfs, tls.exe = st.Pid, b.RootFS(st.Bundle), b.Exe
	}
	perContainer := func() error {
		return c.spawnTracer(ctx, mount, dir, key, req.OutputDir, info, req.RedactHeaders, req.Filter, tls, lg)
	}
	if c.Tracer == tracerHost && !tls.on {
		tc, err := c.tracerRequest(dir, key, req.OutputDir, info, req.RedactHeaders, req.Filter)
		if err != nil {
			return err
		}
		return c.startShared(ctx, mount, tc, lg, perContainer)
	}
	if c.Tracer == tracerHost {
		lg.Infof("TLS capture: the host tracer does not read TLS; %s gets a tracer of its own", key)
	}
	return perContainer()
}

// Values of --tracer.
const (
	tracerPerContainer = "per-container"
	tracerHost         = "host"
)

// tracerRequest is what a per-container tracer would be started with, as
// the host tracer receives it.
func (c *hookCmd) tracerRequest(cgroupDir, key, subdir string, info container.Info, redact []string, filter output.FilterSpec) (*hookTracerCmd, error) {
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encoding container info: %w", err)
	}
	tc := &hookTracerCmd{
		ID: key, CgroupDir: cgroupDir, OutputDir: c.OutputDir, RunDir: c.RunDir, Info: string(infoJSON),
		RingSize: c.RingSize, MaxSize: int64(c.MaxSize), MaxFiles: c.MaxFiles, MemoryBudget: c.MemoryBudget,
		RedactHeader: append(append([]string{}, c.RedactHeader...), redact...),
		hookFilterFlags: hookFilterFlags{Status: filter.Status, Method: filter.Method, Path: filter.Path,
			Host: filter.Host, MinLatency: filter.MinLatency, Direction: filter.Direction},
		hookOTLPFlags: c.hookOTLPFlags,
	}
	if subdir != "" {
		tc.OutputSubdir, tc.Tenant = subdir, hook.Tenant(info)
	}
	return tc, nil
}

// tlsArm is how a container's tracer reads TLS: not at all, or from the
// first SSL call of the container's process pid (the runtime's init, which
// has not exec'd the container's program yet), whose root file system is
// rootfs (the bundle's root.path).
type tlsArm struct {
	on     bool
	pid    int
	rootfs string
	exe    string // the program it will exec (process.args[0])
}

func (a tlsArm) args() []string {
	if !a.on {
		return nil
	}
	return []string{"--tls", "--tls-pid=" + strconv.Itoa(a.pid), "--tls-rootfs=" + a.rootfs, "--tls-exe=" + a.exe}
}

// spawnTracer starts "boxtap hook-tracer" detached: its own session, its
// own cgroup, stdio on the hook log or /dev/null, and a readiness pipe on
// fd 3 that it writes "attached" (or why not) to.
func (c *hookCmd) spawnTracer(ctx context.Context, mount, cgroupDir, key, subdir string, info container.Info, redact []string, filter output.FilterSpec, tls tlsArm, lg *hookLogger) error {
	own, err := hook.NewTracerCgroup(mount, key)
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
		"--id=" + key,
		"--cgroup-dir=" + cgroupDir,
		"--own-cgroup=" + own.Dir,
		"--output-dir=" + c.OutputDir,
		"--run-dir=" + c.RunDir,
		"--info=" + string(infoJSON),
		"--ring-size=" + c.RingSize,
		"--memory-budget=" + c.MemoryBudget,
		"--max-size=" + strconv.FormatInt(int64(c.MaxSize), 10),
		"--max-files=" + strconv.Itoa(c.MaxFiles),
	}
	if subdir != "" {
		args = append(args, "--output-subdir="+subdir, "--tenant="+hook.Tenant(info))
	}
	for _, h := range append(append([]string{}, c.RedactHeader...), redact...) {
		args = append(args, "--redact-header="+h)
	}
	args = append(args, filter.Args()...)
	args = append(args, tls.args()...)
	args = append(args, c.hookOTLPFlags.args()...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("creating the readiness pipe: %w", err)
	}
	defer pr.Close()
	stdio := lg.childOutput()
	defer stdio.Close()
	cmd := detachedCommand(args, stdio, pw, own.FD())
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
	where := c.OutputDir
	if subdir != "" {
		where = filepath.Join(where, subdir)
	}
	lg.Infof("tracing %s (cgroup %s) into %s, tracer pid %d", key, display.Quote(cgroupDir), display.Quote(filepath.Join(where, key+".json")), cmd.Process.Pid)
	return cmd.Process.Release()
}

// detachedCommand is boxtap itself in a session and cgroup of its own,
// stdio on the hook log or /dev/null, and a readiness pipe on fd 3.
func detachedCommand(args []string, stdio io.Writer, ready *os.File, cgroupFD int) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdio, stdio
	cmd.ExtraFiles = []*os.File{ready}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: cgroupFD}
	return cmd
}

// stop signals the container's tracer and waits until it has flushed and
// exited.
func (c *hookCmd) stop(ctx context.Context, st *specs.State, lg *hookLogger) error {
	b, _ := hook.ReadBundle(st.Bundle)
	_, ns := hook.DetectRuntime(st.Bundle, b.Annotations, c.Runtime)
	key, err := output.FileKey(ns, st.ID)
	if err != nil {
		return err
	}
	if _, err := c.stopShared(ctx, key, lg); err != nil {
		return err
	}
	runDir := hook.RunDir(c.RunDir)
	pid, ok := runDir.LiveTracer(key)
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
	if mount, err := cgroup.Mount(); err == nil && hook.ValidID(key) == nil {
		_ = hook.RemoveCgroupDir(filepath.Join(mount, "boxtap", key), 0)
		if dir := hook.MemoryV1Dir(key); dir != "" {
			_ = hook.RemoveCgroupDir(dir, 0)
		}
	}
	return nil
}

// hookTracerCmd is the detached per-container tracer.
type hookTracerCmd struct {
	ID           string   `name:"id" required:"" help:"The container's file key (output.FileKey): its run-dir and cgroup name."`
	CgroupDir    string   `name:"cgroup-dir" required:""`
	OwnCgroup    string   `name:"own-cgroup"`
	OutputDir    string   `name:"output-dir" required:""`
	OutputSubdir string   `name:"output-subdir"`
	Tenant       string   `name:"tenant"`
	RunDir       string   `name:"run-dir" required:""`
	Info         string   `name:"info"`
	RingSize     string   `name:"ring-size" default:"2MiB"`
	MaxSize      int64    `name:"max-size"`
	MaxFiles     int      `name:"max-files"`
	RedactHeader []string `name:"redact-header" sep:"none"`
	hookFilterFlags
	MemoryBudget string `name:"memory-budget" default:"192MiB"`
	TLS          bool   `name:"tls"`
	TLSPid       int    `name:"tls-pid"`
	TLSRootfs    string `name:"tls-rootfs"`
	TLSExe       string `name:"tls-exe"`
	hookOTLPFlags
}

// leaveTracerCgroups moves a tracer out of the cgroups it ran in (own, and
// the v1 memory cgroup named v1Name) so that they can be removed; errors go
// to stderr behind who.
func leaveTracerCgroups(own, v1Name, who string) {
	if own == "" {
		return
	}
	if err := hook.LeaveCgroup(own); err != nil {
		fmt.Fprintln(os.Stderr, who, err)
	}
	if err := hook.LeaveMemoryV1(v1Name); err != nil {
		fmt.Fprintln(os.Stderr, who, err)
	}
}

func (c *hookTracerCmd) Run(ctx context.Context) error {
	ready := os.NewFile(3, "readiness pipe")
	if ready == nil {
		return errors.New("hook-tracer is started by boxtap hook, with a readiness pipe on fd 3")
	}
	defer leaveTracerCgroups(c.OwnCgroup, c.ID, "boxtap tracer:")
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
	dir    *output.Dir
	sink   *output.FileSink
	runDir hook.RunDir
	spans  *telemetry.Spans  // nil without --otlp-endpoint
	tls    *tlssource.Source // nil without --tls
}

func (c *hookTracerCmd) setup() (t *hookTracer, err error) {
	var info container.Info
	if c.Info != "" {
		if err := json.Unmarshal([]byte(c.Info), &info); err != nil {
			return nil, fmt.Errorf("decoding --info: %w", err)
		}
	}
	if info.ID == "" {
		info.ID = c.ID
	}
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
	filter, err := c.hookFilterFlags.filter()
	if err != nil {
		return nil, err
	}
	coll, err := bpf.Load(bpf.Options{RingBytes: ring, KeepStatus: filter.StatusFilter()})
	if err != nil {
		return nil, err
	}
	t = &hookTracer{id: c.ID, coll: coll, runDir: hook.RunDir(c.RunDir)}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if t.dir, t.sink, err = c.openSink(info); err != nil {
		return t, err
	}
	opts := tracer.Options{Filter: filter, StateBudget: applyMemoryBudget(budget)}
	if t.spans, err = c.hookOTLPFlags.spans(context.Background()); err != nil {
		return t, err
	}
	if t.spans != nil {
		opts.Observer = t.spans
	}
	if c.TLS {
		if t.tls, err = openHookTLS(c.ID); err != nil {
			return t, err
		}
		opts.TLS = t.tls
	}
	t.tr = tracer.New(coll, opts)
	t.tg, err = t.tr.Add(info, c.CgroupDir, cgID, t.sink)
	if err != nil {
		return t, err
	}
	if t.tls != nil {
		c.armTLS(t.tls, cgID)
	}
	if err := t.runDir.WritePID(c.ID, os.Getpid()); err != nil {
		return t, err
	}
	return t, nil
}

// openSink opens the container's file through the same hardened sink as
// "trace --output-dir": the output directory (created 0700, owner
// checked), the annotation's subdirectory (made by boxtap for the tenant),
// KEY.json (0600, never through a symlink) and the by-name link.
func (c *hookTracerCmd) openSink(info container.Info) (*output.Dir, *output.FileSink, error) {
	opts := output.DirOptions{MaxSize: c.MaxSize, MaxFiles: c.MaxFiles, Redactor: output.NewRedactor(c.RedactHeader, false)}
	dir, err := output.OpenDir(c.OutputDir, opts)
	if err != nil {
		return nil, nil, err
	}
	if c.OutputSubdir != "" {
		sub, err := dir.Sub(c.OutputSubdir, c.Tenant)
		dir.Close()
		if err != nil {
			return nil, nil, err
		}
		dir = sub
	}
	sink, err := dir.SinkFor(output.Owner{Namespace: info.Namespace, ID: info.ID, Name: info.Name, PodNamespace: info.Pod.Namespace, PodName: info.Pod.Name})
	if err == nil {
		err = sink.Open()
	}
	if err != nil {
		dir.Close()
		return nil, nil, err
	}
	return dir, sink, nil
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
	if t.dir != nil {
		if err := t.dir.Close(); err != nil { // flushes and closes the sink
			fmt.Fprintf(os.Stderr, "boxtap tracer %s: writing output: %v\n", t.id, err)
		}
	}
	closeHookSpans(t.id, t.spans)
	if t.tls != nil {
		if err := t.tls.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "boxtap tracer %s: releasing the TLS probes: %v\n", t.id, err)
		}
	}
	t.runDir.RemovePID(t.id, os.Getpid())
	if err := t.coll.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "boxtap tracer %s: releasing eBPF objects: %v\n", t.id, err)
	}
}

// openHookTLS loads the TLS programs for a container's tracer and starts
// instrumenting the processes its container starts later (Watch, until
// the source is closed); what cannot be instrumented is logged.
func openHookTLS(id string) (*tlssource.Source, error) {
	src, err := tlssource.Open()
	if err != nil {
		return nil, fmt.Errorf("--tls: %w", err)
	}
	go src.Watch(func(err error) { fmt.Fprintf(os.Stderr, "boxtap tracer %s: warning: TLS capture: %v\n", id, err) })
	return src, nil
}

// armTLS instruments the container's process for the OpenSSL libraries of
// its root file system before it execs its program, so that its first SSL
// call is read. The root is seen through the process's own mount
// namespace: the hook runs before the runtime pivots into the root, when
// the bundle's mounts are already in place under it. A failure is logged:
// the container is traced anyway, and later processes are instrumented
// when they map libssl.
func (c *hookTracerCmd) armTLS(src *tlssource.Source, cgID uint64) {
	if c.TLSPid <= 0 {
		return
	}
	root := fmt.Sprintf("/proc/%d/root", c.TLSPid)
	if c.TLSRootfs != "" {
		if fi, err := os.Stat(root + c.TLSRootfs); err == nil && fi.IsDir() {
			root += c.TLSRootfs
		}
	}
	n, err := src.Arm(c.TLSPid, cgID, root, c.TLSExe)
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxtap tracer %s: warning: TLS capture of process %d incomplete: %v\n", c.ID, c.TLSPid, err)
	}
	if n == 0 && err == nil {
		fmt.Fprintf(os.Stderr, "boxtap tracer %s: note: no libssl.so in the container's library directories; processes that map one later are instrumented then\n", c.ID)
	}
}

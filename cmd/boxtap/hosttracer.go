package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/hook"
	"github.com/boxtap/boxtap/internal/telemetry"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/cgroup"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/tracer"
	"golang.org/x/sys/unix"
)

// The host tracer (--tracer=host) is one process per host that traces
// every hooked container: the first hook starts it, later hooks hand it
// their container over a unix socket in the run directory, and it exits
// when it traces no container. It loads the eBPF collection once, so a
// start costs a connection instead of a load and verification.
const (
	hostSubcommand = "hook-host"
	hostSocketName = "host.sock"
	hostLockName   = "host.lock"
	hostStateDir   = "host" // <run-dir>/host/<key>.json: what it traces
	hostProto      = 1
	hostBusy       = "busy: another host tracer is starting"
)

// hostHello is the first line the host tracer writes on each connection.
// A hook talks to it only when Build is its own: a different binary
// (an upgrade) gets a per-container tracer instead.
type hostHello struct {
	Proto int    `json:"proto"`
	Build string `json:"build"`
	PID   int    `json:"pid"`
}

// hostRequest is one line from a hook: "add" a container (Tracer holds
// exactly what a per-container tracer would be started with), or
// "remove" one by key.
type hostRequest struct {
	Op     string         `json:"op"`
	Key    string         `json:"key"`
	Tracer *hookTracerCmd `json:"tracer,omitempty"`
}

type hostReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Closing is set when the host tracer is exiting: the hook starts a
	// new one.
	Closing bool `json:"closing,omitempty"`
}

// buildID names this binary: its file's device, inode, size and mtime.
// /proc/self/exe still names the original file after an upgrade replaced
// it, so a host tracer keeps its identity and a new hook sees another.
func buildID() string {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%s:%d:%d:%d:%d.%d", version, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// errNoHost means no host tracer answered (none runs, or it is exiting).
var errNoHost = errors.New("no host tracer")

// errHostBuild means the host tracer is another boxtap binary.
type errHostBuild struct{ theirs, ours string }

func (e errHostBuild) Error() string {
	return fmt.Sprintf("the host tracer is another boxtap build (%s, this hook is %s)", e.theirs, e.ours)
}

// askHost sends one request to the host tracer and returns its reply.
// anyBuild lets a "remove" reach a host tracer of another build.
func askHost(ctx context.Context, runDir string, req hostRequest, anyBuild bool) (hostReply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(runDir, hostSocketName))
	if err != nil {
		if ctx.Err() != nil {
			return hostReply{}, err
		}
		return hostReply{}, fmt.Errorf("%w: %v", errNoHost, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	rd := bufio.NewReader(conn)
	var hello hostHello
	if err := readJSONLine(rd, &hello); err != nil {
		if ctx.Err() == nil {
			return hostReply{}, fmt.Errorf("%w: reading its hello: %v", errNoHost, err)
		}
		return hostReply{}, fmt.Errorf("reading the host tracer's hello: %w", err)
	}
	if hello.Proto != hostProto {
		return hostReply{}, errHostBuild{theirs: fmt.Sprintf("protocol %d", hello.Proto), ours: fmt.Sprintf("protocol %d", hostProto)}
	}
	if ours := buildID(); hello.Build != ours && !anyBuild {
		return hostReply{}, errHostBuild{theirs: hello.Build, ours: ours}
	}
	line, err := json.Marshal(req)
	if err != nil {
		return hostReply{}, err
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return hostReply{}, fmt.Errorf("%w: sending the request: %v", errNoHost, err)
	}
	var rep hostReply
	if err := readJSONLine(rd, &rep); err != nil {
		return hostReply{}, fmt.Errorf("reading the host tracer's reply (process %d): %w", hello.PID, err)
	}
	if rep.Closing {
		return rep, fmt.Errorf("%w: it is exiting", errNoHost)
	}
	return rep, nil
}

func readJSONLine(rd *bufio.Reader, v any) error {
	line, err := rd.ReadSlice('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// startShared hands the container to the host tracer, starting one when
// none answers. A host tracer of another build (an upgrade while
// containers are traced) makes this start use a per-container tracer.
func (c *hookCmd) startShared(ctx context.Context, mount string, tc *hookTracerCmd, lg *hookLogger, perContainer func() error) error {
	req := hostRequest{Op: "add", Key: tc.ID, Tracer: tc}
	for attempt := 0; ; attempt++ {
		rep, err := askHost(ctx, c.RunDir, req, false)
		var other errHostBuild
		switch {
		case err == nil && rep.OK:
			lg.Infof("tracing %s through the host tracer (hook took %s)", tc.ID, time.Since(lg.born).Round(time.Microsecond))
			return nil
		case err == nil:
			return fmt.Errorf("the host tracer could not trace the container: %s", rep.Error)
		case errors.As(err, &other):
			lg.Infof("%v: using a per-container tracer", err)
			return perContainer()
		case !errors.Is(err, errNoHost) || attempt >= maxHostAttempts:
			return err
		}
		// Another hook's host tracer holds the lock while it starts (or the
		// last one while it releases its containers): wait for its socket
		// rather than exec'ing a host tracer that would only find it busy.
		busy := hostLockHeld(c.RunDir)
		if !busy {
			if busy, err = c.spawnHost(ctx, mount, lg); err != nil {
				return err
			}
		}
		if busy {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(min(time.Duration(attempt+1)*5*time.Millisecond, 50*time.Millisecond)):
			}
		}
	}
}

// maxHostAttempts bounds startShared's tries; --timeout bounds their time.
const maxHostAttempts = 400

// hostLockHeld reports whether a host tracer holds runDir's lock now.
func hostLockHeld(runDir string) bool {
	f, err := os.OpenFile(filepath.Join(runDir, hostLockName), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false // no host tracer ever ran here, or we cannot tell: try to start one
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// spawnHost starts "boxtap hook-host" detached, in a cgroup of its own
// with the memory budget, and waits until it listens. busy reports that
// another host tracer held the lock.
func (c *hookCmd) spawnHost(ctx context.Context, mount string, lg *hookLogger) (busy bool, err error) {
	name := fmt.Sprintf("host-%d-%d", os.Getpid(), time.Now().UnixNano())
	own, err := hook.NewTracerCgroup(mount, name)
	if err != nil {
		return false, err
	}
	defer own.Close()
	budget, err := parseMemoryBudget(c.MemoryBudget)
	if err != nil {
		return false, err
	}
	if err := own.LimitMemory(budget); err != nil {
		own.Kill()
		return false, err
	}
	args := []string{
		hostSubcommand,
		"--cgroup-name=" + name,
		"--own-cgroup=" + own.Dir,
		"--run-dir=" + c.RunDir,
		"--ring-size=" + c.RingSize,
		"--memory-budget=" + c.MemoryBudget,
		"--idle=" + c.Timeout.String(),
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return false, fmt.Errorf("creating the readiness pipe: %w", err)
	}
	defer pr.Close()
	stdio := lg.childOutput()
	defer stdio.Close()
	cmd := detachedCommand(args, stdio, pw, own.FD())
	if err := cmd.Start(); err != nil {
		pw.Close()
		own.Kill()
		return false, fmt.Errorf("starting the host tracer: %w", err)
	}
	pw.Close()
	if err := own.JoinMemoryV1(cmd.Process.Pid); err != nil {
		own.Kill()
		_ = cmd.Wait()
		return false, err
	}
	if err := hook.WaitReady(ctx, pr); err != nil {
		own.Kill()
		_ = cmd.Wait()
		if strings.HasPrefix(err.Error(), hostBusy) {
			return true, nil
		}
		return false, fmt.Errorf("host tracer: %w", err)
	}
	lg.Infof("started the host tracer, pid %d", cmd.Process.Pid)
	return false, cmd.Process.Release()
}

// stopShared asks the host tracer to stop tracing key, if it traces it.
// It reports whether the host tracer knew the container.
func (c *hookCmd) stopShared(ctx context.Context, key string, lg *hookLogger) (bool, error) {
	state := filepath.Join(c.RunDir, hostStateDir, key+".json")
	if _, err := os.Stat(state); err != nil {
		return false, nil
	}
	rep, err := askHost(ctx, c.RunDir, hostRequest{Op: "remove", Key: key}, true)
	switch {
	case errors.Is(err, errNoHost):
		// It crashed and no hook restarted it since: say so in the file,
		// and forget the container so that no later host tracer resumes it.
		noteCrashOnStop(state)
		_ = os.Remove(state)
		lg.Errorf("the host tracer that traced %s had ended; its file says since when events are missing", key)
		return true, nil
	case err != nil:
		return true, err
	case !rep.OK:
		return true, fmt.Errorf("the host tracer could not stop tracing: %s", rep.Error)
	}
	lg.Infof("the host tracer finished %s", key)
	return true, nil
}

// noteCrashOnStop writes the crash notice into the file of a container
// whose host tracer died and was not replaced before the container ended.
func noteCrashOnStop(state string) {
	var tc hookTracerCmd
	data, err := os.ReadFile(state)
	if err == nil {
		err = json.Unmarshal(data, &tc)
	}
	if err != nil {
		return
	}
	info, _ := tc.info()
	if dir, sink, err := tc.openSink(info); err == nil {
		_ = sink.WriteNotice(time.Now(), "the host tracer ended unexpectedly; responses from then until the container stopped are missing")
		_ = dir.Close()
	}
}

// hookHostCmd is the host tracer.
type hookHostCmd struct {
	CgroupName   string        `name:"cgroup-name" required:""`
	OwnCgroup    string        `name:"own-cgroup"`
	RunDir       string        `name:"run-dir" required:""`
	RingSize     string        `name:"ring-size" default:"2MiB"`
	MemoryBudget string        `name:"memory-budget" default:"192MiB"`
	Idle         time.Duration `name:"idle" default:"5s" help:"Exit if no container was handed over within this time of starting."`
}

func (c *hookHostCmd) Run(ctx context.Context) error {
	ready := os.NewFile(3, "readiness pipe")
	defer leaveTracerCgroups(c.OwnCgroup, c.CgroupName, "boxtap host tracer:")
	h, err := c.setup()
	if err != nil {
		_ = hook.SignalReady(ready, err)
		return err
	}
	defer h.close()
	if err := hook.SignalReady(ready, nil); err != nil {
		return fmt.Errorf("reporting readiness: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return h.serve(ctx, c.Idle)
}

// hostTracer is the running host tracer's state.
type hostTracer struct {
	runDir string
	lock   *os.File
	ln     *net.UnixListener
	coll   *bpf.Collection
	tr     *tracer.Tracer

	mu      sync.Mutex
	targets map[string]*hostTarget
	closing bool
	done    chan struct{} // closed when the last container is removed
	wg      sync.WaitGroup
}

type hostTarget struct {
	tg     *tracer.Target
	dir    *output.Dir
	sink   *output.FileSink
	spans  *telemetry.Spans // nil without --otlp-endpoint
	cancel context.CancelFunc
}

func (c *hookHostCmd) setup() (h *hostTracer, err error) {
	if err := os.MkdirAll(filepath.Join(c.RunDir, hostStateDir), 0o700); err != nil {
		return nil, fmt.Errorf("creating the run directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(c.RunDir, hostLockName), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the host tracer's lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errors.New(hostBusy)
		}
		return nil, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	h = &hostTracer{runDir: c.RunDir, lock: lock, targets: map[string]*hostTarget{}, done: make(chan struct{})}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	ring, err := parseRingSize(c.RingSize)
	if err != nil {
		return h, err
	}
	budget, err := parseMemoryBudget(c.MemoryBudget)
	if err != nil {
		return h, err
	}
	if h.coll, err = bpf.Load(bpf.Options{RingBytes: ring}); err != nil {
		return h, err
	}
	h.tr = tracer.New(h.coll, tracer.Options{StateBudget: applyMemoryBudget(budget)})
	removeStaleHostCgroups(filepath.Dir(c.OwnCgroup), c.CgroupName)
	h.recover()
	sock := filepath.Join(c.RunDir, hostSocketName)
	_ = os.Remove(sock) // we hold the lock: a socket there is a dead tracer's
	h.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return h, fmt.Errorf("listening on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		return h, err
	}
	return h, nil
}

// removeStaleHostCgroups removes the cgroups of host tracers that were
// killed: empty ones (a live tracer's is not) whose hook, named in them as
// host-<pid>-..., has ended too (a hook that is starting a host tracer
// makes the cgroup before the process).
func removeStaleHostCgroups(parent, ours string) {
	if parent == "" || parent == "." {
		return
	}
	matches, _ := filepath.Glob(filepath.Join(parent, "host-*"))
	for _, m := range matches {
		name := filepath.Base(m)
		if name == ours {
			continue
		}
		pidText, _, _ := strings.Cut(strings.TrimPrefix(name, "host-"), "-")
		if pid, err := strconv.Atoi(pidText); err == nil && unix.Kill(pid, 0) == nil {
			continue
		}
		_ = os.Remove(m)
	}
}

// recover finds the containers a previous host tracer traced when it died
// (their state files remain), writes a notice into each one's file, and
// resumes tracing those still running.
func (h *hostTracer) recover() {
	dir := filepath.Join(h.runDir, hostStateDir)
	entries, _ := os.ReadDir(dir)
	for _, en := range entries {
		key, ok := strings.CutSuffix(en.Name(), ".json")
		if !ok || hook.ValidID(key) != nil {
			continue
		}
		path := filepath.Join(dir, en.Name())
		var tc hookTracerCmd
		data, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(data, &tc)
		}
		if err != nil || tc.ID != key {
			fmt.Fprintf(os.Stderr, "boxtap host tracer: dropping unreadable state %s: %v\n", path, err)
			_ = os.Remove(path)
			continue
		}
		h.resume(&tc, path)
	}
}

func (h *hostTracer) resume(tc *hookTracerCmd, path string) {
	const lost = "the host tracer ended unexpectedly; responses from then until now are missing"
	t, err := h.add(tc, lost+"; tracing resumed")
	if err == nil {
		h.targets[tc.ID] = t
		fmt.Fprintf(os.Stderr, "boxtap host tracer: resumed %s after a crash\n", tc.ID)
		return
	}
	// The container has ended (or cannot be traced): say so in its file.
	_ = os.Remove(path)
	info, _ := tc.info()
	if dir, sink, oerr := tc.openSink(info); oerr == nil {
		_ = sink.WriteNotice(time.Now(), fmt.Sprintf("%s; tracing not resumed: %v", lost, err))
		_ = dir.Close()
	}
	fmt.Fprintf(os.Stderr, "boxtap host tracer: %s not resumed after a crash: %v\n", tc.ID, err)
}

func (tc *hookTracerCmd) info() (container.Info, error) {
	var info container.Info
	if tc.Info != "" {
		if err := json.Unmarshal([]byte(tc.Info), &info); err != nil {
			return info, fmt.Errorf("decoding --info: %w", err)
		}
	}
	if info.ID == "" {
		info.ID = tc.ID
	}
	return info, nil
}

// add opens the container's file (the per-container tracer's hardened
// sink, redaction and filters) and attaches to its cgroup. notice, when
// set, is written first.
func (h *hostTracer) add(tc *hookTracerCmd, notice string) (t *hostTarget, err error) {
	info, err := tc.info()
	if err != nil {
		return nil, err
	}
	cgID, err := cgroup.ID(tc.CgroupDir)
	if err != nil {
		return nil, err
	}
	filter, err := tc.hookFilterFlags.filter()
	if err != nil {
		return nil, err
	}
	t = &hostTarget{}
	if t.dir, t.sink, err = tc.openSink(info); err != nil {
		return nil, err
	}
	if notice != "" {
		_ = t.sink.WriteNotice(time.Now(), notice)
	}
	sink := hostSink{FileSink: t.sink}
	if filter.Active() {
		sink.filter = filter
	}
	if t.spans, err = tc.hookOTLPFlags.spans(context.Background()); err != nil {
		t.dir.Close()
		return nil, err
	}
	sink.spans = t.spans
	if t.tg, err = h.tr.Add(info, tc.CgroupDir, cgID, sink); err != nil {
		t.dir.Close()
		closeHookSpans(tc.ID, t.spans)
		return nil, err
	}
	return t, nil
}

// hostSink is one container's sink in the host tracer, whose Tracer serves
// containers with different settings: the container's own filter (its
// annotation's) first, then its spans (its hook's --otlp-endpoint), then its
// file. The file sink's other methods (Dropped, Close) are its own.
type hostSink struct {
	*output.FileSink
	filter *output.Filter   // nil: none
	spans  *telemetry.Spans // nil: no spans
}

func (s hostSink) Write(e *output.Event) error {
	if s.filter != nil && !s.filter.Match(e) {
		return nil
	}
	if s.spans != nil {
		s.spans.Observe(e) // a copy, queued: never waits for the span
	}
	return s.FileSink.Write(e)
}

// serve runs the tracer and answers hooks until the last container is
// removed, SIGTERM, or no container came within idle of starting.
func (h *hostTracer) serve(ctx context.Context, idle time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- h.tr.Run(ctx) }()
	h.mu.Lock()
	for key, t := range h.targets {
		h.watch(ctx, key, t)
	}
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.accept(ctx)
	}()
	idleTimer := time.NewTimer(idle)
	defer idleTimer.Stop()
	for {
		select {
		case <-ctx.Done():
		case <-h.done:
		case <-idleTimer.C:
			h.mu.Lock()
			empty := len(h.targets) == 0
			if empty {
				h.closing = true
			}
			h.mu.Unlock()
			if !empty {
				continue
			}
		case err := <-runErr:
			h.shutdown()
			return err
		}
		break
	}
	h.shutdown()
	h.removeAll()
	// Nothing is traced or recorded any more: the next hook may start a new
	// host tracer while this one unloads.
	h.unlock()
	cancel()
	return <-runErr
}

// unlock releases the host tracer's lock.
func (h *hostTracer) unlock() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lock != nil {
		h.lock.Close()
		h.lock = nil
	}
}

// shutdown stops accepting: a hook that comes now starts a new host tracer.
func (h *hostTracer) shutdown() {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	_ = h.ln.Close() // also removes the socket file
}

func (h *hostTracer) accept(ctx context.Context) {
	for {
		conn, err := h.ln.AcceptUnix()
		if err != nil {
			return
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer conn.Close()
			h.handle(ctx, conn)
		}()
	}
}

// handle answers one hook: hello, one request, one reply, all within a
// bound so that a stuck hook holds nothing.
func (h *hostTracer) handle(ctx context.Context, conn *net.UnixConn) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	hello, _ := json.Marshal(hostHello{Proto: hostProto, Build: buildID(), PID: os.Getpid()})
	if _, err := conn.Write(append(hello, '\n')); err != nil {
		return
	}
	var req hostRequest
	if err := readJSONLine(bufio.NewReaderSize(conn, 64<<10), &req); err != nil {
		return
	}
	rep := h.do(ctx, &req)
	line, _ := json.Marshal(rep)
	_, _ = conn.Write(append(line, '\n'))
}

func (h *hostTracer) do(ctx context.Context, req *hostRequest) hostReply {
	if err := hook.ValidID(req.Key); err != nil {
		return hostReply{Error: err.Error()}
	}
	switch req.Op {
	case "add":
		if req.Tracer == nil || req.Tracer.ID != req.Key {
			return hostReply{Error: "add without a matching tracer request"}
		}
		return h.addRequest(ctx, req.Tracer)
	case "remove":
		if err := h.remove(req.Key); err != nil {
			return hostReply{Error: err.Error()}
		}
		return hostReply{OK: true}
	}
	return hostReply{Error: fmt.Sprintf("unknown request %q", req.Op)}
}

func (h *hostTracer) addRequest(ctx context.Context, tc *hookTracerCmd) hostReply {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return hostReply{Closing: true}
	}
	if _, dup := h.targets[tc.ID]; dup {
		return hostReply{OK: true}
	}
	state, err := json.Marshal(tc)
	if err != nil {
		return hostReply{Error: err.Error()}
	}
	// The state file first: if this process dies after attaching, the
	// next host tracer finds the container.
	path := filepath.Join(h.runDir, hostStateDir, tc.ID+".json")
	if err := os.WriteFile(path, state, 0o600); err != nil {
		return hostReply{Error: fmt.Sprintf("recording the container: %v", err)}
	}
	t, err := h.add(tc, "")
	if err != nil {
		_ = os.Remove(path)
		return hostReply{Error: err.Error()}
	}
	h.targets[tc.ID] = t
	h.watch(ctx, tc.ID, t)
	return hostReply{OK: true}
}

// watch removes the container when its cgroup empties (a container that
// ends without a poststop hook). Called with h.mu held.
func (h *hostTracer) watch(ctx context.Context, key string, t *hostTarget) {
	wctx, cancel := context.WithCancel(ctx)
	t.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := cgroup.WaitEmptyID(wctx, t.tg.CgroupDir, t.tg.CgroupID()); err != nil {
			return
		}
		if err := h.remove(key); err != nil {
			fmt.Fprintf(os.Stderr, "boxtap host tracer %s: %v\n", key, err)
		}
	}()
}

// remove detaches a container, flushes its file and forgets it; the last
// one ends the host tracer.
func (h *hostTracer) remove(key string) error {
	h.mu.Lock()
	t, ok := h.targets[key]
	if ok {
		delete(h.targets, key)
	}
	last := len(h.targets) == 0
	if ok && last {
		h.closing = true // no new container while this one drains
	}
	h.mu.Unlock()
	if !ok {
		_ = os.Remove(filepath.Join(h.runDir, hostStateDir, key+".json"))
		return nil
	}
	err := h.release(key, t)
	if last {
		close(h.done)
	}
	return err
}

func (h *hostTracer) release(key string, t *hostTarget) error {
	if t.cancel != nil {
		t.cancel()
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	err := h.tr.Remove(rctx, t.tg)
	if cerr := t.dir.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("writing output: %w", cerr))
	}
	closeHookSpans(key, t.spans)
	_ = os.Remove(filepath.Join(h.runDir, hostStateDir, key+".json"))
	return err
}

// removeAll releases every container left (on SIGTERM).
func (h *hostTracer) removeAll() {
	h.mu.Lock()
	left := h.targets
	h.targets = map[string]*hostTarget{}
	h.mu.Unlock()
	for key, t := range left {
		if err := h.release(key, t); err != nil {
			fmt.Fprintf(os.Stderr, "boxtap host tracer %s: %v\n", key, err)
		}
	}
}

func (h *hostTracer) close() {
	if h.ln != nil {
		_ = h.ln.Close()
	}
	h.wg.Wait()
	h.removeAll()
	if h.coll != nil {
		if err := h.coll.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "boxtap host tracer: releasing eBPF objects: %v\n", err)
		}
	}
	h.unlock()
}

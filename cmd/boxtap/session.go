package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/internal/telemetry"
	"github.com/boxtap/boxtap/internal/tlssource"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/cgroup"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/tracer"
)

// captureFlags are shared by every command that traces.
type captureFlags struct {
	Count        uint64        `help:"Exit after writing N events (0: no limit)." placeholder:"N"`
	Duration     time.Duration `help:"Exit after this long (0: no limit), e.g. 30s or 5m." placeholder:"D"`
	RedactHeader []string      `name:"redact-header" help:"Also redact the value of this header (repeatable). Cookies, credentials, headers named like *token*, *secret* or *api-key*, and URL parameters are always redacted unless --no-redact (see README)." placeholder:"NAME"`
	Pretty       bool          `help:"Same as --format pretty: indented JSON."`
	NoRedact     bool          `name:"no-redact" help:"Print secret header values as they are (a warning is printed)."`
	RingSize     string        `name:"ring-size" default:"4MiB" help:"Kernel ring buffer size: a power of two from 16KiB, e.g. 4MiB, 64KiB." placeholder:"SIZE"`
	MaxHeader    int           `name:"max-header-bytes" default:"16384" help:"Header blocks longer than this are cut; the event then has the arg truncated=true."`
	TLS          bool          `name:"tls" help:"Also read HTTPS as plaintext from the OpenSSL (libssl.so, or linked statically into the executable) or Go crypto/tls the traced processes use, through uprobes; events carry tls=true. Processes with TLS boxtap cannot read are named on stderr (amd64; see README)."`
	viewFlags
	telemetryFlags
	MemoryBudget string `name:"memory-budget" default:"192MiB" help:"Most memory boxtap may use, e.g. 192MiB or 1GiB. Connection state and buffered bytes are held to a third of it; beyond that the largest (then oldest) state is dropped, counted and reported (arg evicted)." placeholder:"SIZE"`
}

// parseRingSize reads a size such as "8MiB", "64KiB" or "4096".
func parseRingSize(s string) (uint32, error) {
	num, mult := strings.TrimSpace(s), uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"MiB", 1 << 20}, {"M", 1 << 20}, {"KiB", 1 << 10}, {"K", 1 << 10}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 32)
	size := n * mult
	if err != nil || size < bpf.MinRingBytes || size > 1<<30 || size&(size-1) != 0 {
		return 0, fmt.Errorf("--ring-size %q: give a power of two between 16KiB and 1024MiB, e.g. 8MiB", s)
	}
	return uint32(size), nil
}

// session owns one loaded collection and the tracer over it.
type session struct {
	ctx    context.Context
	cancel context.CancelFunc
	coll   *bpf.Collection
	tls    *tlssource.Source // nil without --tls
	tr     *tracer.Tracer
	stderr io.Writer
	mount  string
	// nsRoot is where boxtap's cgroup namespace root lies under mount ("/"
	// on the host), found once; nsRootErr says why it could not be.
	nsRoot    string
	nsRootErr error

	wg      sync.WaitGroup
	mu      sync.Mutex
	live    int
	total   atomic.Uint64
	stopped bool

	// keepAlive keeps the session running when its last container stops
	// (boxtap watch); by default the session ends then.
	keepAlive bool
	// onRemoved, if set, is called after a stopped container was detached.
	onRemoved func(*tracer.Target)
	// unreadable counts processes with TLS boxtap cannot read (session_tls.go).
	unreadable unreadableTLS
	// view holds the summary table, if any (view.go).
	view *viewFlags
	// tel feeds metrics and spans, if asked for (telemetry.go).
	tel *sessionTelemetry
}

// errSessionEnded is returned by add once the session is shutting down.
var errSessionEnded = errors.New("boxtap is shutting down")

func newRedactor(f *captureFlags, stderr io.Writer) *output.Redactor {
	if f.NoRedact {
		fmt.Fprintln(stderr, "boxtap: warning: --no-redact: cookies, credentials and API keys will appear in the output")
	}
	return output.NewRedactor(f.RedactHeader, f.NoRedact)
}

// startSession checks the system, loads the eBPF collection and prepares a
// tracer. The caller must call run.
func startSession(ctx context.Context, f *captureFlags, opts bpf.Options) (*session, error) {
	mount, err := cgroup.Mount()
	if err != nil {
		return nil, err
	}
	ring, err := parseRingSize(f.RingSize)
	if err != nil {
		return nil, err
	}
	if f.MaxHeader <= 0 {
		return nil, fmt.Errorf("--max-header-bytes %d: give a positive number of bytes, e.g. 16384 (the default)", f.MaxHeader)
	}
	opts.RingBytes = ring
	opts.KeepStatus = f.filter.StatusFilter()
	budget, err := parseMemoryBudget(f.MemoryBudget)
	if err != nil {
		return nil, err
	}
	coll, err := bpf.Load(opts)
	if err != nil {
		return nil, err
	}
	s := &session{coll: coll, stderr: os.Stderr, mount: mount, view: &f.viewFlags}
	if f.TLS {
		if s.tls, err = tlssource.Open(); err != nil {
			coll.Close()
			return nil, fmt.Errorf("--tls: %w", err)
		}
		s.tls.OnUnreadable(s.reportUnreadable)
		// Processes started later in a traced container: instrumented
		// when they map their libraries. Ends in closeTLS.
		go s.tls.Watch(func(err error) { fmt.Fprintf(s.stderr, "boxtap: warning: TLS capture: %v\n", err) })
	}
	s.nsRoot, s.nsRootErr = cgroup.NamespaceRoot(mount)
	if err := batchScheduling(); err != nil {
		fmt.Fprintf(s.stderr, "boxtap: note: %v; tracing goes on, but boxtap's wakeups may preempt the traced service\n", err)
	}
	if f.Duration > 0 {
		s.ctx, s.cancel = context.WithTimeout(ctx, f.Duration)
	} else {
		s.ctx, s.cancel = context.WithCancel(ctx)
	}
	s.tel, err = startTelemetry(s.ctx, &f.telemetryFlags, func() []telemetry.ContainerStats { return containerStats(s.tr) })
	if err != nil {
		s.cancel()
		_ = coll.Close()
		return nil, err
	}
	s.tr = tracer.New(coll, tracer.Options{
		Observer:    s.tel.observer(),
		Limits:      httpLimits(f),
		MaxEvents:   f.Count,
		Filter:      f.filter,
		StateBudget: applyMemoryBudget(budget),
		TLS:         s.tls,
		OnEvent: func(*tracer.Target) {
			if n := s.total.Add(1); f.Count > 0 && n >= f.Count {
				s.cancel()
			}
		},
	})
	return s, nil
}

// add resolves a running container's cgroup, attaches to it and watches for
// its end. The container's init PID must be set.
func (s *session) add(info container.Info, sink output.Sink) error {
	rel, err := cgroup.PathOfPID(info.PID)
	if err != nil {
		return fmt.Errorf("finding the cgroup of %s (%s): %w", display.Quote(info.Name), info.ShortID(), err)
	}
	if rel, err = s.resolve(rel); err != nil {
		return fmt.Errorf("finding the cgroup of %s (%s): %w", display.Quote(info.Name), info.ShortID(), err)
	}
	dir, err := cgroup.Dir(s.mount, rel)
	if err != nil {
		return fmt.Errorf("finding the cgroup of %s (%s): %w", display.Quote(info.Name), info.ShortID(), err)
	}
	return s.addCgroup(info, dir, sink)
}

// resolve makes a /proc/PID/cgroup path relative to the mount: in a pod
// with a cgroup namespace of its own, such paths are relative to it.
func (s *session) resolve(rel string) (string, error) {
	if s.nsRootErr != nil {
		if strings.HasPrefix(rel, "/..") {
			return "", s.nsRootErr
		}
		return rel, nil
	}
	return cgroup.Resolve(s.nsRoot, rel)
}

// addCgroup attaches to a cgroup directory.
func (s *session) addCgroup(info container.Info, dir string, sink output.Sink) error {
	id, err := cgroup.ID(dir)
	if err != nil {
		return err
	}
	// Reserve a place in the wait group first, so that run, once it has
	// marked the session stopped, waits for this target or never sees it.
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errSessionEnded
	}
	s.wg.Add(1)
	s.mu.Unlock()
	s.noteCgroup(id, info)
	tg, err := s.tr.Add(info, dir, id, sink)
	if err != nil {
		s.wg.Done()
		return fmt.Errorf("tracing %s (%s): %w", display.Quote(info.Name), info.ShortID(), err)
	}
	s.mu.Lock()
	s.live++
	s.mu.Unlock()
	fmt.Fprintf(s.stderr, "tracing %s (%s)\n", display.Quote(info.Name), info.ShortID())
	go s.watch(tg)
	return nil
}

// watch removes a target once its cgroup has no process left, and ends the
// session when it was the last one.
func (s *session) watch(tg *tracer.Target) {
	defer s.wg.Done()
	if err := cgroup.WaitEmptyID(s.ctx, tg.CgroupDir, tg.CgroupID()); err != nil {
		if s.ctx.Err() == nil {
			fmt.Fprintf(s.stderr, "boxtap: cannot tell when %s (%s) stops: %v; it stays traced until boxtap exits\n",
				display.Quote(tg.Info.Name), tg.Info.ShortID(), err)
		}
		return // run removes the target when the session ends
	}
	removeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.tr.Remove(removeCtx, tg); err != nil {
		fmt.Fprintf(s.stderr, "boxtap: detaching from %s: %v\n", display.Quote(tg.Info.Name), err)
	}
	lost := ""
	if c, err := tg.Counters(); err == nil {
		if c.LostRecords > 0 {
			lost = fmt.Sprintf(", %d lost records", c.LostRecords)
		}
		lost += tracer.StopNote(c)
	}
	if n := tg.Evicted(); n > 0 {
		lost += fmt.Sprintf(", %d evicted (memory budget)", n)
	}
	lost += s.unreadableNote(tg.CgroupID())
	fmt.Fprintf(s.stderr, "container %s (%s) stopped: %d events%s\n", display.Quote(tg.Info.Name), tg.Info.ShortID(), tg.Events(), lost)
	if s.onRemoved != nil {
		s.onRemoved(tg)
	}
	s.mu.Lock()
	s.live--
	last := s.live == 0 && !s.keepAlive
	s.mu.Unlock()
	if last {
		fmt.Fprintln(s.stderr, "no traced container left")
		s.cancel()
	}
}

// run reads events until the session ends (signal, --count, --duration or
// no container left), then detaches everything and prints the summary.
func (s *session) run() error {
	stopSummary := s.summaryPrinter(s.view)
	runErr := s.tr.Run(s.ctx)
	stopSummary()
	s.cancel()
	s.markStopped()
	s.wg.Wait()
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	removeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tg := range s.tr.Targets() {
		if err := s.tr.Remove(removeCtx, tg); err != nil {
			errs = append(errs, fmt.Errorf("detaching from %s: %w", display.Quote(tg.Info.Name), err))
		}
		if c, err := tg.Counters(); err == nil && (c.LostRecords > 0 || tg.Evicted() > 0) {
			fmt.Fprintf(s.stderr, "container %s (%s): %d events, %d lost records, %d evicted (memory budget)\n", display.Quote(tg.Info.Name), tg.Info.ShortID(), tg.Events(), c.LostRecords, tg.Evicted())
		}
	}
	sum := s.tr.Summary()
	ps := s.tr.ParserStats()
	sum.Truncated, sum.Desyncs, sum.CutStreams = ps.Truncated, ps.Desyncs, ps.CutStreams
	sum.DroppedRequests, sum.GapBytes = ps.DroppedRequests, ps.GapBytes
	if err := s.closeTLS(); err != nil {
		errs = append(errs, err)
	}
	if err := s.coll.Close(); err != nil {
		errs = append(errs, fmt.Errorf("releasing eBPF objects: %w", err))
	}
	spans, err := s.tel.close()
	if err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(s.stderr, "boxtap: %s%s%s\n", sum, s.unreadableTotal(), spans)
	if err := s.writeSummary(s.view, time.Now()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// abort releases everything when setup failed before run.
func (s *session) abort() {
	s.cancel()
	s.markStopped()
	s.wg.Wait()
	for _, tg := range s.tr.Targets() {
		_ = s.tr.Remove(context.Background(), tg)
	}
	_ = s.closeTLS()
	_ = s.coll.Close()
	_, _ = s.tel.close()
}

// closeTLS detaches the TLS uprobes, if any.
func (s *session) closeTLS() error {
	if s.tls == nil {
		return nil
	}
	if err := s.tls.Close(); err != nil {
		return fmt.Errorf("releasing the TLS probes: %w", err)
	}
	return nil
}

// markStopped makes later add calls fail with errSessionEnded.
func (s *session) markStopped() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// sharedSink lets several containers write to one sink (stdout): removing
// one container only flushes it.
type sharedSink struct{ output.Sink }

func (s sharedSink) Close() error { return s.Sink.Flush() }

// Discards passes on what the shared sink says (output.Discarder).
func (s sharedSink) Discards() bool { return output.Discards(s.Sink) }

// Command benchrun is `make bench`: it measures what `boxtap trace` costs a
// busy nginx container, side by side with tcpdump and tshark, and writes the
// table to BENCHMARKS.md.
//
// The workload is Debian's nginx in a container imported from the host's
// own binary, loaded by wrk over loopback keep-alive connections. Every
// configuration runs BENCH_ROUNDS times, in alternation, for BENCH_SECONDS
// each, after a warm-up. It needs root, Docker, wrk, nginx and tcpdump;
// tshark is optional.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// settings are the knobs of one benchmark run.
type settings struct {
	rounds   int
	duration time.Duration
	warmup   time.Duration
	threads  int
	conns    int
	boxtap   string
	mdPath   string
	write    bool
	groups   map[string]bool
	workDir  string
	command  string
	// otlp and metricsAddr serve the telemetry cases (telemetry.go).
	otlp        *otlpSink
	metricsAddr string
	check       bool    // exit non-zero when a target is missed
	clkTck      float64 // AT_CLKTCK
	// h2Requests is the fixed number of requests of an h2c round (h2load.go);
	// 0 during the warm-up, which runs for a duration.
	h2Requests int
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: must be a positive integer", name, v)
	}
	return n, nil
}

// allGroups are the case groups BENCH_CASES may pick, in the order they run.
var allGroups = []string{"small", "tools", "neighbour", "big", "filter", "telemetry", "h2c", "burst", "https", "uprobe"}

func parseSettings() (*settings, error) {
	s := &settings{}
	rounds, err := envInt("BENCH_ROUNDS", 3)
	if err != nil {
		return nil, err
	}
	secs, err := envInt("BENCH_SECONDS", 10)
	if err != nil {
		return nil, err
	}
	warm, err := envInt("BENCH_WARMUP", 3)
	if err != nil {
		return nil, err
	}
	s.rounds, s.duration, s.warmup = rounds, time.Duration(secs)*time.Second, time.Duration(warm)*time.Second
	groups := strings.Join(allGroups, ",")
	if v := os.Getenv("BENCH_CASES"); v != "" {
		groups = v
	}
	s.groups = map[string]bool{}
	for _, g := range strings.Split(groups, ",") {
		g = strings.TrimSpace(g)
		if !slices.Contains(allGroups, g) {
			return nil, fmt.Errorf("BENCH_CASES: unknown case %q (use %s)", g, strings.Join(allGroups, ", "))
		}
		s.groups[g] = true
	}
	flag.StringVar(&s.boxtap, "boxtap", "bin/boxtap", "the boxtap binary to measure")
	flag.StringVar(&s.mdPath, "md", "BENCHMARKS.md", "the page that receives the results table")
	flag.IntVar(&s.threads, "threads", 2, "wrk threads")
	flag.IntVar(&s.conns, "conns", 50, "wrk connections")
	flag.BoolVar(&s.check, "check", false, "exit non-zero when a target is missed or a round is invalid (make bench-check)")
	flag.Parse()
	// Only a full run replaces the published table.
	s.write = len(s.groups) == len(allGroups) && os.Getenv("BENCH_WRITE") != "0"
	s.command = fmt.Sprintf("sudo make bench  # BENCH_ROUNDS=%d BENCH_SECONDS=%d, wrk -t%d -c%d", rounds, secs, s.threads, s.conns)
	return s, nil
}

func run() error {
	s, err := parseSettings()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root (boxtap loads eBPF programs, tcpdump captures); use sudo make bench")
	}
	bins := []string{"docker", "wrk", "tcpdump", "ldd", s.boxtap}
	if s.groups["h2c"] {
		bins = append(bins, "h2load")
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: %w; run scripts/bench-deps.sh (make bench does) and make build", bin, err)
		}
	}
	if s.clkTck, err = clockTicks(); err != nil {
		return err
	}
	stats, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer stats.Close()
	haveTshark := true
	if _, err := exec.LookPath("tshark"); err != nil {
		haveTshark = false
		fmt.Println("bench: tshark not installed; its row is left out (apt-get install tshark)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s.workDir, err = os.MkdirTemp("/dev/shm", "boxtap-bench-")
	if err != nil {
		return fmt.Errorf("creating a tmpfs work directory: %w", err)
	}
	defer os.RemoveAll(s.workDir)

	fmt.Println("bench: building the nginx image from", nginxBinary)
	image, err := ensureImage(ctx)
	if err != nil {
		return err
	}
	suffix := strconv.Itoa(os.Getpid())
	names := []string{"boxtap-bench-a-" + suffix, "boxtap-bench-b-" + suffix, "boxtap-bench-h2c-" + suffix}
	defer func() {
		for _, n := range names {
			removeContainer(n)
		}
	}()
	a, err := startServer(ctx, image, names[0], s.workDir, false)
	if err != nil {
		return err
	}
	b, err := startServer(ctx, image, names[1], s.workDir, false)
	if err != nil {
		return err
	}
	fmt.Printf("bench: nginx %s on :%d (traced), %s on :%d (neighbour)\n", a.name, a.port, b.name, b.port)
	var h *server
	if s.groups["h2c"] {
		if h, err = startServer(ctx, image, names[2], s.workDir, true); err != nil {
			return err
		}
		fmt.Printf("bench: nginx %s with h2c on :%d (traced)\n", h.name, h.h2Port)
	}

	if s.groups["telemetry"] {
		if s.otlp, err = startOTLPSink(); err != nil {
			return err
		}
		defer s.otlp.stop()
		if s.metricsAddr, err = freeLoopbackAddr(); err != nil {
			return err
		}
	}
	cases := planCases(s, a, b, haveTshark)
	if h != nil {
		cases = append(cases, h2cCases(h)...)
	}
	warm := []benchCase{{srv: a, path: "/"}, {srv: b, path: "/"}, {srv: a, path: "/big"}}
	if h != nil {
		warm = append(warm, benchCase{srv: h, path: "/", h2c: true})
	}
	if s.groups["https"] {
		warm = append(warm, benchCase{srv: a, path: "/", tls: true}, benchCase{srv: b, path: "/", tls: true})
	}
	for _, w := range warm {
		fmt.Printf("bench: warm-up %s %s for %s\n", w.srv.name, w.path, s.warmup)
		l, err := runLoad(ctx, s, &w, s.warmup)
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if w.h2c {
			s.h2Requests = h2RoundRequests(l.rps, s.duration, s.conns)
			fmt.Printf("bench: h2c rounds send %d requests each (about %s at the warm-up's %.0f req/s)\n", s.h2Requests, s.duration, l.rps)
		}
	}
	res := newResults(cases, s.rounds)
	start := time.Now()
	for r := 0; r < s.rounds; r++ {
		for i := range cases {
			c := &cases[i]
			m, err := runCase(ctx, s, c)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, c.key, err)
			}
			res.add(i, m)
			fmt.Printf("bench: round %d/%d %-22s %s\n", r+1, s.rounds, c.key, m.brief())
		}
	}
	fmt.Printf("bench: %d rounds in %s\n", s.rounds, time.Since(start).Round(time.Second))
	table := report(s, res)
	fmt.Println()
	fmt.Print(table)
	if s.write {
		if err := writeMarkdown(s.mdPath, table); err != nil {
			return err
		}
		fmt.Println("bench: wrote", s.mdPath)
	}
	if missed := missedTargets(rows(res)); len(missed) > 0 {
		msg := fmt.Sprintf("%d target(s) not met: %s", len(missed), strings.Join(missed, "; "))
		if s.check {
			return errors.New(msg)
		}
		fmt.Println("bench:", msg)
	}
	return nil
}

// benchCase is one configuration: a load against one server, watched by
// one tool (or none).
type benchCase struct {
	key     string
	srv     *server // loaded by wrk
	path    string
	tool    tool
	watched *server // what the tool observes
	// toolArgs are extra boxtap flags (filters); such a case writes fewer
	// events than responses by design.
	toolArgs []string
	// burst, when set, stops and resumes the tool during the load (burst.go).
	burst *burstPlan
	// h2c loads srv's HTTP/2 cleartext port with h2load instead of wrk.
	h2c bool
	// tls loads srv's HTTPS listener (https.go).
	tls bool
	// uprobe times calls into a probed function instead of loading nginx
	// (uprobe.go).
	uprobe bool
}

func planCases(s *settings, a, b *server, haveTshark bool) []benchCase {
	var cs []benchCase
	if s.groups["small"] || s.groups["tools"] {
		cs = append(cs, benchCase{key: "small/untraced", srv: a, path: "/"})
	}
	if s.groups["small"] {
		cs = append(cs, benchCase{key: "small/boxtap", srv: a, path: "/", tool: toolBoxtap, watched: a})
	}
	if s.groups["tools"] {
		cs = append(cs, benchCase{key: "small/tcpdump", srv: a, path: "/", tool: toolTcpdump, watched: a})
		if haveTshark {
			cs = append(cs, benchCase{key: "small/tshark", srv: a, path: "/", tool: toolTshark, watched: a})
		}
	}
	if s.groups["neighbour"] {
		cs = append(cs,
			benchCase{key: "neighbour/untraced", srv: b, path: "/"},
			benchCase{key: "neighbour/boxtap-on-a", srv: b, path: "/", tool: toolBoxtap, watched: a})
	}
	if s.groups["big"] {
		cs = append(cs,
			benchCase{key: "big/untraced", srv: a, path: "/big"},
			benchCase{key: "big/boxtap", srv: a, path: "/big", tool: toolBoxtap, watched: a})
	}
	if s.groups["filter"] {
		cs = append(cs, filterCases(a)...)
	}
	if s.groups["telemetry"] {
		cs = append(cs, telemetryCases(a, s.otlp, s.metricsAddr)...)
	}
	if s.groups["burst"] {
		cs = append(cs, burstCases(a)...)
	}
	if s.groups["https"] {
		cs = append(cs, httpsCases(a, b)...)
	}
	if s.groups["uprobe"] {
		cs = append(cs, uprobeCases()...)
	}
	return cs
}

// measurement is one run of one case.
type measurement struct {
	load
	served uint64 // responses nginx served while the tool watched (status requests included)
	tool   tool
	obs    observed
	burst  burstStats // the burst case's pauses
	trap   trapCost   // the uprobe case
}

func (m measurement) brief() string {
	if m.trap != (trapCost{}) {
		return fmt.Sprintf("CPU per call: %.1f ns without a probe, %.0f ns with a uprobe, %.1f ns with a uprobe for another process",
			m.trap.none, m.trap.probed, m.trap.otherPID)
	}
	s := fmt.Sprintf("%9.0f req/s  p99 %-9s", m.rps, m.p99.Round(time.Microsecond))
	switch m.tool {
	case toolBoxtap:
		s += fmt.Sprintf(" exchanges %d/%d (%d lines, %d dup, %d bad, boxtap counted %d)  cpu %.2fs + eBPF %.2fs (%s)  rss %.1f MiB  lost %d",
			m.obs.tally.distinct, m.served, m.obs.tally.lines, m.obs.tally.duplicates, m.obs.tally.bad, m.obs.events,
			m.obs.cpu, m.obs.bpf.runTime.Seconds(), m.obs.bpf.perRun(m.served), float64(m.obs.rssKiB)/1024, m.obs.lost)
	case toolTcpdump, toolTshark:
		s += fmt.Sprintf(" captured %d  dropped %d  cpu %.2fs", m.obs.captured, m.obs.dropped, m.obs.cpu)
	}
	if why := m.invalid(); why != "" {
		s += "  INVALID: " + why
	}
	return s
}

// invalid says why a round's figures cannot be judged, or "" when they can:
// wrk saw socket errors or non-2xx/3xx responses, so the load was not the one
// intended.
func (m measurement) invalid() string {
	if m.errors > 0 {
		return fmt.Sprintf("wrk reported %d socket errors or non-2xx/3xx responses", m.errors)
	}
	return ""
}

// complete tells whether boxtap's output holds exactly one event per
// response served, and boxtap's own count agrees with what it wrote.
func (m measurement) complete() bool {
	t := m.obs.tally
	return t.distinct == m.served && t.duplicates == 0 && t.bad == 0 && m.obs.events == t.lines
}

// runCase runs one configuration once: start the tool, read nginx's
// counter, load, read the counter again, stop the tool.
func runCase(ctx context.Context, s *settings, c *benchCase) (measurement, error) {
	m := measurement{tool: c.tool}
	if c.uprobe {
		var err error
		m.trap, err = measureTrapCost()
		return m, err
	}
	var o *observer
	if c.tool != toolNone {
		var err error
		if o, err = startObserver(ctx, c.tool, s.boxtap, c.watched, s.workDir, s.clkTck, c.toolArgs...); err != nil {
			return m, err
		}
		defer os.Remove(o.outPath + ".pcap")
		defer os.Remove(o.outPath)
	}
	stopTool := func() error {
		if o == nil {
			return nil
		}
		obs, err := o.stop()
		o = nil
		m.obs = obs
		return err
	}
	defer stopTool()
	before, err := c.srv.requests()
	if err != nil {
		return m, fmt.Errorf("reading nginx's counter: %w", err)
	}
	if o != nil {
		if err := o.markStart(); err != nil {
			return m, err
		}
	}
	type burstResult struct {
		st  burstStats
		err error
	}
	var burstDone chan burstResult
	if c.burst != nil && o != nil {
		// The pauses run beside the load and end before it does: run is
		// bounded by the load's duration and resumes boxtap on every path.
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan burstResult, 1)
		burstDone = done
		go func() {
			st, err := c.burst.run(bctx, o.cmd.Process.Pid, c.srv, s.duration)
			done <- burstResult{st, err}
		}()
		// On an early return, wait until boxtap is resumed before it is
		// stopped (the deferred stopTool runs after this).
		defer func() {
			cancel()
			if burstDone != nil {
				<-done
			}
		}()
	}
	l, err := runLoad(ctx, s, c, s.duration)
	if err != nil {
		return m, err
	}
	m.load = l
	if burstDone != nil {
		res := <-burstDone
		burstDone = nil
		if res.err != nil {
			return m, fmt.Errorf("stopping and resuming boxtap: %w", res.err)
		}
		m.burst = res.st
	}
	after, err := c.srv.settledRequests(ctx)
	if err != nil {
		return m, fmt.Errorf("reading nginx's counter: %w", err)
	}
	// The status requests were served while the tool watched; the
	// counter already includes the one that reads it.
	m.served = after - before + 1
	if err := stopTool(); err != nil {
		return m, err
	}
	if c.tool == toolBoxtap && c.watched == c.srv && len(c.toolArgs) == 0 && c.burst == nil && !m.complete() {
		keepEvidence(c, m)
	}
	return m, nil
}

// keepEvidence copies the events of a run whose count differs from nginx's
// to /tmp, for a look at what was missed or doubled.
func keepEvidence(c *benchCase, m measurement) {
	dst := fmt.Sprintf("/tmp/boxtap-bench-mismatch-%s-%d.jsonl", strings.ReplaceAll(c.key, "/", "-"), time.Now().Unix())
	b, err := os.ReadFile(m.obs.outPath)
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		fmt.Printf("bench: %s: %d distinct exchanges in %d lines for %d responses; keeping them failed: %v\n", c.key, m.obs.tally.distinct, m.obs.tally.lines, m.served, err)
		return
	}
	fmt.Printf("bench: %s: %d distinct exchanges in %d lines for %d responses; events kept in %s\n", c.key, m.obs.tally.distinct, m.obs.tally.lines, m.served, dst)
}

// runLoad runs the case's load generator for d: wrk, or h2load for h2c.
func runLoad(ctx context.Context, s *settings, c *benchCase, d time.Duration) (load, error) {
	if c.h2c {
		return runH2load(ctx, s.threads, s.conns, h2Streams, d, s.h2Requests, c.srv.h2URL(c.path))
	}
	if c.tls {
		return runWrk(ctx, s.threads, s.conns, d, c.srv.tlsURL(c.path))
	}
	return runWrk(ctx, s.threads, s.conns, d, c.srv.url(c.path))
}

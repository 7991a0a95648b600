package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tool is a program that watches the workload: boxtap, tcpdump or tshark.
type tool string

const (
	toolNone    tool = ""
	toolBoxtap  tool = "boxtap"
	toolTcpdump tool = "tcpdump"
	toolTshark  tool = "tshark"
)

// observer is one running tool process.
type observer struct {
	kind    tool
	cmd     *exec.Cmd
	outPath string

	mu    sync.Mutex
	lines []string
	ready chan struct{}
	done  chan struct{} // stderr reached EOF
	// scanErr is why reading stderr stopped early, if it did (set before done closes).
	scanErr error

	clkTck   float64   // units of /proc/PID/stat times per second
	cpuStart float64   // CPU seconds used before the measured window
	bpfStart progStats // boxtap: its eBPF programs' statistics at the window's start
}

// observed is what a tool reported after it stopped.
type observed struct {
	cpu       float64    // CPU seconds in the measured window (children included)
	rssKiB    int64      // peak resident set
	outLines  uint64     // lines it wrote to stdout (boxtap: events; tshark: matching packets)
	tally     eventTally // boxtap: its stdout parsed event by event
	bpf       progStats  // boxtap: its eBPF programs' run time and runs in the measured window
	bpfErr    error      // boxtap: why bpf is missing
	events    uint64     // boxtap's own event count
	lost      uint64     // boxtap: lost records
	truncated uint64     // boxtap: truncated header blocks
	captured  uint64     // tcpdump/tshark: packets captured
	dropped   uint64     // tcpdump/tshark: packets dropped
	filtered  uint64     // boxtap: exchanges its filter left out
	stderr    string     // last lines, for errors
	outPath   string     // its stdout, until the run ends
}

// readyLine tells when each tool is capturing.
var readyLine = map[tool]*regexp.Regexp{
	toolBoxtap:  regexp.MustCompile(`^tracing `),
	toolTcpdump: regexp.MustCompile(`listening on `),
	toolTshark:  regexp.MustCompile(`^Capturing on `),
}

// startObserver starts a tool on the traffic of srv and waits until it
// captures. boxtap traces the container; the packet capturers watch
// srv's port on the loopback interface.
func startObserver(ctx context.Context, kind tool, boxtap string, srv *server, dir string, clkTck float64, boxtapArgs ...string) (*observer, error) {
	o := &observer{kind: kind, outPath: fmt.Sprintf("%s/%s.out", dir, kind), clkTck: clkTck, ready: make(chan struct{}), done: make(chan struct{})}
	port := strconv.Itoa(srv.port)
	switch kind {
	case toolBoxtap:
		o.cmd = exec.Command(boxtap, append([]string{"trace", srv.name}, boxtapArgs...)...)
	case toolTcpdump:
		o.cmd = exec.Command("tcpdump", "-i", "lo", "-n", "-w", o.outPath+".pcap", "tcp port "+port)
	case toolTshark:
		o.cmd = exec.Command("tshark", "-i", "lo", "-n", "-l", "-f", "tcp port "+port, "-Y", "http")
	default:
		return nil, fmt.Errorf("unknown tool %q", kind)
	}
	out, err := os.Create(o.outPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", o.outPath, err)
	}
	defer out.Close()
	o.cmd.Stdout = out
	// A pipe of our own, not StderrPipe: Wait closes that one as soon as
	// the process exits, and lines not read by then (the closing counts)
	// were lost, which under load made a round fail with "printed no
	// closing counts". This one is read to its end, then closed.
	stderr, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating a pipe for %s's stderr: %w", kind, err)
	}
	o.cmd.Stderr = w
	err = o.cmd.Start()
	w.Close()
	if err != nil {
		stderr.Close()
		return nil, fmt.Errorf("starting %s: %w", kind, err)
	}
	go o.readStderr(stderr)
	select {
	case <-o.ready:
	case <-o.done:
		_ = o.cmd.Wait()
		return nil, fmt.Errorf("%s exited before capturing: %s", kind, o.tail())
	case <-time.After(60 * time.Second):
		o.kill()
		return nil, fmt.Errorf("%s did not start capturing within 60s: %s", kind, o.tail())
	case <-ctx.Done():
		o.kill()
		return nil, ctx.Err()
	}
	return o, nil
}

func (o *observer) readStderr(r io.ReadCloser) {
	defer close(o.done)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	once := sync.Once{}
	for sc.Scan() {
		line := sc.Text()
		o.mu.Lock()
		o.lines = append(o.lines, line)
		o.mu.Unlock()
		if readyLine[o.kind].MatchString(line) {
			once.Do(func() { close(o.ready) })
		}
	}
	o.scanErr = sc.Err()
	if o.scanErr != nil {
		// Keep the pipe drained, or the tool blocks writing to it.
		_, _ = io.Copy(io.Discard, r)
	}
}

func (o *observer) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.lines)
	if n > 8 {
		n = 8
	}
	return strings.Join(o.lines[len(o.lines)-n:], " | ")
}

func (o *observer) kill() {
	_ = o.cmd.Process.Kill()
	_ = o.cmd.Wait()
}

// markStart remembers the CPU time used so far (start-up, eBPF loading), so
// that only the measured window is charged.
func (o *observer) markStart() error {
	cpu, err := procCPU(o.cmd.Process.Pid, o.clkTck)
	if err != nil {
		return err
	}
	o.cpuStart = cpu
	if o.kind == toolBoxtap {
		if o.bpfStart, err = procProgStats(o.cmd.Process.Pid); err != nil {
			return err
		}
	}
	return nil
}

// stop interrupts the tool as a user would (SIGINT), waits for its final
// report and collects its numbers.
func (o *observer) stop() (observed, error) {
	var res observed
	// Peak RSS is read from the live process. The rusage of a child is no
	// use for it: exec records the pre-exec image's high-water mark, so
	// ru_maxrss of a child that Go started is at least the RSS of this
	// harness.
	hwm, err := procHWM(o.cmd.Process.Pid)
	if err != nil {
		o.kill()
		return res, err
	}
	res.rssKiB = hwm
	if o.kind == toolBoxtap {
		// The load is over: the programs run no more for this window. They
		// are gone once boxtap exits, so they are read now.
		if end, err := procProgStats(o.cmd.Process.Pid); err != nil {
			res.bpfErr = err
		} else {
			res.bpf = progStats{runTime: end.runTime - o.bpfStart.runTime, runs: end.runs - o.bpfStart.runs}
		}
	}
	_ = o.cmd.Process.Signal(syscall.SIGINT)
	waited := make(chan error, 1)
	go func() { waited <- o.cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(60 * time.Second):
		_ = o.cmd.Process.Kill()
		<-waited
		return res, fmt.Errorf("%s did not exit within 60s of SIGINT: %s", o.kind, o.tail())
	}
	select {
	case <-o.done:
	case <-time.After(10 * time.Second):
		return res, fmt.Errorf("%s exited but its stderr stayed open 10s (a child holds it?): %s", o.kind, o.tail())
	}
	if o.scanErr != nil {
		return res, fmt.Errorf("reading %s's stderr: %w", o.kind, o.scanErr)
	}
	res.stderr = o.tail()
	res.outPath = o.outPath
	if werr != nil {
		var ee *exec.ExitError
		// tshark and tcpdump may report the interrupt in their status.
		if !(errors.As(werr, &ee) && o.kind != toolBoxtap) {
			return res, fmt.Errorf("%s: %w: %s", o.kind, werr, res.stderr)
		}
	}
	if ru, ok := o.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		total := tv(ru.Utime) + tv(ru.Stime)
		res.cpu = total - o.cpuStart
	}
	n, err := countLines(o.outPath)
	if err != nil {
		return res, err
	}
	res.outLines = n
	if o.kind == toolBoxtap {
		if res.tally, err = tallyFile(o.outPath); err != nil {
			return res, err
		}
	}
	o.mu.Lock()
	err = parseReport(o.kind, o.lines, &res)
	o.mu.Unlock()
	return res, err
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

var (
	boxtapSummary = regexp.MustCompile(`^boxtap: (\d+) events, (\d+) lost records, (\d+) truncated header blocks`)
	pktsCaptured  = regexp.MustCompile(`^(\d+) packets? captured`)
	pktsDropped   = regexp.MustCompile(`(\d+) packets? dropped`)
)

// parseReport reads a tool's closing report from its stderr lines.
func parseReport(kind tool, lines []string, res *observed) error {
	found := false
	for _, l := range lines {
		switch kind {
		case toolBoxtap:
			if m := boxtapSummary.FindStringSubmatch(l); m != nil {
				res.events, _ = strconv.ParseUint(m[1], 10, 64)
				res.lost, _ = strconv.ParseUint(m[2], 10, 64)
				res.truncated, _ = strconv.ParseUint(m[3], 10, 64)
				found = true
			}
			if m := boxtapFiltered.FindStringSubmatch(l); m != nil {
				res.filtered, _ = strconv.ParseUint(m[1], 10, 64)
			}
		case toolTcpdump, toolTshark:
			if m := pktsCaptured.FindStringSubmatch(l); m != nil {
				res.captured, _ = strconv.ParseUint(m[1], 10, 64)
				found = true
			}
			if m := pktsDropped.FindStringSubmatch(l); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				res.dropped += n
			}
		}
	}
	if !found {
		return fmt.Errorf("%s printed no closing counts: %s", kind, strings.Join(lastN(lines, 5), " | "))
	}
	return nil
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// countLines counts newlines in a file.
func countLines(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n uint64
	for {
		k, err := f.Read(buf)
		n += uint64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// procHWM returns a running process's peak resident set (VmHWM) in KiB.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("reading the peak RSS: %w", err)
	}
	return parseHWM(string(b))
}

// parseHWM finds the VmHWM line of a /proc/PID/status text.
func parseHWM(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad VmHWM line %q", line)
			}
			return kib, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM line in /proc/PID/status")
}

// procCPU returns the CPU seconds a process and its waited-for children
// used so far: utime+stime+cutime+cstime of /proc/PID/stat, in units of
// clkTck (AT_CLKTCK) per second.
func procCPU(pid int, clkTck float64) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	cpu, err := cpuSeconds(string(b), clkTck)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return cpu, nil
}

// cpuSeconds adds up utime, stime, cutime and cstime of a /proc/PID/stat line.
func cpuSeconds(stat string, clkTck float64) (float64, error) {
	// The command name may hold spaces; fields start after its ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return 0, errors.New("short line")
	}
	var ticks uint64
	for _, v := range f[11:15] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad field %q", v)
		}
		ticks += n
	}
	return float64(ticks) / clkTck, nil
}

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// results holds every measurement, by case and round.
type results struct {
	cases []benchCase
	runs  [][]measurement
}

func newResults(cases []benchCase, rounds int) *results {
	r := &results{cases: cases, runs: make([][]measurement, len(cases))}
	for i := range r.runs {
		r.runs[i] = make([]measurement, 0, rounds)
	}
	return r
}

func (r *results) add(i int, m measurement) { r.runs[i] = append(r.runs[i], m) }

// of returns the runs of a case, or nil when it did not run.
func (r *results) of(key string) []measurement {
	for i, c := range r.cases {
		if c.key == key {
			return r.runs[i]
		}
	}
	return nil
}

// spread is a median with its min and max.
type spread struct{ med, min, max float64 }

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return spread{med: med, min: s[0], max: s[n-1]}
}

func each(ms []measurement, f func(measurement) float64) []float64 {
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = f(m)
	}
	return out
}

// ratios divides round by round: each pair ran back to back.
func ratios(num, den []measurement, f func(measurement) float64) []float64 {
	n := min(len(num), len(den))
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if d := f(den[i]); d > 0 {
			out = append(out, f(num[i])/d)
		}
	}
	return out
}

func rps(m measurement) float64   { return m.rps }
func p99ms(m measurement) float64 { return float64(m.p99) / float64(time.Millisecond) }
func completeness(m measurement) float64 {
	if m.served == 0 {
		return 0
	}
	return float64(m.obs.outLines) / float64(m.served)
}
func cpuPer100k(m measurement) float64 {
	if m.served == 0 {
		return 0
	}
	return m.obs.cpu / float64(m.served) * 1e5
}
func rssMiB(m measurement) float64    { return float64(m.obs.rssKiB) / 1024 }
func lost(m measurement) float64      { return float64(m.obs.lost) }
func truncated(m measurement) float64 { return float64(m.obs.truncated) }
func dropped(m measurement) float64   { return float64(m.obs.dropped) }
func captured(m measurement) float64  { return float64(m.obs.captured) }

// row is one line of the table.
type row struct {
	measure string
	vals    []float64
	format  string // for med, min, max
	target  string
	met     func(spread, []float64) bool // nil: informative
}

func (r row) cells() []string {
	sp := spreadOf(r.vals)
	med, rng := fmt.Sprintf(r.format, sp.med), fmt.Sprintf(r.format+" – "+r.format, sp.min, sp.max)
	if len(r.vals) == 0 {
		med, rng = "n/a", "n/a"
	}
	met := ""
	if r.met != nil && len(r.vals) > 0 {
		met = "no"
		if r.met(sp, r.vals) {
			met = "yes"
		}
	}
	return []string{r.measure, med, rng, r.target, met}
}

func atLeast(t float64) func(spread, []float64) bool {
	return func(s spread, _ []float64) bool { return s.med >= t }
}

func atMost(t float64) func(spread, []float64) bool {
	return func(s spread, _ []float64) bool { return s.med <= t }
}

func allEqual(t float64) func(spread, []float64) bool {
	return func(_ spread, v []float64) bool {
		for _, x := range v {
			if x != t {
				return false
			}
		}
		return true
	}
}

// nearOne accepts a ratio whose range covers 1.0 or whose median is within
// 3% of it: on shared cores that is the noise of one run.
func nearOne(s spread, _ []float64) bool {
	return (s.min <= 1 && s.max >= 1) || (s.med >= 0.97 && s.med <= 1.03)
}

// rows builds the table from the runs that happened.
func rows(r *results) []row {
	base, traced := r.of("small/untraced"), r.of("small/boxtap")
	var out []row
	if traced != nil {
		out = append(out,
			row{"Small: req/s untraced", each(base, rps), "%.0f", "", nil},
			row{"Small: req/s traced by boxtap", each(traced, rps), "%.0f", "", nil},
			row{"Small: throughput ratio traced/untraced", ratios(traced, base, rps), "%.3f", ">= 0.97", atLeast(0.97)},
			row{"Small: p99 latency untraced (ms)", each(base, p99ms), "%.2f", "", nil},
			row{"Small: p99 latency traced (ms)", each(traced, p99ms), "%.2f", "", nil},
			row{"Small: p99 latency ratio traced/untraced", ratios(traced, base, p99ms), "%.3f", "<= 1.10", atMost(1.10)},
			row{"Small: completeness events/responses", each(traced, completeness), "%.6f", "1.0 exactly", allEqual(1)},
			row{"Small: lost records", each(traced, lost), "%.0f", "0", allEqual(0)},
			row{"Small: truncated header blocks", each(traced, truncated), "%.0f", "", nil},
			row{"Small: boxtap CPU s per 100k responses", each(traced, cpuPer100k), "%.3f", "<= 0.15", atMost(0.15)},
			row{"Small: boxtap peak RSS (MiB)", each(traced, rssMiB), "%.1f", "<= 40", atMost(40)},
		)
	}
	if nb, nt := r.of("neighbour/untraced"), r.of("neighbour/boxtap-on-a"); nt != nil {
		out = append(out,
			row{"Neighbour: req/s, nothing traced", each(nb, rps), "%.0f", "", nil},
			row{"Neighbour: req/s while A is traced", each(nt, rps), "%.0f", "", nil},
			row{"Neighbour: throughput ratio", ratios(nt, nb, rps), "%.3f", "1.0 within noise", nearOne},
		)
	}
	if bb, bt := r.of("big/untraced"), r.of("big/boxtap"); bt != nil {
		out = append(out,
			row{"1 MiB: req/s untraced", each(bb, rps), "%.0f", "", nil},
			row{"1 MiB: req/s traced by boxtap", each(bt, rps), "%.0f", "", nil},
			row{"1 MiB: throughput ratio traced/untraced", ratios(bt, bb, rps), "%.3f", ">= 0.99", atLeast(0.99)},
			row{"1 MiB: completeness events/responses", each(bt, completeness), "%.6f", "1.0 exactly", allEqual(1)},
			row{"1 MiB: lost records", each(bt, lost), "%.0f", "0", allEqual(0)},
			row{"1 MiB: boxtap CPU s per 100k responses", each(bt, cpuPer100k), "%.3f", "", nil},
		)
	}
	out = append(out, filterRows(r)...)
	out = append(out, telemetryRows(r)...)
	for _, t := range []tool{toolTcpdump, toolTshark} {
		runs := r.of("small/" + string(t))
		if runs == nil {
			continue
		}
		out = append(out,
			row{fmt.Sprintf("Reference %s: throughput ratio", t), ratios(runs, base, rps), "%.3f", "reference", nil},
			row{fmt.Sprintf("Reference %s: p99 latency ratio", t), ratios(runs, base, p99ms), "%.3f", "reference", nil},
			row{fmt.Sprintf("Reference %s: packets captured", t), each(runs, captured), "%.0f", "reference", nil},
			row{fmt.Sprintf("Reference %s: packets dropped", t), each(runs, dropped), "%.0f", "reference", nil},
			row{fmt.Sprintf("Reference %s: CPU s per 100k responses", t), each(runs, cpuPer100k), "%.3f", "reference", nil},
		)
	}
	return out
}

// report renders the environment and the table as Markdown.
func report(s *settings, r *results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s UTC on Linux %s, %s (%d cores), %s, %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), kernelRelease(), cpuModel(), runtime.NumCPU(),
		firstLine("nginx", "-v"), firstLine("wrk", "-v"))
	fmt.Fprintf(&b, "Reproduce: `%s`. %d rounds of %s per configuration, in alternation, after a %s warm-up; medians with min–max over rounds; ratios are taken round by round.\n\n",
		s.command, s.rounds, s.duration, s.warmup)
	b.WriteString("| Measure | Median | Min – max | Target | Met |\n|---|---:|---:|---|---|\n")
	for _, rw := range rows(r) {
		b.WriteString("| " + strings.Join(rw.cells(), " | ") + " |\n")
	}
	b.WriteString("\nPer round (req/s; for boxtap events/responses served, lost records; for capturers dropped packets):\n\n")
	b.WriteString("| Configuration |")
	for i := 1; i <= s.rounds; i++ {
		fmt.Fprintf(&b, " Round %d |", i)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", s.rounds) + "\n")
	for i, c := range r.cases {
		b.WriteString("| " + c.key + " |")
		for _, m := range r.runs[i] {
			cell := fmt.Sprintf(" %.0f", m.rps)
			switch m.tool {
			case toolBoxtap:
				cell += fmt.Sprintf("; %d/%d, %d lost", m.obs.outLines, m.served, m.obs.lost)
			case toolTcpdump, toolTshark:
				cell += fmt.Sprintf("; %d dropped", m.obs.dropped)
			}
			b.WriteString(cell + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// firstLine returns the first line a command prints (nginx and wrk print
// their versions on stderr).
func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	l = strings.TrimPrefix(l, "nginx version: ")
	if i := strings.Index(l, " ["); i > 0 {
		l = l[:i]
	}
	return l
}

const (
	beginMarker = "<!-- bench:results:begin (written by make bench) -->"
	endMarker   = "<!-- bench:results:end -->"
)

// writeMarkdown replaces the results block of the page, keeping the text
// around it; a page without the block gets it appended.
func writeMarkdown(path, table string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	block := beginMarker + "\n" + table + endMarker
	page := string(old)
	i, j := strings.Index(page, beginMarker), strings.Index(page, endMarker)
	switch {
	case i >= 0 && j > i:
		page = page[:i] + block + page[j+len(endMarker):]
	case page == "":
		page = "# Benchmarks\n\n" + block + "\n"
	default:
		page = strings.TrimRight(page, "\n") + "\n\n" + block + "\n"
	}
	if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

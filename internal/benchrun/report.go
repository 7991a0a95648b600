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

// completeness is distinct exchanges over responses served: a duplicated
// event cannot make up for a missed one.
func completeness(m measurement) float64 {
	if m.served == 0 {
		return 0
	}
	return float64(m.obs.tally.distinct) / float64(m.served)
}
func extraLines(m measurement) float64 { return float64(m.obs.tally.duplicates + m.obs.tally.bad) }

// countGap is the lines boxtap wrote minus the events it says it wrote.
func countGap(m measurement) float64 { return float64(m.obs.tally.lines) - float64(m.obs.events) }
func per100k(m measurement, seconds float64) float64 {
	if m.served == 0 {
		return 0
	}
	return seconds / float64(m.served) * 1e5
}
func cpuPer100k(m measurement) float64 { return per100k(m, m.obs.cpu) }
func bpfPer100k(m measurement) float64 { return per100k(m, m.obs.bpf.runTime.Seconds()) }
func totalPer100k(m measurement) float64 {
	return per100k(m, m.obs.cpu+m.obs.bpf.runTime.Seconds())
}
func rssMiB(m measurement) float64    { return float64(m.obs.rssKiB) / 1024 }
func lost(m measurement) float64      { return float64(m.obs.lost) }
func truncated(m measurement) float64 { return float64(m.obs.truncated) }
func dropped(m measurement) float64   { return float64(m.obs.dropped) }
func captured(m measurement) float64  { return float64(m.obs.captured) }

// withBPF keeps the rounds whose eBPF statistics were read.
func withBPF(ms []measurement) []measurement {
	var out []measurement
	for _, m := range ms {
		if m.obs.bpfErr == nil {
			out = append(out, m)
		}
	}
	return out
}

// row is one line of the table.
type row struct {
	measure string
	vals    []float64
	format  string // for med, min, max
	target  string
	met     func([]float64) bool // judged on every round; nil: informative
	invalid []string             // rounds behind the row that cannot be judged
}

// verdict is the Met cell of a judged row; ok is false when the target is
// missed, a round behind it is invalid, or there is nothing to judge.
func (r row) verdict() (cell string, ok bool) {
	switch {
	case len(r.invalid) > 0:
		return "no: invalid round", false
	case len(r.vals) == 0:
		return "no: no rounds", false
	case !r.met(r.vals):
		return "no", false
	}
	return "yes", true
}

func (r row) cells() []string {
	sp := spreadOf(r.vals)
	med, rng := fmt.Sprintf(r.format, sp.med), fmt.Sprintf(r.format+" – "+r.format, sp.min, sp.max)
	if len(r.vals) == 0 {
		med, rng = "n/a", "n/a"
	}
	met := ""
	if r.met != nil {
		met, _ = r.verdict()
	}
	return []string{r.measure, med, rng, r.target, met}
}

// missedTargets names every judged row that is not met, with its median.
func missedTargets(rs []row) []string {
	var out []string
	for _, r := range rs {
		if r.met == nil {
			continue
		}
		if cell, ok := r.verdict(); !ok {
			c := r.cells()
			out = append(out, fmt.Sprintf("%s: %s (median %s, range %s, target %s)", r.measure, cell, c[1], c[2], r.target))
		}
	}
	return out
}

// atLeast and atMost hold only when every round meets the target: the
// median is the headline figure, but one bad round must not hide behind it.
func atLeast(t float64) func([]float64) bool {
	return func(v []float64) bool { return slices.Min(v) >= t }
}

func atMost(t float64) func([]float64) bool {
	return func(v []float64) bool { return slices.Max(v) <= t }
}

func allEqual(t float64) func([]float64) bool {
	return func(v []float64) bool {
		for _, x := range v {
			if x != t {
				return false
			}
		}
		return true
	}
}

// invalidRounds lists the rounds of the named cases that cannot be judged.
func invalidRounds(r *results, keys ...string) []string {
	var out []string
	for _, k := range keys {
		for i, m := range r.of(k) {
			if why := m.invalid(); why != "" {
				out = append(out, fmt.Sprintf("%s round %d: %s", k, i+1, why))
			}
		}
	}
	return out
}

// judged fills in the invalid rounds of the cases a judged row comes from.
func judged(r *results, rw row, keys ...string) row {
	rw.invalid = invalidRounds(r, keys...)
	return rw
}

// judgedAll marks the judged rows of one case group with the invalid rounds
// of the cases keys, as judged does for one row.
func judgedAll(r *results, rws []row, keys ...string) []row {
	for i := range rws {
		if rws[i].met != nil {
			rws[i].invalid = invalidRounds(r, keys...)
		}
	}
	return rws
}

// rows builds the table from the runs that happened.
func rows(r *results) []row {
	base, traced := r.of("small/untraced"), r.of("small/boxtap")
	var out []row
	if traced != nil {
		sb := []string{"small/untraced", "small/boxtap"}
		out = append(out,
			row{measure: "Small: req/s untraced", vals: each(base, rps), format: "%.0f"},
			row{measure: "Small: req/s traced by boxtap", vals: each(traced, rps), format: "%.0f"},
			judged(r, row{"Small: throughput ratio traced/untraced", ratios(traced, base, rps), "%.3f", ">= 0.97", atLeast(0.97), nil}, sb...),
			row{measure: "Small: p99 latency untraced (ms)", vals: each(base, p99ms), format: "%.2f"},
			row{measure: "Small: p99 latency traced (ms)", vals: each(traced, p99ms), format: "%.2f"},
			judged(r, row{"Small: p99 latency ratio traced/untraced", ratios(traced, base, p99ms), "%.3f", "<= 1.10", atMost(1.10), nil}, sb...),
			judged(r, row{"Small: completeness distinct exchanges/responses", each(traced, completeness), "%.6f", "1.0 exactly", allEqual(1), nil}, sb[1]),
			judged(r, row{"Small: duplicate or malformed event lines", each(traced, extraLines), "%.0f", "0", allEqual(0), nil}, sb[1]),
			judged(r, row{"Small: lines written minus boxtap's own event count", each(traced, countGap), "%.0f", "0", allEqual(0), nil}, sb[1]),
			judged(r, row{"Small: lost records", each(traced, lost), "%.0f", "0", allEqual(0), nil}, sb[1]),
			row{measure: "Small: truncated header blocks", vals: each(traced, truncated), format: "%.0f"},
			row{measure: "Small: boxtap process CPU s per 100k responses", vals: each(traced, cpuPer100k), format: "%.3f"},
			row{measure: "Small: eBPF programs' CPU s per 100k responses", vals: each(withBPF(traced), bpfPer100k), format: "%.3f"},
			judged(r, row{"Small: boxtap CPU s per 100k, process + eBPF", each(withBPF(traced), totalPer100k), "%.3f", "<= 0.15", atMost(0.15), nil}, sb[1]),
			judged(r, row{"Small: boxtap peak RSS (MiB)", each(traced, rssMiB), "%.1f", "<= 40", atMost(40), nil}, sb[1]),
		)
	}
	if nb, nt := r.of("neighbour/untraced"), r.of("neighbour/boxtap-on-a"); nt != nil {
		out = append(out,
			row{measure: "Neighbour: req/s, nothing traced", vals: each(nb, rps), format: "%.0f"},
			row{measure: "Neighbour: req/s while A is traced", vals: each(nt, rps), format: "%.0f"},
			judged(r, row{"Neighbour: throughput ratio", ratios(nt, nb, rps), "%.3f", ">= 0.97 (1.0 within noise)", atLeast(0.97), nil},
				"neighbour/untraced", "neighbour/boxtap-on-a"),
		)
	}
	if bb, bt := r.of("big/untraced"), r.of("big/boxtap"); bt != nil {
		bk := []string{"big/untraced", "big/boxtap"}
		out = append(out,
			row{measure: "1 MiB: req/s untraced", vals: each(bb, rps), format: "%.0f"},
			row{measure: "1 MiB: req/s traced by boxtap", vals: each(bt, rps), format: "%.0f"},
			judged(r, row{"1 MiB: throughput ratio traced/untraced", ratios(bt, bb, rps), "%.3f", ">= 0.99", atLeast(0.99), nil}, bk...),
			judged(r, row{"1 MiB: completeness distinct exchanges/responses", each(bt, completeness), "%.6f", "1.0 exactly", allEqual(1), nil}, bk[1]),
			judged(r, row{"1 MiB: duplicate or malformed event lines", each(bt, extraLines), "%.0f", "0", allEqual(0), nil}, bk[1]),
			judged(r, row{"1 MiB: lines written minus boxtap's own event count", each(bt, countGap), "%.0f", "0", allEqual(0), nil}, bk[1]),
			judged(r, row{"1 MiB: lost records", each(bt, lost), "%.0f", "0", allEqual(0), nil}, bk[1]),
			row{measure: "1 MiB: boxtap process CPU s per 100k responses", vals: each(bt, cpuPer100k), format: "%.3f"},
			row{measure: "1 MiB: eBPF programs' CPU s per 100k responses", vals: each(withBPF(bt), bpfPer100k), format: "%.3f"},
			row{measure: "1 MiB: boxtap CPU s per 100k, process + eBPF", vals: each(withBPF(bt), totalPer100k), format: "%.3f"},
		)
	}
	out = append(out, filterRows(r)...)
	out = append(out, h2cRows(r)...)
	out = append(out, telemetryRows(r)...)
	out = append(out, burstRows(r)...)
	out = append(out, httpsRows(r)...)
	out = append(out, uprobeRows(r)...)
	for _, t := range []tool{toolTcpdump, toolTshark} {
		runs := r.of("small/" + string(t))
		if runs == nil {
			continue
		}
		out = append(out,
			row{measure: fmt.Sprintf("Reference %s: throughput ratio", t), vals: ratios(runs, base, rps), format: "%.3f", target: "reference"},
			row{measure: fmt.Sprintf("Reference %s: p99 latency ratio", t), vals: ratios(runs, base, p99ms), format: "%.3f", target: "reference"},
			row{measure: fmt.Sprintf("Reference %s: packets captured", t), vals: each(runs, captured), format: "%.0f", target: "reference"},
			row{measure: fmt.Sprintf("Reference %s: packets dropped", t), vals: each(runs, dropped), format: "%.0f", target: "reference"},
			row{measure: fmt.Sprintf("Reference %s: CPU s per 100k responses", t), vals: each(runs, cpuPer100k), format: "%.3f", target: "reference"},
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
	b.WriteString("| Measure | Median | Min – max | Target | Met (every round) |\n|---|---:|---:|---|---|\n")
	for _, rw := range rows(r) {
		b.WriteString("| " + strings.Join(rw.cells(), " | ") + " |\n")
	}
	if inv := invalidRounds(r, caseKeys(r)...); len(inv) > 0 {
		b.WriteString("\nInvalid rounds (not counted as met): " + strings.Join(inv, "; ") + ".\n")
	}
	b.WriteString("\nPer round (req/s; for boxtap distinct exchanges/responses served, duplicate or malformed lines, lost records; for capturers dropped packets):\n\n")
	b.WriteString("| Configuration |")
	for i := 1; i <= s.rounds; i++ {
		fmt.Fprintf(&b, " Round %d |", i)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", s.rounds) + "\n")
	for i, c := range r.cases {
		b.WriteString("| " + c.key + " |")
		for _, m := range r.runs[i] {
			cell := fmt.Sprintf(" %.0f", m.rps)
			switch {
			case c.uprobe:
				cell = fmt.Sprintf(" %.0f ns per trapped call", m.trap.probed)
			case m.tool == toolBoxtap:
				cell += fmt.Sprintf("; %d/%d, %d dup, %d lost", m.obs.tally.distinct, m.served, m.obs.tally.duplicates+m.obs.tally.bad, m.obs.lost)
			case m.tool == toolTcpdump, m.tool == toolTshark:
				cell += fmt.Sprintf("; %d dropped", m.obs.dropped)
			}
			if m.invalid() != "" {
				cell += "; INVALID"
			}
			b.WriteString(cell + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func caseKeys(r *results) []string {
	out := make([]string, len(r.cases))
	for i, c := range r.cases {
		out[i] = c.key
	}
	return out
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

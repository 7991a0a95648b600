package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/summary"
	"golang.org/x/sys/unix"
)

// viewFlags choose what a person sees: the output format, which exchanges
// are written, and a summary table.
type viewFlags struct {
	Format string `name:"format" help:"Output format: json (one Tracee event per line), text (one aligned line per exchange, under a header line; times in UTC) or pretty (indented JSON). Default: text when stdout is a terminal, json otherwise (and always json with --output-dir)." placeholder:"json|text|pretty"`

	Status     []string      `name:"status" help:"Only exchanges with this status code or class, e.g. --status 5xx,404 (repeatable; any may match)." placeholder:"CODE"`
	Method     []string      `name:"method" help:"Only exchanges with this request method, e.g. --method GET,POST (repeatable; any may match)." placeholder:"METHOD"`
	Path       []string      `name:"path" help:"Only exchanges whose request path (as sent, before redaction, without the query) matches this glob; a glob matching a leading part of the path up to a / also matches, so '/api/*' selects everything under /api/ (repeatable; any may match)." placeholder:"GLOB"`
	Host       []string      `name:"host" help:"Only exchanges whose request Host header, with or without its port, matches this glob, e.g. '*.example.com' (repeatable; any may match)." placeholder:"GLOB"`
	MinLatency time.Duration `name:"min-latency" help:"Only exchanges at least this slow (request start to response start), e.g. 100ms." placeholder:"D"`
	Direction  string        `name:"direction" help:"Only exchanges the container answered (egress) or asked (ingress)." placeholder:"egress|ingress"`

	Summary      bool          `name:"summary" help:"At exit, print a table on stderr: one row per container, method, route and status class, with count, rate, p50/p90/p99/max latency and bytes. Numeric, UUID and long hex path segments read {id}."`
	SummaryEvery time.Duration `name:"summary-every" help:"Also print the summary table every D while tracing, e.g. 10s (implies --summary)." placeholder:"D"`
	SummaryJSON  string        `name:"summary-json" help:"Write the summary table as JSON to FILE at exit (and with --summary-every, each time it is printed)." placeholder:"FILE" type:"path"`

	// Set by prepare.
	format string
	color  bool
	filter *output.Filter
	table  *summary.Table
}

// Output formats.
const (
	formatJSON   = "json"
	formatText   = "text"
	formatPretty = "pretty"
)

// prepare checks the view flags and settles what they leave open: the
// format (from --pretty, --output-dir and whether stdout is a terminal),
// colours, the filter and the summary table.
func (f *captureFlags) prepare(outputDir bool, stdout *os.File) error {
	v := &f.viewFlags
	switch v.Format {
	case "":
		switch {
		case f.Pretty:
			v.format = formatPretty
		case !outputDir && isTerminal(stdout):
			v.format = formatText
		default:
			v.format = formatJSON
		}
	case formatJSON, formatText, formatPretty:
		if f.Pretty && v.Format != formatPretty {
			return fmt.Errorf("--pretty is --format pretty, but --format %s was given too; drop one of them", v.Format)
		}
		v.format = v.Format
	default:
		return fmt.Errorf("--format %q: give json, text or pretty", v.Format)
	}
	if outputDir && v.format != formatJSON {
		return fmt.Errorf("--format %s cannot be used with --output-dir (files are JSON Lines); drop one of them", v.format)
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	v.color = v.format == formatText && !noColor && isTerminal(stdout)
	filter, err := output.NewFilter(output.FilterSpec{Status: v.Status, Method: v.Method, Path: v.Path, Host: v.Host, MinLatency: v.MinLatency, Direction: v.Direction})
	if err != nil {
		return err
	}
	v.filter = filter
	if v.SummaryEvery < 0 {
		return fmt.Errorf("--summary-every %v: give a positive duration, e.g. 10s", v.SummaryEvery)
	}
	if v.SummaryJSON != "" {
		if st, err := os.Stat(filepath.Dir(v.SummaryJSON)); err != nil || !st.IsDir() {
			return fmt.Errorf("--summary-json %s: its directory does not exist; create it or give another file", v.SummaryJSON)
		}
	}
	if v.Summary || v.SummaryEvery > 0 || v.SummaryJSON != "" {
		v.table = summary.New(time.Now(), summary.MaxRoutes)
	}
	return nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// newSink returns the stdout sink of the chosen format.
func newSink(f *captureFlags, w io.Writer, r *output.Redactor) output.Sink {
	var s output.Sink
	switch f.format {
	case formatPretty:
		s = output.NewPrettySink(w, r)
	case formatText:
		s = output.NewTextSink(w, r, output.TextOptions{Color: f.color})
	default:
		s = output.NewLineSink(w, r)
	}
	return f.withSummary(s)
}

// withSummary makes sink also count its events in the summary table, when
// there is one.
func (v *viewFlags) withSummary(sink output.Sink) output.Sink {
	if v.table == nil {
		return sink
	}
	return summarySink{Sink: sink, table: v.table}
}

// summarySink records each event it wrote in the summary table.
type summarySink struct {
	output.Sink
	table *summary.Table
}

func (s summarySink) Write(e *output.Event) error {
	if err := s.Sink.Write(e); err != nil {
		return err
	}
	s.table.Record(e)
	return nil
}

// Dropped passes on the count of a sink that drops events (output files),
// which the tracer's summary reads.
func (s summarySink) Dropped() uint64 {
	if d, ok := s.Sink.(interface{ Dropped() uint64 }); ok {
		return d.Dropped()
	}
	return 0
}

// summaryPrinter prints the summary table every --summary-every until
// stopped. It returns a function that stops it and waits for it.
func (s *session) summaryPrinter(v *viewFlags) (stop func()) {
	if v.table == nil || v.SummaryEvery <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(v.SummaryEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if err := s.writeSummary(v, now); err != nil {
					fmt.Fprintln(s.stderr, "boxtap:", err)
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// writeSummary prints the table on stderr and writes --summary-json.
func (s *session) writeSummary(v *viewFlags, now time.Time) error {
	if v.table == nil {
		return nil
	}
	fmt.Fprintf(s.stderr, "boxtap: summary over %s\n", now.Sub(v.table.Start()).Round(time.Millisecond))
	if err := v.table.WriteText(s.stderr, now); err != nil {
		return fmt.Errorf("printing the summary: %w", err)
	}
	if v.SummaryJSON == "" {
		return nil
	}
	return writeSummaryJSON(v.table, v.SummaryJSON, now)
}

// writeSummaryJSON replaces file with the table, through a temporary file,
// so that a reader never sees half a document.
func writeSummaryJSON(t *summary.Table, file string, now time.Time) error {
	tmp := file + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("--summary-json: %w", err)
	}
	werr := t.WriteJSON(fh, now)
	cerr := fh.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--summary-json %s: %w", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--summary-json: %w", err)
	}
	return nil
}

// hookFilterFlags carry an annotation's filters from "boxtap hook" to the
// container's tracer (hook-tracer), as --status=... flags.
type hookFilterFlags struct {
	Status     []string      `name:"status" sep:"none"`
	Method     []string      `name:"method" sep:"none"`
	Path       []string      `name:"path" sep:"none"`
	Host       []string      `name:"host" sep:"none"`
	MinLatency time.Duration `name:"min-latency"`
	Direction  string        `name:"direction"`
}

func (f *hookFilterFlags) filter() (*output.Filter, error) {
	return output.NewFilter(output.FilterSpec{Status: f.Status, Method: f.Method, Path: f.Path, Host: f.Host, MinLatency: f.MinLatency, Direction: f.Direction})
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxtap/boxtap/output"
)

func TestFormatDefaultsToTextOnATerminalAndJSONElsewhere(t *testing.T) {
	_, tty := openPTY(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, tc := range []struct {
		name      string
		flags     captureFlags
		outputDir bool
		stdout    *os.File
		noColor   bool
		want      string
		color     bool
		err       string
	}{
		{name: "terminal", stdout: tty, want: formatText, color: true},
		{name: "terminal NO_COLOR", stdout: tty, noColor: true, want: formatText},
		{name: "pipe", stdout: pw, want: formatJSON},
		{name: "pipe, text asked", flags: captureFlags{viewFlags: viewFlags{Format: "text"}}, stdout: pw, want: formatText},
		{name: "terminal, json asked", flags: captureFlags{viewFlags: viewFlags{Format: "json"}}, stdout: tty, want: formatJSON},
		{name: "--pretty is an alias", flags: captureFlags{Pretty: true}, stdout: tty, want: formatPretty},
		{name: "--pretty with --format pretty", flags: captureFlags{Pretty: true, viewFlags: viewFlags{Format: "pretty"}}, stdout: pw, want: formatPretty},
		{name: "--pretty with --format json", flags: captureFlags{Pretty: true, viewFlags: viewFlags{Format: "json"}}, stdout: pw, err: "--pretty is --format pretty"},
		{name: "output dir on a terminal", outputDir: true, stdout: tty, want: formatJSON},
		{name: "output dir with text", outputDir: true, flags: captureFlags{viewFlags: viewFlags{Format: "text"}}, stdout: pw, err: "cannot be used with --output-dir"},
		{name: "unknown format", flags: captureFlags{viewFlags: viewFlags{Format: "yaml"}}, stdout: pw, err: `--format "yaml": give json, text or pretty`},
		{name: "bad filter", flags: captureFlags{viewFlags: viewFlags{Status: []string{"6"}}}, stdout: pw, err: "--status"},
		{name: "summary file in a missing directory", flags: captureFlags{viewFlags: viewFlags{SummaryJSON: filepath.Join(t.TempDir(), "no", "s.json")}}, stdout: pw, err: "--summary-json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noColor {
				t.Setenv("NO_COLOR", "1")
			} else {
				t.Setenv("NO_COLOR", "")
				os.Unsetenv("NO_COLOR")
			}
			f := tc.flags
			err := f.prepare(tc.outputDir, tc.stdout)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.format != tc.want || f.color != tc.color {
				t.Errorf("format %q color %v, want %q %v", f.format, f.color, tc.want, tc.color)
			}
		})
	}
}

func TestSummaryFlagsMakeATable(t *testing.T) {
	for _, v := range []viewFlags{{Summary: true}, {SummaryEvery: 1e9}, {SummaryJSON: filepath.Join(t.TempDir(), "s.json")}} {
		f := captureFlags{viewFlags: v}
		if err := f.prepare(false, os.Stderr); err != nil {
			t.Fatal(err)
		}
		if f.table == nil {
			t.Errorf("%+v: no summary table", v)
		}
	}
	var f captureFlags
	if err := f.prepare(false, os.Stderr); err != nil || f.table != nil {
		t.Errorf("no summary flag: table %v, err %v", f.table, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSummaryEveryPrintsTheTableRepeatedlyAndWritesTheJSONFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "summary.json")
	f := captureFlags{viewFlags: viewFlags{SummaryEvery: 10 * time.Millisecond, SummaryJSON: file}}
	if err := f.prepare(false, os.Stderr); err != nil {
		t.Fatal(err)
	}
	f.table.Record(&output.Event{Container: output.Container{Name: "web"}, Response: output.Response{StatusCode: 200},
		Request: &output.Request{Method: "GET", URIPath: "/users/7"}, Latency: time.Millisecond, LatencyKnown: true})
	var stderr syncBuffer
	s := &session{stderr: &stderr}
	stop := s.summaryPrinter(&f.viewFlags)
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(stderr.String(), "boxtap: summary over") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	out := stderr.String()
	if strings.Count(out, "boxtap: summary over") < 2 || !strings.Contains(out, "/users/{id}") {
		t.Fatalf("want the table printed at least twice:\n%s", out)
	}
	raw, err := os.ReadFile(file)
	if err != nil || !json.Valid(raw) || !strings.Contains(string(raw), `"route": "/users/{id}"`) {
		t.Fatalf("--summary-json: %v\n%s", err, raw)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

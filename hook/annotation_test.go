package hook

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/output"
)

func TestParseAnnotation(t *testing.T) {
	tests := []struct {
		in      string
		want    Request
		wantErr string
	}{
		{"", Request{Trace: true}, ""},
		{"true", Request{Trace: true}, ""},
		{" On ", Request{Trace: true}, ""},
		{"false", Request{}, ""},
		{"0", Request{}, ""},
		{"output-dir=/var/log/boxtap/web", Request{Trace: true, OutputDir: "/var/log/boxtap/web"}, ""},
		{"output-dir=web, redact-header=X-Token,redact-header=X-Other", Request{Trace: true, OutputDir: "web", RedactHeaders: []string{"X-Token", "X-Other"}}, ""},
		{"output-dir", Request{}, "has no value"},
		{"output-dir=", Request{}, "has no value"},
		{"output-dir=a,output-dir=b", Request{}, "given twice"},
		{"colour=red", Request{}, "unknown option"},
		{"redact-header=X Y", Request{}, "not a header name"},
		{"maybe", Request{}, "has no value"},
		{"status=5xx,status=404,method=GET,path=/api/*,host=*.test,min-latency=100ms,direction=egress", Request{Trace: true, Filter: output.FilterSpec{
			Status: []string{"5xx", "404"}, Method: []string{"GET"}, Path: []string{"/api/*"}, Host: []string{"*.test"}, MinLatency: 100 * time.Millisecond, Direction: "egress"}}, ""},
		{"output-dir=web,status=5xx", Request{Trace: true, OutputDir: "web", Filter: output.FilterSpec{Status: []string{"5xx"}}}, ""},
		{"status=6xx1", Request{}, "--status"},
		{"min-latency=soon", Request{}, "min-latency"},
		{"direction=sideways", Request{}, "--direction"},
		{"path=/a/[", Request{}, "--path"},
	}
	for _, tt := range tests {
		got, err := ParseAnnotation(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseAnnotation(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseAnnotation(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestOutputDirWithin(t *testing.T) {
	tests := []struct {
		base, req, want string
		wantErr         bool
	}{
		{"/var/log/boxtap", "", "/var/log/boxtap", false},
		{"/var/log/boxtap/", "web", "/var/log/boxtap/web", false},
		{"/var/log/boxtap", "/var/log/boxtap/web/", "/var/log/boxtap/web", false},
		{"/var/log/boxtap", "/var/log/boxtap", "/var/log/boxtap", false},
		{"/var/log/boxtap", "../x", "", true},
		{"/var/log/boxtap", "/etc", "", true},
		{"/var/log/boxtap", "/var/log/boxtap2", "", true},
		{"/var/log/boxtap", "web/../../x", "", true},
		{"/var/log/boxtap", "a\x00b", "", true},
	}
	for _, tt := range tests {
		got, err := OutputDirWithin(tt.base, tt.req)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("OutputDirWithin(%q, %q) = %q, %v; want %q, error %v", tt.base, tt.req, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseAnnotation(f *testing.F) {
	for _, s := range []string{"", "true", "off", "output-dir=web", "output-dir=/var/log/boxtap/../../etc,redact-header=X", "a=b=c", ",,,"} {
		f.Add(s)
	}
	const base = "/var/log/boxtap"
	f.Fuzz(func(t *testing.T, in string) {
		req, err := ParseAnnotation(in)
		if err != nil {
			return
		}
		if !req.Trace && (req.OutputDir != "" || len(req.RedactHeaders) > 0) {
			t.Fatalf("options on a disabled request: %+v", req)
		}
		if strings.Contains(req.OutputDir, ",") {
			t.Fatalf("output dir %q spans options", req.OutputDir)
		}
		dir, err := OutputDirWithin(base, req.OutputDir)
		if err != nil {
			return
		}
		// Whatever the annotation says, the result stays inside base.
		rel, rerr := filepath.Rel(base, dir)
		if rerr != nil || rel == ".." || strings.HasPrefix(rel, "../") || !filepath.IsAbs(dir) {
			t.Fatalf("annotation %q escapes %s: %q", in, base, dir)
		}
	})
}

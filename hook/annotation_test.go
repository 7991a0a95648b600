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
	on, off := true, false
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
		{"output-dir=/var/log/boxtap/web", Request{}, "one name"},
		{"output-dir=../other-tenant", Request{}, "one name"},
		{"output-dir=web/../../etc", Request{}, "one name"},
		{"output-dir=by-name", Request{}, "one name"},
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
		{"tls=true", Request{Trace: true, TLS: &on}, ""},
		{"output-dir=web, tls=Off", Request{Trace: true, OutputDir: "web", TLS: &off}, ""},
		{"tls=maybe", Request{}, "not a boolean"},
		{"tls=true,tls=false", Request{}, "given twice"},
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

func FuzzParseAnnotation(f *testing.F) {
	for _, s := range []string{"", "true", "off", "output-dir=web", "output-dir=/var/log/boxtap/../../etc,redact-header=X", "a=b=c", ",,,"} {
		f.Add(s)
	}
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
		// Whatever the annotation says, the directory is one plain
		// element below the hook's --output-dir.
		if req.OutputDir != "" {
			const base = "/var/log/boxtap"
			if j := filepath.Join(base, req.OutputDir); filepath.Dir(j) != base || strings.HasPrefix(req.OutputDir, ".") {
				t.Fatalf("annotation %q escapes %s: %q", in, base, j)
			}
		}
	})
}

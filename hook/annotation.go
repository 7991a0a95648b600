package hook

import (
	"fmt"
	"strings"

	"github.com/boxtap/boxtap/output"
)

// Annotation is the container annotation that asks boxtap to trace a
// container (the gated hooks.d example matches on it).
//
// Its value is "true" (also "1", "yes", "on" or empty) to trace with the
// hook's settings, "false" (also "0", "no", "off") not to trace, or a
// comma-separated list of options, which implies tracing:
//
//	output-dir=NAME      write the container's file in the subdirectory NAME
//	                     of the hook's --output-dir (one path element), which
//	                     boxtap creates itself (output.Dir.Sub); in
//	                     Kubernetes a NAME belongs to the pod's namespace
//	redact-header=NAME   also redact this header (repeatable)
//	status=5xx           filters, as boxtap trace's flags of the same names:
//	method=GET           repeat a key for OR (status=5xx,status=404), give
//	path=/api/*          several keys for AND; exchanges that do not match
//	host=*.example.com   are not written
//	min-latency=100ms
//	direction=egress
//	tls=true             read HTTPS as plaintext (as the hook's --tls), or
//	                     tls=false not to, whatever the hook's --tls says
const Annotation = "io.boxtap.trace"

// Request is what a container's annotation asks for.
type Request struct {
	// Trace is false when the annotation turns tracing off.
	Trace bool
	// OutputDir is the subdirectory asked for, "" for the hook's
	// --output-dir itself.
	OutputDir string
	// RedactHeaders are extra headers to redact.
	RedactHeaders []string
	// Filter selects the exchanges written (empty: all).
	Filter output.FilterSpec
	// TLS is the tls= option: nil when absent (the hook's --tls decides).
	TLS *bool
}

// ParseAnnotation parses the value of the io.boxtap.trace annotation.
func ParseAnnotation(value string) (Request, error) {
	v := strings.TrimSpace(value)
	switch strings.ToLower(v) {
	case "", "true", "1", "yes", "on":
		return Request{Trace: true}, nil
	case "false", "0", "no", "off":
		return Request{}, nil
	}
	req := Request{Trace: true}
	for _, opt := range strings.Split(v, ",") {
		opt = strings.TrimSpace(opt)
		if opt == "" {
			continue
		}
		key, val, ok := strings.Cut(opt, "=")
		if !ok || val == "" {
			return Request{}, fmt.Errorf("annotation %s: option %q has no value; write key=value, e.g. output-dir=web", Annotation, opt)
		}
		switch strings.TrimSpace(key) {
		case "output-dir":
			if req.OutputDir != "" {
				return Request{}, fmt.Errorf("annotation %s: output-dir is given twice", Annotation)
			}
			req.OutputDir = strings.TrimSpace(val)
			if err := output.CheckSubdir(req.OutputDir); err != nil {
				return Request{}, fmt.Errorf("annotation %s: %w", Annotation, err)
			}
		case "redact-header":
			name := strings.TrimSpace(val)
			if strings.ContainsAny(name, " \t:\x00") {
				return Request{}, fmt.Errorf("annotation %s: redact-header %q is not a header name", Annotation, name)
			}
			req.RedactHeaders = append(req.RedactHeaders, name)
		case "tls":
			if req.TLS != nil {
				return Request{}, fmt.Errorf("annotation %s: tls is given twice", Annotation)
			}
			on, err := parseOnOff(strings.TrimSpace(val))
			if err != nil {
				return Request{}, fmt.Errorf("annotation %s: tls=%s: %w", Annotation, strings.TrimSpace(val), err)
			}
			req.TLS = &on
		default:
			if ok, err := req.Filter.Set(strings.TrimSpace(key), strings.TrimSpace(val)); ok || err != nil {
				if err != nil {
					return Request{}, fmt.Errorf("annotation %s: %w", Annotation, err)
				}
				continue
			}
			return Request{}, fmt.Errorf("annotation %s: unknown option %q; known: output-dir, redact-header, tls, status, method, path, host, min-latency, direction", Annotation, key)
		}
	}
	if _, err := output.NewFilter(req.Filter); err != nil {
		return Request{}, fmt.Errorf("annotation %s: %w", Annotation, err)
	}
	return req, nil
}

// parseOnOff reads a boolean option value.
func parseOnOff(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean; write true or false")
}

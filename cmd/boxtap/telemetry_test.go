package main

import "testing"

func TestOutputNoneNeedsSomethingToShowAndNoOutputDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  outputFlags
		cf   captureFlags
		ok   bool
	}{
		{"none alone", outputFlags{Output: "none"}, captureFlags{}, false},
		{"none with metrics", outputFlags{Output: "none"}, captureFlags{telemetryFlags: telemetryFlags{MetricsAddr: "127.0.0.1:9464"}}, true},
		{"none with spans", outputFlags{Output: "none"}, captureFlags{telemetryFlags: telemetryFlags{OTLPEndpoint: "http://127.0.0.1:4317"}}, true},
		{"none with summary", outputFlags{Output: "none"}, captureFlags{viewFlags: viewFlags{Summary: true}}, true},
		{"none with output dir", outputFlags{Output: "none", OutputDir: "/tmp/x"}, captureFlags{telemetryFlags: telemetryFlags{MetricsAddr: "127.0.0.1:9464"}}, false},
		{"stdout", outputFlags{Output: "stdout"}, captureFlags{}, true},
	} {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
		err := tc.out.checkNone(&tc.cf)
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/boxtap/boxtap/runtime/container"
)

func TestSelectorMatches(t *testing.T) {
	web := container.Info{Name: "web-1", Image: "docker.io/library/nginx:1.27", Labels: map[string]string{"team": "shop", "tier": "front"}}
	api := container.Info{Name: "api", Image: "reg.example:5000/acme/api@sha256:ab", Labels: map[string]string{"team": "core"}}
	for _, tc := range []struct {
		name                  string
		names, labels, images []string
		web, api              bool
	}{
		{"no selection", nil, nil, nil, true, true},
		{"name glob", []string{"web-*"}, nil, nil, true, false},
		{"names are alternatives", []string{"web-*", "api"}, nil, nil, true, true},
		{"short image glob", nil, nil, []string{"nginx*"}, true, false},
		{"full image glob crosses slashes", nil, nil, []string{"reg.example:5000/*"}, false, true},
		{"image glob across path", nil, nil, []string{"*/api@*"}, false, true},
		{"label value", nil, []string{"team=shop"}, nil, true, false},
		{"label presence", nil, []string{"team"}, nil, true, true},
		{"labels all must match", nil, []string{"team=shop", "tier=back"}, nil, false, false},
		{"different flags all match", []string{"web-*"}, []string{"team=core"}, nil, false, false},
		{"empty label value differs from presence", nil, []string{"team="}, nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSelector(tc.names, tc.labels, tc.images)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.match(web); got != tc.web {
				t.Errorf("web: %v, want %v", got, tc.web)
			}
			if got := s.match(api); got != tc.api {
				t.Errorf("api: %v, want %v", got, tc.api)
			}
		})
	}
}

func TestSelectorRejectsBadInput(t *testing.T) {
	for _, tc := range []struct{ names, labels, images []string }{
		{names: []string{"web-["}},
		{images: []string{"[a-"}},
		{labels: []string{"=value"}},
	} {
		if _, err := newSelector(tc.names, tc.labels, tc.images); err == nil {
			t.Errorf("%+v accepted", tc)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"4096", 4096, true},
		{"64K", 64 << 10, true},
		{"50M", 50 << 20, true},
		{"50mb", 50 << 20, true},
		{"1GiB", 1 << 30, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1T", 0, false},
		{"M", 0, false},
		{"99999999999999G", 0, false},
	} {
		var b byteSize
		err := b.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && int64(b) != tc.want) {
			t.Errorf("%q: %d, %v; want %d ok=%v", tc.in, b, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "e.g. 50M") {
			t.Errorf("%q: error does not show the format: %v", tc.in, err)
		}
	}
}

func TestOutputFlagsCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    outputFlags
		c    captureFlags
		ok   bool
	}{
		{"stdout", outputFlags{}, captureFlags{}, true},
		{"dir", outputFlags{OutputDir: "/x", MaxSize: 1 << 20, MaxFiles: 2}, captureFlags{}, true},
		{"max-size without dir", outputFlags{MaxSize: 10}, captureFlags{}, false},
		{"pretty with dir", outputFlags{OutputDir: "/x"}, captureFlags{Pretty: true}, false},
		{"negative max-files", outputFlags{OutputDir: "/x", MaxFiles: -1}, captureFlags{}, false},
	} {
		if err := tc.f.check(&tc.c); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestRuntimeFlagsNamespaces(t *testing.T) {
	f := runtimeFlags{Runtime: "auto"}
	if !f.wantDocker() || !f.wantContainerd() {
		t.Fatal("auto without --namespace must ask both runtimes")
	}
	f.Namespace = []string{"k8s.io"}
	if f.wantDocker() {
		t.Fatal("--namespace k8s.io must leave Docker (namespace moby) out")
	}
	f.Namespace = append(f.Namespace, "moby")
	if !f.wantDocker() {
		t.Fatal("--namespace moby must ask Docker")
	}
	f.Runtime = "docker"
	if f.wantContainerd() {
		t.Fatal("--runtime docker must not ask containerd")
	}
}

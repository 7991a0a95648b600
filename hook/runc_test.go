package hook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseRuncArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want RuncCall
	}{
		{"docker shim create", []string{"--root", "/var/run/docker/runtime-runc/moby", "--log", "/run/x/log.json", "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/run/b", "--pid-file", "/run/b/init.pid", "abc"}, RuncCall{Command: "create", Creates: true, Bundle: "/run/b"}},
		{"equals forms", []string{"--root=/r", "-log=/l", "create", "-b=/b1", "id"}, RuncCall{Command: "create", Creates: true, Bundle: "/b1"}},
		{"short bundle", []string{"create", "-b", "/b2", "id"}, RuncCall{Command: "create", Creates: true, Bundle: "/b2"}},
		{"bundle after id", []string{"create", "id", "--bundle", "/b3"}, RuncCall{Command: "create", Creates: true, Bundle: "/b3"}},
		{"default bundle", []string{"--debug", "run", "-d", "id"}, RuncCall{Command: "run", Creates: true}},
		{"pid-file value is not the bundle", []string{"create", "--pid-file", "--bundle", "id"}, RuncCall{Command: "create", Creates: true}},
		{"start", []string{"--root", "/r", "start", "id"}, RuncCall{Command: "start"}},
		{"delete named create", []string{"delete", "create"}, RuncCall{Command: "delete"}},
		{"root value named create", []string{"--root", "create", "state", "id"}, RuncCall{Command: "state"}},
		{"version", []string{"--version"}, RuncCall{}},
		{"empty", nil, RuncCall{}},
		{"double dash", []string{"--debug", "--", "create", "--bundle", "/b4", "id"}, RuncCall{Command: "create", Creates: true, Bundle: "/b4"}},
		{"flags after -- are args", []string{"create", "--", "--bundle", "/b5"}, RuncCall{Command: "create", Creates: true}},
		{"missing bundle value", []string{"create", "--bundle"}, RuncCall{Command: "create", Creates: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRuncArgs(tt.args); got != tt.want {
				t.Fatalf("ParseRuncArgs(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func FuzzParseRuncArgs(f *testing.F) {
	f.Add("--root\x00/r\x00create\x00--bundle\x00/b\x00id")
	f.Add("run\x00-b=/x\x00id")
	f.Add("--log\x00create\x00start")
	f.Add("--\x00create\x00-b\x00--")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		call := ParseRuncArgs(args)
		if call.Creates != (call.Command == "create" || call.Command == "run") {
			t.Fatalf("Creates=%v for command %q", call.Creates, call.Command)
		}
		if call.Command != "" && !slices.Contains(args, call.Command) {
			t.Fatalf("command %q is not an argument", call.Command)
		}
		if strings.HasPrefix(call.Command, "-") && call.Command != "-" && !slices.Contains(args, "--") {
			t.Fatalf("command %q is a flag", call.Command)
		}
		if call.Bundle != "" {
			if !call.Creates {
				t.Fatalf("bundle %q for command %q", call.Bundle, call.Command)
			}
			ok := false
			for _, a := range args {
				ok = ok || a == call.Bundle || strings.HasSuffix(a, "="+call.Bundle) && strings.HasPrefix(strings.TrimLeft(a, "-"), "b")
			}
			if !ok {
				t.Fatalf("bundle %q does not come from the arguments %q", call.Bundle, args)
			}
		}
	})
}

func testHooks() Hooks {
	limit := 10
	return Hooks{
		CreateRuntime: []specs.Hook{{Path: "/usr/local/bin/boxtap", Args: []string{"boxtap", "hook", "createRuntime"}, Timeout: &limit}},
		Poststop:      []specs.Hook{{Path: "/usr/local/bin/boxtap", Args: []string{"boxtap", "hook", "poststop"}}},
	}
}

func TestAddHooks(t *testing.T) {
	in := `{"ociVersion":"1.0.2","process":{"args":["/app"]},"x-future":{"keep":[1,2.50,"me"]},
		"hooks":{"createRuntime":[{"path":"/bin/other","unknownField":true}],"prestart":[{"path":"/bin/p"}]}}`
	out, changed, err := AddHooks([]byte(in), testHooks())
	if err != nil || !changed {
		t.Fatalf("AddHooks = %v, %v", changed, err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if string(got["x-future"]) != `{"keep":[1,2.50,"me"]}` {
		t.Errorf("unknown field changed: %s", got["x-future"])
	}
	var hooks struct {
		CreateRuntime []json.RawMessage `json:"createRuntime"`
		Prestart      []specs.Hook      `json:"prestart"`
		Poststop      []specs.Hook      `json:"poststop"`
	}
	if err := json.Unmarshal(got["hooks"], &hooks); err != nil {
		t.Fatal(err)
	}
	if len(hooks.CreateRuntime) != 2 || string(hooks.CreateRuntime[0]) != `{"path":"/bin/other","unknownField":true}` {
		t.Errorf("createRuntime = %s; want the existing hook first, unchanged, then boxtap's", hooks.CreateRuntime)
	}
	var ours specs.Hook
	if err := json.Unmarshal(hooks.CreateRuntime[1], &ours); err != nil || !sameHook(ours, testHooks().CreateRuntime[0]) || ours.Timeout == nil || *ours.Timeout != 10 {
		t.Errorf("boxtap's createRuntime hook = %s", hooks.CreateRuntime[1])
	}
	if len(hooks.Prestart) != 1 || len(hooks.Poststop) != 1 || hooks.Poststop[0].Args[2] != "poststop" {
		t.Errorf("prestart %+v, poststop %+v", hooks.Prestart, hooks.Poststop)
	}
	again, changed, err := AddHooks(out, testHooks())
	if err != nil || changed || string(again) != string(out) {
		t.Errorf("second AddHooks changed the config (%v, %v)", changed, err)
	}
}

func TestAddHooksErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `null`, `{"hooks":[]}`, `{"hooks":{"poststop":{}}}`, `{"hooks":{"createRuntime":[1]}}`} {
		if _, _, err := AddHooks([]byte(in), testHooks()); err == nil {
			t.Errorf("AddHooks(%q) succeeded, want error", in)
		}
	}
	if out, changed, err := AddHooks([]byte(`{"hooks":null}`), testHooks()); err != nil || !changed || !strings.Contains(string(out), "createRuntime") {
		t.Errorf("AddHooks with null hooks = %s, %v, %v", out, changed, err)
	}
}

func FuzzAddHooks(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","hooks":{"poststop":[{"path":"/x"}]}}`))
	f.Add([]byte(`{"hooks":null,"a":1}`))
	f.Add([]byte(`{"hooks":{"createRuntime":[{"path":"/usr/local/bin/boxtap","args":["boxtap","hook","createRuntime"]}]}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, changed, err := AddHooks(in, testHooks())
		if err != nil {
			return
		}
		var before, after map[string]json.RawMessage
		if json.Unmarshal(in, &before) != nil || json.Unmarshal(out, &after) != nil {
			t.Fatalf("accepted or produced a non-object: %q -> %q", in, out)
		}
		for k, v := range before {
			if k == "hooks" {
				continue
			}
			if a, ok := after[k]; !ok || !jsonEqual(t, a, v) {
				t.Fatalf("field %q changed: %s -> %s", k, v, a)
			}
		}
		var h struct{ CreateRuntime, Poststop []specs.Hook }
		if err := json.Unmarshal(after["hooks"], &h); err != nil {
			t.Fatalf("hooks unreadable after AddHooks: %v", err)
		}
		for _, want := range []struct {
			list []specs.Hook
			h    specs.Hook
		}{{h.CreateRuntime, testHooks().CreateRuntime[0]}, {h.Poststop, testHooks().Poststop[0]}} {
			if !slices.ContainsFunc(want.list, func(o specs.Hook) bool { return sameHook(o, want.h) }) {
				t.Fatalf("hook %v missing after AddHooks (changed=%v)", want.h.Args, changed)
			}
		}
		if _, again, err := AddHooks(out, testHooks()); err != nil || again {
			t.Fatalf("AddHooks is not idempotent: %v, %v", again, err)
		}
	})
}

func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestInstallHooks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := InstallHooks(dir, testHooks()); err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &spec); err != nil || spec.Root.Path != "rootfs" || spec.Hooks == nil || len(spec.Hooks.CreateRuntime) != 1 || len(spec.Hooks.Poststop) != 1 {
		t.Fatalf("config after InstallHooks: %s (%v)", data, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := InstallHooks(filepath.Join(dir, "missing"), testHooks()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("InstallHooks on a missing bundle: %v", err)
	}
}

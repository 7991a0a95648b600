package hook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RuncCall is what boxtap's runtime wrapper needs to know about one runc
// command line.
type RuncCall struct {
	// Command is runc's subcommand ("create", "start", "delete", ...), ""
	// when there is none (e.g. "runc --version").
	Command string
	// Creates is true for the commands that create a container: create
	// and run.
	Creates bool
	// Bundle is the --bundle/-b value of create or run; "" means the
	// working directory.
	Bundle string
}

// runc's global flags that take a value (runc 1.0 to 1.2). Any other flag
// before the command is a boolean (--debug, --systemd-cgroup, ...).
var runcGlobalValueFlags = []string{"log", "log-format", "root", "criu", "rootless"}

// Flags of "runc create" and "runc run" that take a value.
var runcCreateValueFlags = []string{"bundle", "b", "console-socket", "pid-file", "preserve-fds", "pidfd-socket"}

// ParseRuncArgs reads runc's argv (without argv[0]) the way runc's
// command-line library does: global flags come first ("-flag" and
// "--flag" alike, values either "=value" or the next argument), then the
// command, then its flags and arguments; "--" ends the flags.
func ParseRuncArgs(args []string) RuncCall {
	var call RuncCall
	i := skipFlags(args, 0, runcGlobalValueFlags)
	if i >= len(args) {
		return call
	}
	call.Command = args[i]
	if call.Command != "create" && call.Command != "run" {
		return call
	}
	call.Creates = true
	for j := i + 1; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			break
		}
		name, val, hasVal, isFlag := splitFlag(a)
		if !isFlag {
			continue // the container id, or a flag value consumed below
		}
		if !slices.Contains(runcCreateValueFlags, name) {
			continue
		}
		if !hasVal {
			if j+1 >= len(args) {
				break
			}
			j++
			val = args[j]
		}
		if name == "bundle" || name == "b" {
			call.Bundle = val
		}
	}
	return call
}

// skipFlags returns the index of the first argument at or after i that is
// not a flag or a flag's value.
func skipFlags(args []string, i int, valueFlags []string) int {
	for i < len(args) {
		a := args[i]
		if a == "--" {
			return i + 1
		}
		name, _, hasVal, isFlag := splitFlag(a)
		if !isFlag {
			return i
		}
		i++
		if !hasVal && slices.Contains(valueFlags, name) {
			i++ // the value
		}
	}
	return i
}

// splitFlag splits "-name", "--name", "-name=value" or "--name=value".
func splitFlag(a string) (name, val string, hasVal, isFlag bool) {
	if len(a) < 2 || a[0] != '-' || a == "--" {
		return "", "", false, false
	}
	s := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	if s == "" {
		return "", "", false, false
	}
	name, val, hasVal = strings.Cut(s, "=")
	return name, val, hasVal, true
}

// Hooks are the entries boxtap adds to a config.json.
type Hooks struct {
	CreateRuntime []specs.Hook
	Poststop      []specs.Hook
}

// AddHooks returns config (an OCI config.json) with hooks appended to its
// createRuntime and poststop lists. Every other field, known to this
// version of the runtime spec or not, is kept as it was. A hook equal to
// one already present (same path and args) is not added twice; changed is
// false when nothing was added.
func AddHooks(config []byte, hooks Hooks) (out []byte, changed bool, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(config, &top); err != nil {
		return nil, false, fmt.Errorf("config.json is not a JSON object: %w", err)
	}
	if top == nil {
		return nil, false, fmt.Errorf("config.json is null, not an OCI config")
	}
	stages := map[string]json.RawMessage{}
	if raw, ok := top["hooks"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &stages); err != nil {
			return nil, false, fmt.Errorf("config.json: hooks is not an object: %w", err)
		}
	}
	for _, add := range []struct {
		stage string
		hooks []specs.Hook
	}{{StageCreateRuntime, hooks.CreateRuntime}, {StagePoststop, hooks.Poststop}} {
		if len(add.hooks) == 0 {
			continue
		}
		var list []json.RawMessage
		var have []specs.Hook
		if raw, ok := stages[add.stage]; ok && !isNull(raw) {
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, false, fmt.Errorf("config.json: hooks.%s is not a list: %w", add.stage, err)
			}
			if err := json.Unmarshal(raw, &have); err != nil {
				return nil, false, fmt.Errorf("config.json: hooks.%s: %w", add.stage, err)
			}
		}
		stageChanged := false
		for _, h := range add.hooks {
			if slices.ContainsFunc(have, func(o specs.Hook) bool { return sameHook(o, h) }) {
				continue
			}
			enc, err := json.Marshal(h)
			if err != nil {
				return nil, false, fmt.Errorf("encoding hook: %w", err)
			}
			list = append(list, enc)
			have = append(have, h)
			stageChanged = true
		}
		if !stageChanged {
			continue
		}
		enc, err := json.Marshal(list)
		if err != nil {
			return nil, false, fmt.Errorf("encoding hooks.%s: %w", add.stage, err)
		}
		stages[add.stage] = enc
		changed = true
	}
	if !changed {
		return config, false, nil
	}
	enc, err := json.Marshal(stages)
	if err != nil {
		return nil, false, fmt.Errorf("encoding hooks: %w", err)
	}
	top["hooks"] = enc
	out, err = json.Marshal(top)
	if err != nil {
		return nil, false, fmt.Errorf("encoding config.json: %w", err)
	}
	return out, true, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func sameHook(a, b specs.Hook) bool { return a.Path == b.Path && slices.Equal(a.Args, b.Args) }

// InstallHooks adds hooks to <bundle>/config.json in place. The file is
// replaced atomically (a new file renamed over it) and keeps its mode.
func InstallHooks(bundle string, hooks Hooks) error {
	path := filepath.Join(bundle, "config.json")
	data, err := readConfig(bundle)
	if err != nil {
		return err
	}
	out, changed, err := AddHooks(data, hooks)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !changed {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("adding boxtap's hooks: %w", err)
	}
	tmp, err := os.CreateTemp(bundle, ".config.json.boxtap-*")
	if err != nil {
		return fmt.Errorf("adding boxtap's hooks to %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return fmt.Errorf("adding boxtap's hooks to %s: %w", path, err)
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return fmt.Errorf("adding boxtap's hooks to %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("adding boxtap's hooks to %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("adding boxtap's hooks to %s: %w", path, err)
	}
	return nil
}

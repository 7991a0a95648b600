package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/boxtap/boxtap/hook"
	"github.com/boxtap/boxtap/internal/display"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runcCmd is an OCI runtime wrapper: "boxtap runc [boxtap options] [--]
// <runc arguments>". Its options come first and are parsed here, because
// everything else on the command line is runc's.
type runcCmd struct {
	Args []string `arg:"" optional:"" help:"boxtap's options (--runtime-path, and the hook options --output-dir, --run-dir, --timeout, --fail-closed, --require-annotation, --ring-size, --redact-header, --memory-budget, --max-size, --max-files, --tls), then runc's arguments."`
}

func (runcCmd) Help() string {
	return `An OCI runtime that Docker (or anything that runs runc) can use instead of
runc. On "create" and "run" it adds boxtap's createRuntime and poststop hooks
to the bundle's config.json, then runs the real runc with the same arguments;
every other command goes straight to runc. Register it in
/etc/docker/daemon.json:

  {"runtimes": {"boxtap": {"path": "/usr/local/bin/boxtap",
                           "runtimeArgs": ["runc", "--output-dir=/var/log/boxtap"]}}}

then "docker run --runtime boxtap ..." traces that container from its first
packet. --runtime-path names the real runc (default: runc from PATH).`
}

// runcOptions are the wrapper's own options.
type runcOptions struct {
	runtimePath string
	hookSettings
}

// defaultRuncOptions matches the defaults of "boxtap hook".
func defaultRuncOptions() runcOptions {
	return runcOptions{hookSettings: hookSettings{
		OutputDir:    "/var/log/boxtap",
		RunDir:       "/run/boxtap",
		Timeout:      5 * time.Second,
		RingSize:     "2MiB",
		MemoryBudget: defaultMemoryBudget,
		MaxFiles:     5,
		// The hooks this wrapper adds run for Docker's containers only.
		Runtime: hook.RuntimeDocker,
	}}
}

// parseRuncOptions takes boxtap's options from the front of args and
// returns the rest (runc's arguments). It stops at "--" or at the first
// argument that is not one of boxtap's options; none of them is also a
// runc global flag.
func parseRuncOptions(args []string) (runcOptions, []string, error) {
	o := defaultRuncOptions()
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			return o, args[1:], nil
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") {
			break
		}
		takesValue := true
		switch name {
		case "fail-closed", "require-annotation", "tls":
			takesValue = false
		case "runtime-path", "output-dir", "run-dir", "timeout", "ring-size", "redact-header", "max-size", "max-files", "memory-budget":
		default:
			return o, args, nil // runc's from here
		}
		args = args[1:]
		if takesValue && !hasVal {
			if len(args) == 0 {
				return o, nil, fmt.Errorf("boxtap runc: --%s needs a value", name)
			}
			val, args = args[0], args[1:]
		}
		var err error
		switch name {
		case "fail-closed":
			o.FailClosed = true
		case "require-annotation":
			o.RequireAnnotation = true
		case "tls":
			o.TLS = true
		case "runtime-path":
			o.runtimePath = val
		case "output-dir":
			o.OutputDir = val
		case "run-dir":
			o.RunDir = val
		case "timeout":
			o.Timeout, err = time.ParseDuration(val)
			if err == nil && o.Timeout <= 0 {
				err = fmt.Errorf("must be positive")
			}
		case "ring-size":
			o.RingSize = val
			_, err = parseRingSize(val)
		case "redact-header":
			o.RedactHeader = append(o.RedactHeader, val)
		case "memory-budget":
			o.MemoryBudget = val
			_, err = parseMemoryBudget(val)
		case "max-size":
			err = o.MaxSize.UnmarshalText([]byte(val))
		case "max-files":
			o.MaxFiles, err = strconv.Atoi(val)
			if err == nil && o.MaxFiles < 0 {
				err = fmt.Errorf("must be 0 or more")
			}
		}
		if err != nil {
			return o, nil, fmt.Errorf("boxtap runc: --%s %q: %v", name, val, err)
		}
	}
	return o, args, nil
}

// runcHooks are the hooks the wrapper adds for the boxtap binary at self.
func runcHooks(self string, s *hookSettings) hook.Hooks {
	// The runtime's own limit on a hook, well above boxtap's --timeout.
	limit := int((s.Timeout+time.Second-1)/time.Second) + 5
	mk := func(stage string) specs.Hook {
		return specs.Hook{Path: self, Args: append([]string{"boxtap", "hook", stage}, s.args()...), Timeout: &limit}
	}
	return hook.Hooks{
		CreateRuntime: []specs.Hook{mk(hook.StageCreateRuntime)},
		Poststop:      []specs.Hook{mk(hook.StagePoststop)},
	}
}

func (c *runcCmd) Run(ctx context.Context) error {
	o, runcArgs, err := parseRuncOptions(c.Args)
	if err != nil {
		return err
	}
	runtime, err := findRuntime(o.runtimePath)
	if err != nil {
		return err
	}
	if call := hook.ParseRuncArgs(runcArgs); call.Creates {
		if err := addHooksToBundle(call.Bundle, &o.hookSettings); err != nil {
			lg := newHookLogger(o.OutputDir, "runc", hookGuard(o.Timeout)/4)
			lg.Errorf("%v", err)
			lg.Close()
			if o.FailClosed {
				return &exitError{code: 1}
			}
		}
	}
	argv := append([]string{"runc"}, runcArgs...)
	if err := syscall.Exec(runtime, argv, os.Environ()); err != nil {
		return fmt.Errorf("running %s: %w", runtime, err)
	}
	return nil
}

// addHooksToBundle adds boxtap's hooks to the config.json of bundle (""
// meaning the working directory, as for runc).
func addHooksToBundle(bundle string, s *hookSettings) error {
	if bundle == "" {
		bundle = "."
	}
	abs, err := filepath.Abs(bundle)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", display.Quote(bundle), err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding boxtap's own executable for the hooks: %w", err)
	}
	return hook.InstallHooks(abs, runcHooks(self, s))
}

// findRuntime returns the real runc: path if given, else "runc" from PATH,
// which must not be this very program.
func findRuntime(path string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("boxtap runc: --runtime-path: %w", err)
		}
		return path, nil
	}
	found, err := exec.LookPath("runc")
	if err != nil {
		return "", fmt.Errorf("boxtap runc: runc is not on PATH; install runc or pass --runtime-path=/usr/sbin/runc")
	}
	self, serr := os.Executable()
	a, aerr := os.Stat(found)
	b, berr := os.Stat(self)
	if serr == nil && aerr == nil && berr == nil && os.SameFile(a, b) {
		return "", fmt.Errorf("boxtap runc: runc on PATH (%s) is boxtap itself; pass --runtime-path with the real runc", found)
	}
	return found, nil
}

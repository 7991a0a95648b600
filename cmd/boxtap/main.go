// Command boxtap shows every HTTP response a container sends or receives,
// as Tracee-compatible JSON, by attaching eBPF programs to that container's
// cgroup only.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type cli struct {
	Trace   traceCmd   `cmd:"" help:"Trace running containers and print one JSON event per HTTP response."`
	Watch   watchCmd   `cmd:"" help:"Trace every running container and every container that starts later, until stopped."`
	Demo    demoCmd    `cmd:"" help:"Show boxtap working without Docker: trace a small HTTP server and client in a cgroup of their own."`
	Version versionCmd `cmd:"" help:"Print the version and the kernel features boxtap relies on."`
	Hook    hookCmd    `cmd:"" help:"OCI runtime hook: trace one container from its first packet to its last (createRuntime/prestart/poststop)."`
	Runc    runcCmd    `cmd:"" passthrough:"" help:"OCI runtime wrapper for Docker (--runtime boxtap): adds boxtap's hooks on create, then runs runc."`

	DemoApp    demoAppCmd    `cmd:"" name:"demo-app" hidden:"" help:"Internal: the demo's server and client."`
	HookTracer hookTracerCmd `cmd:"" name:"hook-tracer" hidden:"" help:"Internal: the per-container tracer started by boxtap hook."`
	HookHost   hookHostCmd   `cmd:"" name:"hook-host" hidden:"" help:"Internal: the host tracer started by boxtap hook --tracer=host."`
}

const description = `boxtap attaches eBPF programs to the cgroup of each container you name and
prints one JSON event per HTTP/1.x response that the container sends (servers
inside it) or receives (clients inside it). Events follow Tracee's
net_packet_http_response schema (event 2011). Nothing is installed in the
container and nothing is restarted. Run it as root (or with CAP_BPF,
CAP_PERFMON and CAP_NET_ADMIN) on Linux 6.3+ with BTF and cgroup v2.`

func kongOptions() []kong.Option {
	return []kong.Option{
		kong.Name("boxtap"),
		kong.Description(description),
		kong.ShortUsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	}
}

func main() {
	if isHookRun(os.Args) {
		// Bounded and fail-open from here on, bad flags included.
		os.Exit(hookMain(os.Args[1:]))
	}
	var c cli
	k := kong.Parse(&c, kongOptions()...)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	k.BindTo(ctx, (*context.Context)(nil))
	err := k.Run()
	stop()
	if err != nil {
		var ex *exitError
		if errors.As(err, &ex) {
			os.Exit(ex.code)
		}
		fmt.Fprintln(os.Stderr, "boxtap:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a code after its message was printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

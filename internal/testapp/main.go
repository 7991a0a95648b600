// Command testapp is the one static binary that boxtap's integration tests run inside test
// containers and on the host. It is a small HTTP server and client plus a raw-TCP "script"
// peer that writes exact segments, so that tests can force specific packet boundaries.
//
// Subcommands:
//
//	serve         -addr :PORT [-addr6 [::1]:PORT]   net/http server (routes: see serve.go)
//	get           -url URL [-n N] [-keepalive] [-interval D] [-wait-signal]
//	script-serve  -addr :PORT -script JSON [-loop]  raw TCP server running a script per connection
//	script-client -addr HOST:PORT -script JSON [-dump]
//	serve-h2c     -addr :PORT                       net/http + h2c server (routes: see h2c.go)
//	grpc-serve    -addr :PORT                       grpc-go server with the health service
//	sleep                                           block until SIGTERM or SIGINT
//
// Every long-running subcommand stops cleanly on SIGTERM/SIGINT, which matters because it
// usually runs as PID 1 of a container.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: testapp <command> [flags]

commands:
  serve          HTTP server (-addr, -addr6)
  get            HTTP client (-url, -n, -keepalive, -interval, -wait-signal)
  script-serve   raw TCP server running a JSON script per connection (-addr, -script, -loop)
  script-client  raw TCP client running a JSON script (-addr, -script, -dump)
  serve-h2c      HTTP/2 cleartext server, prior knowledge and Upgrade: h2c (-addr)
  grpc-serve     gRPC server with the health service (-addr)
  sleep          sleep until SIGTERM
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "testapp: %v\n", err)
		}
		os.Exit(2)
	}
}

// run dispatches one subcommand; it returns when the command is done or ctx is cancelled.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCmd(ctx, rest, stdout, stderr)
	case "get":
		return getCmd(ctx, rest, stdout, stderr)
	case "script-serve":
		return scriptServeCmd(ctx, rest, stdout, stderr)
	case "script-client":
		return scriptClientCmd(ctx, rest, stdout, stderr)
	case "serve-h2c":
		return serveH2CCmd(ctx, rest, stdout, stderr)
	case "grpc-serve":
		return grpcServeCmd(ctx, rest, stdout, stderr)
	case "sleep":
		fmt.Fprintln(stdout, "sleeping")
		<-ctx.Done()
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// newFlagSet returns a FlagSet that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

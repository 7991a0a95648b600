package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// scriptServeCmd accepts connections and runs the script on each. Without -loop it serves one
// connection and exits; with -loop it serves every connection concurrently until stopped.
// It prints "listening on ADDR" when ready and, per finished connection, "sent REMOTE: D data
// segments, R retransmitted" (from TCP_INFO, read before the connection closes) and "done
// REMOTE received N".
func scriptServeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("script-serve", stderr)
	addr := fs.String("addr", ":8080", "listen address (host:port)")
	scriptArg := fs.String("script", "", "JSON script run on each accepted connection, or @FILE")
	loop := fs.Bool("loop", false, "serve every connection (default: serve one, then exit)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long a read may wait for the peer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	steps, err := scriptFromFlag(*scriptArg)
	if err != nil {
		return fmt.Errorf("script-serve: %w", err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("script-serve: listen on %s: %w", *addr, err)
	}
	stopAccept := context.AfterFunc(ctx, func() { l.Close() })
	defer stopAccept()
	defer l.Close()

	var out sync.Mutex // serialises lines from concurrent connections
	logf := func(w io.Writer, format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(w, format, a...)
	}
	logf(stdout, "listening on %s\n", l.Addr())

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("script-serve: accept: %w", err)
		}
		handle := func() error {
			r := &scriptRun{conn: conn, readTimeout: *timeout}
			defer conn.Close()
			if err := setNoDelay(conn); err != nil {
				return err
			}
			err := r.run(ctx, steps)
			if !r.closed {
				r.noteSent()
			}
			if r.sentErr == nil {
				logf(stdout, "sent %s: %s\n", conn.RemoteAddr(), r.sent)
			}
			logf(stdout, "done %s received %d\n", conn.RemoteAddr(), r.total)
			return err
		}
		if !*loop {
			if err := handle(); err != nil {
				return fmt.Errorf("script-serve: connection from %s: %w", conn.RemoteAddr(), err)
			}
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := handle(); err != nil {
				logf(stderr, "script-serve: connection from %s: %v\n", conn.RemoteAddr(), err)
			}
		}()
	}
}

// scriptClientCmd dials once, runs the script, and prints "received N" (or, with -dump, the
// received bytes themselves); on stderr it says what the kernel sent, as script-serve does.
func scriptClientCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("script-client", stderr)
	addr := fs.String("addr", "", "server address host:port, e.g. 127.0.0.1:8080 or [::1]:8080")
	scriptArg := fs.String("script", "", "JSON script, or @FILE")
	dump := fs.Bool("dump", false, "write the received bytes to stdout instead of their count")
	timeout := fs.Duration("timeout", 30*time.Second, "dial timeout, and how long a read may wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("script-client: -addr is required")
	}
	steps, err := scriptFromFlag(*scriptArg)
	if err != nil {
		return fmt.Errorf("script-client: %w", err)
	}
	// Install the SIGUSR1 handler before anything else, so a signal can never arrive unhandled.
	var sigs chan os.Signal
	if steps.hasStep(stepWaitSignal) {
		sigs = make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGUSR1)
		defer signal.Stop(sigs)
	}
	dialer := net.Dialer{Timeout: *timeout}
	conn, err := dialer.DialContext(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("script-client: dial %s: %w", *addr, err)
	}
	defer conn.Close()
	if err := setNoDelay(conn); err != nil {
		return fmt.Errorf("script-client: %w", err)
	}
	r := &scriptRun{conn: conn, readTimeout: *timeout, keep: *dump, signals: sigs, notes: stderr}
	runErr := r.run(ctx, steps)
	if !r.closed {
		r.noteSent()
	}
	if r.sentErr == nil {
		fmt.Fprintf(stderr, "sent %s: %s\n", conn.RemoteAddr(), r.sent)
	}
	if *dump {
		stdout.Write(r.received)
	} else {
		fmt.Fprintf(stdout, "received %d\n", r.total)
	}
	if runErr != nil {
		return fmt.Errorf("script-client: %w", runErr)
	}
	return nil
}

func scriptFromFlag(arg string) (script, error) {
	raw, err := loadScriptArg(arg, os.ReadFile)
	if err != nil {
		return nil, err
	}
	return parseScript(raw)
}

func setNoDelay(conn net.Conn) error {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tc.SetNoDelay(true); err != nil {
		return fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	return nil
}

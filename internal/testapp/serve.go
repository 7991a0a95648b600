package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Limits keep a typo in a test from asking the server for terabytes.
const (
	maxBodyBytes   = 1 << 32
	maxHeaderBytes = 1 << 20
	chunkSize      = 1024
)

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	addr := fs.String("addr", ":8080", "listen address (host:port)")
	addr6 := fs.String("addr6", "", "optional second listen address, e.g. [::1]:8080")
	count := fs.Bool("count", false, `count flushed responses and connections; print "served N responses on M connections (B begun)" on SIGTERM`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	addrs := []string{*addr}
	if *addr6 != "" {
		addrs = append(addrs, *addr6)
	}
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("serve: listen on %s: %w", a, err)
		}
		listeners = append(listeners, l)
	}
	srv := &http.Server{Handler: newHandler(), ReadHeaderTimeout: 30 * time.Second}
	var counter *serveCounter
	if *count {
		counter = &serveCounter{}
		srv.Handler = counter.wrap(srv.Handler)
		srv.ConnState = counter.connState
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func(l net.Listener) { errc <- srv.Serve(l) }(l)
	}
	bound := make([]string, len(listeners))
	for i, l := range listeners {
		bound[i] = l.Addr().String()
	}
	fmt.Fprintf(stdout, "listening on %s\n", strings.Join(bound, " "))

	select {
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("serve: shutdown: %w", err)
		}
		if counter != nil {
			counter.report(stdout)
		}
		return nil
	case err := <-errc:
		closeAll()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	}
}

// newHandler returns the test server's routes:
//
//	/status/{code}  reply with that status (200..599) and a short body; no body for 204 and 304
//	/bytes/{n}      n body bytes with Content-Length
//	/chunked/{n}    n body bytes, chunked, flushed every 1 KiB
//	/headers/{n}    about n bytes of X-Pad-NNN response headers, short body
//	/echo           body "METHOD REQUEST-URI\n"
//	/sleep/{d}      wait d (a Go duration up to 10s, e.g. 30ms) before answering "slept d\n";
//	                the path segment is not a number, so boxtap's summary keeps one route per d
//	/               "ok\n"
func newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/status/{code}", handleStatus)
	mux.HandleFunc("/bytes/{n}", handleBytes)
	mux.HandleFunc("/chunked/{n}", handleChunked)
	mux.HandleFunc("/headers/{n}", handleHeaders)
	mux.HandleFunc("/sleep/{d}", handleSleep)
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s\n", r.Method, r.URL.RequestURI())
	})
	return mux
}

// pathInt parses the named path value as an integer in [min, max], writing a 400 on error.
func pathInt(w http.ResponseWriter, r *http.Request, name string, min, max int64) (int64, bool) {
	raw := r.PathValue(name)
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < min || v > max {
		http.Error(w, fmt.Sprintf("%s must be an integer in [%d, %d], got %q", name, min, max, raw), http.StatusBadRequest)
		return 0, false
	}
	return v, true
}

// handleSleep answers after the requested time: tests control latencies
// with it. The request's context ends the wait early when the client leaves.
func handleSleep(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.PathValue("d"))
	if err != nil || d < 0 || d > 10*time.Second {
		http.Error(w, fmt.Sprintf("d must be a duration in [0, 10s], got %q", r.PathValue("d")), http.StatusBadRequest)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	fmt.Fprintf(w, "slept %s\n", d)
}

func handleStatus(w http.ResponseWriter, r *http.Request) {
	code, ok := pathInt(w, r, "code", 200, 599)
	if !ok {
		return
	}
	if code == http.StatusNoContent || code == http.StatusNotModified {
		w.WriteHeader(int(code))
		return
	}
	body := fmt.Sprintf("status %d\n", code)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(int(code))
	io.WriteString(w, body)
}

// fillPattern is the repeating body content: printable, so dumps stay readable; 64 bytes, so
// bodies written in 1 KiB or 32 KiB pieces continue the pattern seamlessly.
const fillPattern = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"

// fill returns n bytes of fillPattern.
func fill(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = fillPattern[i%len(fillPattern)]
	}
	return b
}

func handleBytes(w http.ResponseWriter, r *http.Request) {
	n, ok := pathInt(w, r, "n", 0, maxBodyBytes)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	buf := fill(32 * 1024)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		n -= k
	}
}

func handleChunked(w http.ResponseWriter, r *http.Request) {
	n, ok := pathInt(w, r, "n", 0, maxBodyBytes)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	buf := fill(chunkSize)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		n -= k
	}
}

func handleHeaders(w http.ResponseWriter, r *http.Request) {
	n, ok := pathInt(w, r, "n", 0, maxHeaderBytes)
	if !ok {
		return
	}
	for i, pad := range padHeaders(int(n)) {
		w.Header().Set(fmt.Sprintf("X-Pad-%03d", i+1), pad)
	}
	io.WriteString(w, "headers\n")
}

// padHeaders returns header values such that the lines "X-Pad-NNN: value\r\n" (NNN = index+1,
// at least three digits) add up to exactly n bytes when n >= 14, or one minimal line otherwise.
func padHeaders(n int) []string {
	const maxValue = 200
	var values []string
	for remaining := n; remaining > 0; {
		overhead := len(fmt.Sprintf("X-Pad-%03d: \r\n", len(values)+1))
		nextOverhead := len(fmt.Sprintf("X-Pad-%03d: \r\n", len(values)+2))
		var v int
		switch {
		case remaining <= overhead+maxValue:
			v = max(remaining-overhead, 1) // last line (overshoots only when n is tiny)
		case remaining-overhead-maxValue <= nextOverhead:
			v = remaining - overhead - (nextOverhead + 1) // leave room for one more full line
		default:
			v = maxValue
		}
		values = append(values, strings.Repeat("p", v))
		remaining -= overhead + v
	}
	return values
}

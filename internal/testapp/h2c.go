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

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// h2cMux serves the HTTP/2 routes: each one makes the server put a
// particular frame sequence on the wire.
func h2cMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/h2/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	m.HandleFunc("/h2/echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	// RST_STREAM before any response HEADERS.
	m.HandleFunc("/h2/reset", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	m.HandleFunc("/h2/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
	})
	// A response header block larger than one frame: HEADERS + CONTINUATION.
	m.HandleFunc("/h2/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("b", 40000))
		io.WriteString(w, "big\n")
	})
	// An interim 103 before the final response.
	m.HandleFunc("/h2/early", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "early\n")
	})
	return m
}

// serveH2CCmd runs net/http with h2c: prior-knowledge HTTP/2 and the
// Upgrade: h2c route, HTTP/1.1 otherwise.
func serveH2CCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve-h2c", stderr)
	addr := fs.String("addr", ":8080", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	h2s := &http2.Server{MaxConcurrentStreams: 250}
	srv := &http.Server{Handler: h2c.NewHandler(h2cMux(), h2s), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	return serveUntilDone(ctx, func() error { return srv.Serve(ln) }, func(c context.Context) error { return srv.Shutdown(c) })
}

// grpcServeCmd runs a grpc-go server with the standard health service:
// Check (unary) answers SERVING for "" and "app" and NOT_FOUND otherwise;
// Watch (server streaming) sends the status, then "app" turns NOT_SERVING
// and the stream fails with "fail-stream" as the service.
func grpcServeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("grpc-serve", stderr)
	addr := fs.String("addr", ":50051", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("app", grpc_health_v1.HealthCheckResponse_SERVING)
	srv := grpc.NewServer(grpc.StreamInterceptor(failStream))
	grpc_health_v1.RegisterHealthServer(srv, hs)
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	return serveUntilDone(ctx, func() error { return srv.Serve(ln) }, func(context.Context) error { srv.Stop(); return nil })
}

// failStream makes a Watch of the service "fail-stream" send one message
// and then fail with UNAVAILABLE: a server stream whose trailers carry an error.
func failStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != "/grpc.health.v1.Health/Watch" {
		return h(srv, ss)
	}
	var req grpc_health_v1.HealthCheckRequest
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	if req.GetService() != "fail-stream" {
		return h(srv, &replayStream{ServerStream: ss, req: &req})
	}
	if err := ss.SendMsg(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "stream failed on purpose")
}

// replayStream hands the handler the request the interceptor already read.
type replayStream struct {
	grpc.ServerStream
	req *grpc_health_v1.HealthCheckRequest
}

func (s *replayStream) RecvMsg(m any) error {
	if s.req == nil {
		return s.ServerStream.RecvMsg(m)
	}
	m.(*grpc_health_v1.HealthCheckRequest).Service = s.req.GetService()
	s.req = nil
	return nil
}

// serveUntilDone runs serve until ctx ends, then stops it.
func serveUntilDone(ctx context.Context, serve func() error, stop func(context.Context) error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

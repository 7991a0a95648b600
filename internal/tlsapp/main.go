// Command tlsapp is the Go crypto/tls peer of boxtap's HTTPS tests: the
// tests build it static and stripped (-ldflags='-s -w'), as Go services
// ship, and run it in a container or on the host.
//
//	tlsapp serve -addr 127.0.0.1:PORT [-h2]
//	                                     HTTPS server (self-signed), HTTP/1.1 only
//	                                     (-h2: also HTTP/2, by ALPN)
//	tlsapp get -url URL -n N [-wait-signal]
//	                                     N GETs on one keep-alive connection
//	                                     (after SIGUSR1 with -wait-signal)
//
// serve answers every request with 201, the header X-Boxtap-Tls: "go PATH"
// and a short body. get prints "local port P" once connected, then
// "done N". Both stop on SIGTERM/SIGINT.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tlsapp: %v\n", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: tlsapp serve -addr ADDR | get -url URL -n N")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "get":
		return get(ctx, args[1:])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// selfSigned is a fresh certificate for 127.0.0.1 and ::1.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "boxtap-tlsapp"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8443", "listen address")
	h2 := fs.Bool("h2", false, "offer HTTP/2 by ALPN (net/http's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Boxtap-Tls", "go "+r.URL.Path)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "created over go tls: %s\n", r.URL.Path)
		}),
		// HTTP/1.1 only: an empty TLSNextProto turns ALPN's h2 off.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	if *h2 {
		srv.TLSNextProto = nil // net/http's own HTTP/2
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func get(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	url := fs.String("url", "", "https URL; request i gets the path URL/i")
	n := fs.Int("n", 1, "requests on one connection")
	waitSignal := fs.Bool("wait-signal", false, "print \"waiting\", then start on SIGUSR1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *waitSignal {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		fmt.Println("waiting")
		select {
		case <-usr1:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 1,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			conns++
			fmt.Printf("local port %d\n", info.Conn.LocalAddr().(*net.TCPAddr).Port)
		}
	}}
	for i := 0; i < *n; i++ { // no range over int: tests build this with Go 1.18
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, fmt.Sprintf("%s/%d", *url, i), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("GET %s: status %d", req.URL, resp.StatusCode)
		}
	}
	if conns != 1 {
		return fmt.Errorf("%d connections for %d requests; want one kept alive", conns, *n)
	}
	fmt.Printf("done %d\n", *n)
	return nil
}

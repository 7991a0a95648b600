package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// serveCounter counts what `serve -count` did: responses that reached the socket and
// connections accepted. Soak tests compare the count with a tracer's events.
type serveCounter struct {
	responses   atomic.Uint64
	connections atomic.Uint64
}

// wrap returns h counting each response after flushing it to the connection. Only a
// response whose flush succeeded is counted: one the peer never got (it had reset the
// connection) is not. The explicit flush makes a handler that set no Content-Length
// answer with chunked encoding; the routes /status/{code} and /bytes/{n} set it.
func (c *serveCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if err := http.NewResponseController(w).Flush(); err == nil {
			c.responses.Add(1)
		}
	})
}

// connState counts new connections (for http.Server.ConnState).
func (c *serveCounter) connState(_ net.Conn, state http.ConnState) {
	if state == http.StateNew {
		c.connections.Add(1)
	}
}

// report prints the totals in the form tests parse.
func (c *serveCounter) report(w io.Writer) {
	fmt.Fprintf(w, "served %d responses on %d connections\n", c.responses.Load(), c.connections.Load())
}

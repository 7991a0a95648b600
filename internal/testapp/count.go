package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// serveCounter counts what `serve -count` did: responses begun, responses that reached
// the socket, and connections accepted. Soak tests compare the counts with a tracer's
// events.
type serveCounter struct {
	begun       atomic.Uint64
	responses   atomic.Uint64
	connections atomic.Uint64
}

// wrap returns h counting each response after flushing it to the connection. Only a
// response whose flush succeeded is counted: one the peer never got (it had reset the
// connection) is not. The explicit flush makes a handler that set no Content-Length
// answer with chunked encoding; the routes /status/{code} and /bytes/{n} set it.
//
// A response is counted as begun before its handler runs. A large response whose peer
// goes away mid-body has put its header on the wire but fails its flush: it is begun
// and not counted, so the responses a tracer could see lie between the two counts.
func (c *serveCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.begun.Add(1)
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
	fmt.Fprintf(w, "served %d responses on %d connections (%d begun)\n", c.responses.Load(), c.connections.Load(), c.begun.Load())
}

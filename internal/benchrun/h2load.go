package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The h2c cases load an nginx container's HTTP/2 cleartext port (prior
// knowledge) with h2load, from Debian's nghttp2-client: each client keeps
// h2Streams requests in flight on its one connection, so the frames of
// several streams share segments and boxtap's HTTP/2 parser demultiplexes
// them. Every response is one event.
//
// A timed h2load run (-D) stops with up to clients x streams requests in
// flight: nginx has read and counted them, but their connections close
// before any response, so boxtap rightly has no event for them (a first
// version of this row showed 0.98-0.99 "completeness" that way). The
// measured rounds therefore send a fixed number of requests (-n), every one
// answered, sized from the warm-up's rate to last about BENCH_SECONDS.

// h2Streams is h2load's concurrent streams per connection (-m).
const h2Streams = 10

func h2cCases(h *server) []benchCase {
	return []benchCase{
		{key: "h2c/untraced", srv: h, path: "/", h2c: true},
		{key: "h2c/boxtap", srv: h, path: "/", h2c: true, tool: toolBoxtap, watched: h},
	}
}

// h2RoundRequests is the request count of a measured round: what rps
// serves in d, at least one per stream of every client.
func h2RoundRequests(rps float64, d time.Duration, conns int) int {
	return max(int(rps*d.Seconds()), conns*h2Streams)
}

// runH2load runs h2load against url: n requests, or for d when n is 0.
// h2load reports no latency percentiles: p99 stays 0.
func runH2load(ctx context.Context, threads, conns, streams int, d time.Duration, n int, url string) (load, error) {
	args := []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns), "-m" + strconv.Itoa(streams)}
	if n > 0 {
		args = append(args, "-n"+strconv.Itoa(n))
	} else {
		args = append(args, "-D"+strconv.Itoa(int(d.Seconds())))
	}
	args = append(args, url)
	return runLoadTool(ctx, "h2load", args, parseH2load)
}

// parseH2load reads the req/s of the "finished in" line, the requests line
// (succeeded; failed, errored and timed out count as errors) and the
// status codes line (4xx and 5xx count as errors).
func parseH2load(out string) (load, error) {
	var l load
	var haveRPS, haveReqs, haveCodes bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "finished in "):
			// finished in 10.00s, 123456.70 req/s, 5.30MB/s
			f := strings.Split(line, ", ")
			if len(f) < 2 || !strings.HasSuffix(f[1], " req/s") {
				return l, fmt.Errorf("bad finished line %q", line)
			}
			v, err := strconv.ParseFloat(strings.TrimSuffix(f[1], " req/s"), 64)
			if err != nil {
				return l, fmt.Errorf("bad req/s in %q", line)
			}
			l.rps, haveRPS = v, true
		case strings.HasPrefix(line, "requests: "):
			// requests: 100 total, 100 started, 100 done, 98 succeeded, 2 failed, 1 errored, 0 timeout
			n, err := countedFields(strings.TrimPrefix(line, "requests: "))
			if err != nil {
				return l, fmt.Errorf("bad requests line %q: %w", line, err)
			}
			l.requests, haveReqs = n["succeeded"], true
			l.errors += n["failed"] + n["errored"] + n["timeout"]
		case strings.HasPrefix(line, "status codes: "):
			// status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx
			n, err := countedFields(strings.TrimPrefix(line, "status codes: "))
			if err != nil {
				return l, fmt.Errorf("bad status codes line %q: %w", line, err)
			}
			l.errors += n["4xx"] + n["5xx"]
			haveCodes = true
		}
	}
	if !haveRPS || !haveReqs || !haveCodes {
		return l, fmt.Errorf("no req/s, requests or status codes line in h2load output: %q", out)
	}
	return l, nil
}

// countedFields parses "N name, N name, ..." into a map from name to N.
func countedFields(s string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, part := range strings.Split(s, ", ") {
		num, name, ok := strings.Cut(strings.TrimSpace(part), " ")
		if !ok {
			return nil, fmt.Errorf("%q is not a count and a name", part)
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a count and a name", part)
		}
		out[name] = n
	}
	return out, nil
}

func h2cRows(r *results) []row {
	base, traced := r.of("h2c/untraced"), r.of("h2c/boxtap")
	if traced == nil {
		return nil
	}
	keys := []string{"h2c/untraced", "h2c/boxtap"}
	return []row{
		{measure: fmt.Sprintf("h2c (h2load -m%d): req/s untraced", h2Streams), vals: each(base, rps), format: "%.0f"},
		{measure: "h2c: req/s traced by boxtap", vals: each(traced, rps), format: "%.0f"},
		{measure: "h2c: throughput ratio traced/untraced", vals: ratios(traced, base, rps), format: "%.3f"},
		judged(r, row{"h2c: completeness distinct exchanges/responses", each(traced, completeness), "%.6f", "1.0 exactly", allEqual(1), nil}, keys[1]),
		judged(r, row{"h2c: duplicate or malformed event lines", each(traced, extraLines), "%.0f", "0", allEqual(0), nil}, keys[1]),
		judged(r, row{"h2c: lost records", each(traced, lost), "%.0f", "0", allEqual(0), nil}, keys[1]),
		{measure: "h2c: boxtap process CPU s per 100k responses", vals: each(traced, cpuPer100k), format: "%.3f"},
		{measure: "h2c: eBPF programs' CPU s per 100k responses", vals: each(withBPF(traced), bpfPer100k), format: "%.3f"},
		{measure: "h2c: boxtap CPU s per 100k, process + eBPF", vals: each(withBPF(traced), totalPer100k), format: "%.3f"},
	}
}

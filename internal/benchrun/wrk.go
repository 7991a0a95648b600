package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// load is one wrk run's result.
type load struct {
	rps      float64
	p99      time.Duration
	requests uint64 // completed requests wrk counted
	errors   uint64 // socket errors plus non-2xx/3xx responses
}

// runWrk runs wrk with its latency distribution against url.
func runWrk(ctx context.Context, threads, conns int, d time.Duration, url string) (load, error) {
	args := []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency", url}
	return runLoadTool(ctx, "wrk", args, parseWrk)
}

// runLoadTool runs a load generator and parses its output.
func runLoadTool(ctx context.Context, tool string, args []string, parse func(string) (load, error)) (load, error) {
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		return load{}, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, out)
	}
	l, err := parse(string(out))
	if err != nil {
		return load{}, fmt.Errorf("%s %s: %w", tool, strings.Join(args, " "), err)
	}
	return l, nil
}

// parseWrk reads Requests/sec, the 99% latency line, the request count and
// the error lines of wrk --latency output.
func parseWrk(out string) (load, error) {
	var l load
	var haveRPS, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return l, fmt.Errorf("bad Requests/sec %q", f[1])
			}
			l.rps, haveRPS = v, true
		case len(f) == 2 && f[0] == "99%":
			v, err := parseWrkDuration(f[1])
			if err != nil {
				return l, err
			}
			l.p99, haveP99 = v, true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return l, fmt.Errorf("bad request count %q", f[0])
			}
			l.requests = v
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseUint(strings.TrimSuffix(f[i+1], ","), 10, 64)
				l.errors += n
			}
		case len(f) >= 5 && f[0] == "Non-2xx":
			n, _ := strconv.ParseUint(f[len(f)-1], 10, 64)
			l.errors += n
		}
	}
	if !haveRPS || !haveP99 {
		return l, fmt.Errorf("no Requests/sec or 99%% latency in wrk output: %q", out)
	}
	return l, nil
}

// parseWrkDuration parses wrk's "1.23ms", "456.00us", "2.00s" or "1.00m".
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		scale  float64
	}{{"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				break
			}
			return time.Duration(v * u.scale), nil
		}
	}
	return 0, fmt.Errorf("bad wrk latency %q", s)
}

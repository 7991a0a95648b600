package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// Secret values of the secrets test. Each is unique, so finding it anywhere in the output
// means it leaked.
const (
	secretSetCookie  = "sc0ffee5ec7e7a"
	secretWWWAuth    = "wwwa7be11e5ec7e7"
	secretAPIKey     = "ap1k3y5ec7e7b0b"
	secretCustom     = "cu570m5ec7e7c4f"
	secretCookie     = "c00k1e5ec7e7d1e"
	secretAuthBearer = "be4rer5ec7e7e9a"
	secretAuthBasic  = "YmFzaWM6c2VjcmV0Zm9v" // base64 "basic:secretfoo"
	secretQuery      = "qu3ry5ec7e7f00"
)

// secretExchanges are the requests and responses of the secrets test: every default
// secret header, a custom one passed with --redact-header, in requests and responses.
func secretExchanges() (reqs, resps []string) {
	reqs = []string{
		"GET /login?user=ann&token=" + secretQuery + " HTTP/1.1\r\nHost: bxh\r\nCookie: session=" + secretCookie + "; theme=dark\r\nAuthorization: Bearer " + secretAuthBearer + "\r\n\r\n",
		"GET /private HTTP/1.1\r\nHost: bxh\r\nAuthorization: Basic " + secretAuthBasic + "\r\n\r\n",
	}
	resps = []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nSet-Cookie: session=" + secretSetCookie + "; Path=/; HttpOnly\r\nX-Api-Key: " + secretAPIKey + "\r\nX-Custom-Tag: " + secretCustom + "\r\n\r\nok\n",
		"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\nWWW-Authenticate: Bearer realm=\"bxh\", error=\"" + secretWWWAuth + "\"\r\n\r\nno\n",
	}
	return reqs, resps
}

// runSecretExchanges traces one connection carrying secretExchanges with extra boxtap
// flags and returns boxtap's stdout (raw) and stderr.
func runSecretExchanges(t *testing.T, e *traceEnv, flags ...string) (stdout, stderr string) {
	t.Helper()
	reqs, resps := secretExchanges()
	var server, client []map[string]any
	for i := range reqs {
		server = append(server, map[string]any{"recv_request": 1}, map[string]any{"send": resps[i]})
		client = append(client, map[string]any{"send": reqs[i]}, map[string]any{"recv_bytes": len(resps[i])})
	}
	server = append(server, map[string]any{"recv_until_close": true})
	client = append(client, map[string]any{"close": true})
	serverJSON, _ := json.Marshal(server)
	clientJSON, _ := json.Marshal(client)

	port := itest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := e.hxRun(t, "secrets", "host", "listening on", nil, "script-serve", "-addr", addr, "-script", string(serverJSON))
	p := e.startTrace(t, []*itest.Container{c}, flags...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := itest.StartProc(t, ctx, e.testapp, "script-client", "-addr", addr, "-script", string(clientJSON))
	if err := cl.Wait(30 * time.Second); err != nil {
		t.Fatalf("script-client: %v\n%s", err, cl.Stderr())
	}
	if _, err := p.WaitLines(len(reqs), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d:\n%s", x.code, x.stderr)
	}
	vs := viewEvents(t, x.events)
	requireCount(t, vs, len(reqs))
	for i, v := range vs {
		if v.req == nil {
			t.Fatalf("event %d has no http_request: the request headers were not checked", i)
		}
	}
	return strings.Join(p.Lines(), "\n"), x.stderr
}

// TestHardeningSecrets proves that no secret value reaches stdout by default (Set-Cookie,
// WWW-Authenticate, X-Api-Key, a --redact-header name in responses; Cookie, Authorization
// and query values in requests), and that they all do with --no-redact, with a warning.
func TestHardeningSecrets(t *testing.T) {
	e := newTraceEnv(t)
	secrets := map[string]string{
		"Set-Cookie": secretSetCookie, "WWW-Authenticate": secretWWWAuth, "X-Api-Key": secretAPIKey,
		"X-Custom-Tag (--redact-header)": secretCustom, "Cookie": secretCookie,
		"Authorization: Bearer": secretAuthBearer, "Authorization: Basic": secretAuthBasic, "query value": secretQuery,
	}

	t.Run("default", func(t *testing.T) {
		out, stderr := runSecretExchanges(t, e, "--redact-header", "X-Custom-Tag")
		for what, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("the %s secret %q appears in stdout", what, s)
			}
			if strings.Contains(stderr, s) {
				t.Errorf("the %s secret %q appears in stderr", what, s)
			}
		}
		// Redaction keeps what is needed to read the event.
		for _, keep := range []string{`session=<redacted>; Path=/; HttpOnly`, `Bearer <redacted>`, `Basic <redacted>`, `theme=<redacted>`, `"X-Custom-Tag"`, `"X-Api-Key":["<redacted>"]`, `token=<redacted>`} {
			if !strings.Contains(out, keep) {
				t.Errorf("stdout lacks %q:\n%s", keep, out)
			}
		}
		if strings.Contains(stderr, "--no-redact") {
			t.Errorf("the --no-redact warning was printed without the flag:\n%s", stderr)
		}
	})

	t.Run("no-redact", func(t *testing.T) {
		out, stderr := runSecretExchanges(t, e, "--no-redact", "--redact-header", "X-Custom-Tag")
		for what, s := range secrets {
			if !strings.Contains(out, s) {
				t.Errorf("with --no-redact, the %s value %q is missing from stdout", what, s)
			}
		}
		if strings.Contains(out, "<redacted>") {
			t.Errorf("with --no-redact, stdout still has redacted values:\n%s", out)
		}
		if !strings.Contains(stderr, "warning: --no-redact") {
			t.Errorf("with --no-redact, no warning on stderr:\n%s", stderr)
		}
	})
}

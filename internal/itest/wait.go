package itest

import (
	"fmt"
	"strings"
	"time"
)

// WaitStderrCount waits until stderr contains substr at least n times. A test that waits
// for the same line twice (a second "waiting for SIGUSR1") needs the count: WaitStderr
// would return at once on the first occurrence.
func (p *Proc) WaitStderrCount(substr string, n int, timeout time.Duration) error {
	ok, exited := p.waitFor(timeout, func() bool { return strings.Count(p.stderr.String(), substr) >= n })
	if ok {
		return nil
	}
	return p.waitError(fmt.Sprintf("%d times %q on stderr", n, substr), timeout, exited)
}

// WaitStdout waits until cond holds for the complete stdout lines so far and returns them.
// what names the condition in the error.
func (p *Proc) WaitStdout(what string, timeout time.Duration, cond func(lines []string) bool) ([]string, error) {
	ok, exited := p.waitFor(timeout, func() bool { return cond(p.lines) })
	if ok {
		return p.Lines(), nil
	}
	return p.Lines(), p.waitError(what, timeout, exited)
}

package itest

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// StartPiped starts a prepared command the test talks to line by line: it
// returns the command's stdin, a scanner over its stdout and its collected
// stderr (for failure messages). The caller waits for the command.
func StartPiped(t testing.TB, cmd *exec.Cmd) (stdin io.WriteCloser, stdout *bufio.Scanner, stderr *strings.Builder) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return stdin, bufio.NewScanner(out), stderr
}

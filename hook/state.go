package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxStateBytes bounds what ReadState reads: a state is a few KiB even with
// many annotations.
const maxStateBytes = 1 << 20

// ReadState reads the container state a runtime writes to a hook's stdin and
// checks the fields boxtap relies on. It stops after the first JSON value:
// a runtime may keep stdin open after writing the state.
func ReadState(r io.Reader) (*specs.State, error) {
	var raw json.RawMessage
	lr := &io.LimitedReader{R: r, N: maxStateBytes + 1}
	err := json.NewDecoder(lr).Decode(&raw)
	switch {
	case err != nil && lr.N == 0:
		return nil, fmt.Errorf("the OCI state on stdin is larger than %d bytes; boxtap hook must be run by an OCI runtime", maxStateBytes)
	case errors.Is(err, io.EOF):
		raw = nil // nothing at all: ParseState says so
	case err != nil && isReadError(err):
		return nil, fmt.Errorf("reading the OCI state from stdin: %w", err)
	case err != nil:
		return nil, fmt.Errorf("the OCI state on stdin is not valid JSON (%v); boxtap hook must be run by an OCI runtime", err)
	}
	return ParseState(raw)
}

// isReadError tells a failed read from bad JSON: the decoder returns the
// reader's errors unwrapped, and its own as *json.SyntaxError or
// io.ErrUnexpectedEOF.
func isReadError(err error) bool {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return !errors.As(err, &syn) && !errors.As(err, &typ) && !errors.Is(err, io.ErrUnexpectedEOF)
}

// ParseState decodes and checks an OCI state document.
func ParseState(data []byte) (*specs.State, error) {
	if len(data) > maxStateBytes {
		return nil, fmt.Errorf("the OCI state on stdin is larger than %d bytes; boxtap hook must be run by an OCI runtime", maxStateBytes)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("no OCI state on stdin; boxtap hook must be run by an OCI runtime (runc, crun, podman, CRI-O), which writes the container state to it")
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("the OCI state on stdin is not valid JSON (%v); boxtap hook must be run by an OCI runtime", err)
	}
	if err := ValidID(st.ID); err != nil {
		return nil, fmt.Errorf("the OCI state: %w", err)
	}
	if st.Pid < 0 {
		return nil, fmt.Errorf("the OCI state: pid %d is negative", st.Pid)
	}
	if st.Bundle != "" && !filepath.IsAbs(st.Bundle) {
		return nil, fmt.Errorf("the OCI state: bundle %q is not an absolute path", st.Bundle)
	}
	return &st, nil
}

// ValidID checks that a container ID can name files (<id>.json, <id>.pid)
// and a cgroup: non-empty, at most 200 bytes, letters, digits and "._-+:@"
// only, and not "." or "..".
func ValidID(id string) error {
	if id == "" {
		return errors.New("container id is empty")
	}
	if len(id) > 200 {
		return fmt.Errorf("container id is %d bytes long, more than 200", len(id))
	}
	if id == "." || id == ".." {
		return fmt.Errorf("container id %q is not a valid file name", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-+:@", c) >= 0) {
			return fmt.Errorf("container id %q has the character %q; boxtap accepts letters, digits and ._-+:@", id, c)
		}
	}
	return nil
}

// Action is what a hook invocation does.
type Action int

const (
	// ActionNone: the stage needs nothing from boxtap.
	ActionNone Action = iota
	// ActionStart attaches to the container and starts its tracer.
	ActionStart
	// ActionStop ends the container's tracer and waits for its flush.
	ActionStop
)

func (a Action) String() string {
	switch a {
	case ActionStart:
		return "start"
	case ActionStop:
		return "stop"
	default:
		return "none"
	}
}

// Stage names (as in config.json's "hooks" and hooks.d's "stages").
const (
	StagePrestart        = "prestart"
	StageCreateRuntime   = "createRuntime"
	StageCreateContainer = "createContainer"
	StageStartContainer  = "startContainer"
	StagePoststart       = "poststart"
	StagePoststop        = "poststop"
)

// ParseStage maps a stage name to an action. The name is matched without
// regard to case. An empty name is inferred from the state's status (runc
// does not tell a hook its stage): "creating" or "created" start, "stopped"
// stops.
func ParseStage(stage string, st *specs.State) (Action, error) {
	switch strings.ToLower(stage) {
	case "createruntime", "prestart":
		return ActionStart, nil
	case "poststop":
		return ActionStop, nil
	case "createcontainer", "startcontainer", "poststart":
		return ActionNone, nil
	case "":
		switch st.Status {
		case specs.StateCreating, specs.StateCreated:
			return ActionStart, nil
		case specs.StateStopped:
			return ActionStop, nil
		}
		return ActionNone, fmt.Errorf("no stage given and the state's status %q does not tell it; pass the stage: boxtap hook createRuntime|prestart|poststop", st.Status)
	}
	return ActionNone, fmt.Errorf("unknown hook stage %q; use createRuntime, prestart or poststop", stage)
}

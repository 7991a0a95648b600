package hook

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantID  string
		wantErr string
	}{
		{"runc createRuntime", `{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":42,"bundle":"/b","annotations":{"io.boxtap.trace":"true"}}`, "abc", ""},
		{"poststop without pid", `{"ociVersion":"1.0.2","id":"abc","status":"stopped","bundle":"/b"}`, "abc", ""},
		{"empty", "", "", "no OCI state"},
		{"blank", " \n", "", "no OCI state"},
		{"not json", "{", "", "not valid JSON"},
		{"no id", `{"pid":1}`, "", "container id is empty"},
		{"slash in id", `{"id":"../etc"}`, "", "has the character"},
		{"dot dot", `{"id":".."}`, "", "not a valid file name"},
		{"negative pid", `{"id":"a","pid":-3}`, "", "negative"},
		{"relative bundle", `{"id":"a","bundle":"b"}`, "", "not an absolute path"},
		{"too big", `{"id":"a","x":"` + strings.Repeat("x", maxStateBytes) + `"}`, "", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ReadState(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadState error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || st.ID != tt.wantID {
				t.Fatalf("ReadState = %+v, %v; want id %q", st, err, tt.wantID)
			}
		})
	}
}

// heldOpen is stdin of a runtime that wrote the state and keeps the pipe
// open: any further read would block.
type heldOpen struct {
	t     *testing.T
	state *strings.Reader
}

func (h *heldOpen) Read(p []byte) (int, error) {
	if h.state.Len() == 0 {
		h.t.Fatal("ReadState read past the state, waiting for an end of input that never comes")
	}
	return h.state.Read(p)
}

// ReadState takes the first whole JSON value; it used to read until the end
// of input, so a runtime that kept stdin open hung the container's start.
func TestReadStateDoesNotWaitForEndOfInput(t *testing.T) {
	st, err := ReadState(&heldOpen{t: t, state: strings.NewReader(`{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":42,"bundle":"/b"}`)})
	if err != nil || st.ID != "abc" {
		t.Fatalf("ReadState = %+v, %v", st, err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":42,"bundle":"/b"}`))
	f.Add([]byte(`{"id":"a/b"}`))
	f.Add([]byte(`{"id":"..","pid":-1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		// An accepted id is safe as a file name and a cgroup name.
		if st.ID == "" || st.ID == "." || st.ID == ".." || strings.ContainsAny(st.ID, "/\x00 \n") {
			t.Fatalf("accepted unsafe id %q", st.ID)
		}
		if st.Pid < 0 {
			t.Fatalf("accepted pid %d", st.Pid)
		}
		if st.Bundle != "" && !strings.HasPrefix(st.Bundle, "/") {
			t.Fatalf("accepted relative bundle %q", st.Bundle)
		}
	})
}

func TestParseStage(t *testing.T) {
	tests := []struct {
		stage   string
		status  specs.ContainerState
		want    Action
		wantErr bool
	}{
		{"createRuntime", "", ActionStart, false},
		{"prestart", "", ActionStart, false},
		{"PRESTART", "", ActionStart, false},
		{"poststop", "", ActionStop, false},
		{"startContainer", "", ActionNone, false},
		{"poststart", "", ActionNone, false},
		{"", specs.StateCreating, ActionStart, false},
		{"", specs.StateCreated, ActionStart, false},
		{"", specs.StateStopped, ActionStop, false},
		{"", specs.StateRunning, ActionNone, true},
		{"prestop", "", ActionNone, true},
	}
	for _, tt := range tests {
		got, err := ParseStage(tt.stage, &specs.State{Status: tt.status})
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseStage(%q, %q) = %v, %v; want %v, error %v", tt.stage, tt.status, got, err, tt.want, tt.wantErr)
		}
	}
}

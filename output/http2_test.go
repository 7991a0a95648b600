package output

import (
	"encoding/json"
	"net/netip"
	"testing"
)

func TestHTTP2ArgsAreWrittenAndCounted(t *testing.T) {
	tests := []struct {
		name string
		h2   *HTTP2
		want map[string]string // arg name -> raw JSON value
	}{
		{"http/1 event has none", nil, map[string]string{}},
		{"plain stream", &HTTP2{StreamID: 7}, map[string]string{"stream_id": "7"}},
		{"grpc failure", &HTTP2{StreamID: 3, GRPC: true, GRPCStatus: 5, GRPCMessage: `no "such" thing`},
			map[string]string{"stream_id": "3", "grpc_status": "5", "grpc_message": `"no \"such\" thing"`}},
		{"partial", &HTTP2{StreamID: 1, Partial: true}, map[string]string{"stream_id": "1", "partial": "true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
			e.HTTP2 = tc.h2
			var doc struct {
				ArgsNum int `json:"argsNum"`
				Args    []struct {
					Name  string          `json:"name"`
					Value json.RawMessage `json:"value"`
				} `json:"args"`
			}
			if err := json.Unmarshal(e.AppendJSON(nil), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.ArgsNum != len(doc.Args) {
				t.Errorf("argsNum %d, %d args", doc.ArgsNum, len(doc.Args))
			}
			got := map[string]string{}
			for _, a := range doc.Args {
				if _, ok := map[string]bool{"stream_id": true, "grpc_status": true, "grpc_message": true, "partial": true}[a.Name]; ok {
					got[a.Name] = string(a.Value)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("args %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %s, want %s", k, got[k], v)
				}
			}
		})
	}
}

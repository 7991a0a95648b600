package httpstream

import "testing"

func TestH2StartRecognisesThePrefaceAndAServerSettingsFrame(t *testing.T) {
	settings := []byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100}
	for _, tc := range []struct {
		name          string
		data          []byte
		preface, isH2 bool
	}{
		{"whole preface", []byte(h2Preface + "\x00\x00\x00\x04"), true, true},
		{"first bytes of the preface", []byte("PRI *"), true, true},
		{"too short to tell", []byte("PR"), false, false},
		{"PROPFIND is HTTP/1", []byte("PROPFIND / HTTP/1.1\r\n"), false, false},
		{"GET", []byte("GET / HTTP/1.1\r\n"), false, false},
		{"server SETTINGS", settings, false, true},
		{"empty SETTINGS", settings[:9:9], false, true},
		{"SETTINGS ACK is not a first frame", []byte{0, 0, 0, 4, 1, 0, 0, 0, 0}, false, false},
		{"SETTINGS on a stream", []byte{0, 0, 0, 4, 0, 0, 0, 0, 1}, false, false},
		{"SETTINGS of a bad length", []byte{0, 0, 5, 4, 0, 0, 0, 0, 0}, false, false},
		{"HTTP/1 response", []byte("HTTP/1.1 200 OK\r\n"), false, false},
	} {
		preface, ok := h2Start(tc.data)
		if preface != tc.preface || ok != tc.isH2 {
			t.Errorf("%s: preface %v h2 %v, want %v %v", tc.name, preface, ok, tc.preface, tc.isH2)
		}
	}
}

// The first bytes of a direction, one at a time, decide as they do at once.
func TestH2DetectionDoesNotDependOnSegmentation(t *testing.T) {
	started := 0
	lim := Limits{NewHTTP2: func(*Stats) Protocol { started++; return nopProtocol{} }}
	for _, first := range []string{h2Preface, "\x00\x00\x00\x04\x00\x00\x00\x00\x00", "PROPFIND / HTTP/1.1\r\n\r\n", "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"} {
		for _, step := range []int{1, 2, len(first)} {
			started = 0
			c := NewConn(lim, nil)
			reqs := 0
			for i := 0; i < len(first); i += step {
				d := []byte(first[i:min(i+step, len(first))])
				c.Feed(&Segment{Dir: Egress, Seq: uint32(i), Data: d}, nil)
			}
			reqs = int(c.stats.Requests)
			wantH2 := first[0] != 'P' || first[:3] == "PRI"
			if (started == 1) != wantH2 || !wantH2 && reqs != 1 {
				t.Errorf("%q in pieces of %d: HTTP/2 %v, %d requests", first, step, started == 1, reqs)
			}
		}
	}
}

type nopProtocol struct{}

func (nopProtocol) Consume(Direction, []byte, PacketInfo, func(*Response)) {}
func (nopProtocol) Unknown(Direction, uint64)                              {}
func (nopProtocol) Finish(Direction, func(*Response))                      {}
func (nopProtocol) Footprint() int                                         { return 0 }

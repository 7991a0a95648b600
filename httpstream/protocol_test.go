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

package bpf

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

// alignedCopy returns b in an 8-byte aligned buffer, as ring-buffer samples are.
func alignedCopy(b []byte) []byte {
	words := make([]uint64, (len(b)+7)/8+1)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)[:len(b)]
	copy(buf, b)
	return buf
}

func TestHeaderLayoutMatchesC(t *testing.T) {
	// struct record in include/boxtap.h: 4 u64, 4 u32, 3 u16, 4 u8, u16, u32,
	// 2x16 addresses, 16 iface, then struct owner (4 u64 + 10 u32 + 16 comm).
	const owner = 4*8 + 10*4 + 16
	const want = 4*8 + 4*4 + 3*2 + 4 + 2 + 4 + 32 + 16 + owner
	if headerSize != want {
		t.Fatalf("record header is %d bytes in Go, %d in C", headerSize, want)
	}
}

func TestDecodeRecord(t *testing.T) {
	raw := make([]byte, headerSize+5)
	var hdr captureRecord
	hdr.Seq, hdr.SegLen, hdr.DataLen, hdr.Sport = 1000, 5, 5, 8080
	copy(raw, unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), headerSize))
	copy(raw[headerSize:], "hello")
	raw = alignedCopy(raw)
	var rec Record
	if err := DecodeRecord(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1000 || rec.Sport != 8080 || string(rec.Data) != "hello" {
		t.Fatalf("decoded seq=%d sport=%d data=%q", rec.Seq, rec.Sport, rec.Data)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"short header", alignedCopy(raw[:headerSize-1])},
		{"data longer than sample", alignedCopy(raw[:headerSize+2])},
	} {
		if err := DecodeRecord(tc.raw, &rec); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// FuzzDecodeRecord: any sample either fails to decode or yields data that
// lies inside the sample and has exactly the length the header claims.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(make([]byte, headerSize))
	f.Add(append(make([]byte, headerSize), "HTTP/1.1 200 OK\r\n"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw := alignedCopy(b)
		var rec Record
		if err := DecodeRecord(raw, &rec); err != nil {
			return
		}
		if len(b) < headerSize {
			t.Fatalf("decoded a %d-byte sample", len(b))
		}
		claimed := int(binary.LittleEndian.Uint16(raw[unsafe.Offsetof(hdrProbe.DataLen):]))
		if len(rec.Data) != claimed || headerSize+claimed > len(raw) {
			t.Fatalf("data %d bytes, header claims %d, sample %d", len(rec.Data), claimed, len(raw))
		}
		if claimed > 0 && &rec.Data[0] != &raw[headerSize] {
			t.Fatal("data does not alias the sample after the header")
		}
	})
}

var hdrProbe captureRecord

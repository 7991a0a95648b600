package bpf

import (
	"encoding/binary"
	"errors"
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
	// 2x16 addresses, 16 iface; struct owner: 4 u64 + 10 u32 + 16 comm.
	const wantHeader = 4*8 + 4*4 + 3*2 + 4 + 2 + 4 + 32 + 16
	const wantOwner = 4*8 + 10*4 + 16
	if headerSize != wantHeader || ownerSize != wantOwner {
		t.Fatalf("record header %d and owner %d bytes in Go, %d and %d in C", headerSize, ownerSize, wantHeader, wantOwner)
	}
	// The owner follows the header; both keep 8-byte alignment.
	if headerSize%8 != 0 || ownerSize%8 != 0 {
		t.Fatalf("header %d / owner %d bytes: not multiples of 8", headerSize, ownerSize)
	}
}

// rawRecord lays out a sample as the kernel does: header, the owner when
// given (setting FlagOwner), data.
func rawRecord(hdr captureRecord, owner *captureOwner, data string) []byte {
	hdr.DataLen = uint16(len(data))
	if owner != nil {
		hdr.Rflags |= FlagOwner
	}
	raw := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), headerSize)...)
	if owner != nil {
		raw = append(raw, unsafe.Slice((*byte)(unsafe.Pointer(owner)), ownerSize)...)
	}
	return alignedCopy(append(raw, data...))
}

func TestDecodeRecord(t *testing.T) {
	hdr := captureRecord{Seq: 1000, SegLen: 5, Sport: 8080}
	owner := captureOwner{Tid: 42, Tgid: 41, Comm: [16]int8{'n', 'g', 'x'}}
	for _, tc := range []struct {
		name  string
		owner *captureOwner
	}{{"without owner", nil}, {"with owner", &owner}} {
		raw := rawRecord(hdr, tc.owner, "hello")
		var rec Record
		if err := DecodeRecord(raw, &rec); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rec.Seq != 1000 || rec.Sport != 8080 || string(rec.Data) != "hello" {
			t.Fatalf("%s: decoded seq=%d sport=%d data=%q", tc.name, rec.Seq, rec.Sport, rec.Data)
		}
		switch {
		case tc.owner == nil && rec.Owner != nil:
			t.Fatalf("%s: decoded an owner", tc.name)
		case tc.owner != nil && (rec.Owner == nil || *rec.Owner != owner):
			t.Fatalf("%s: owner %+v, want %+v", tc.name, rec.Owner, owner)
		}
	}
	plain := rawRecord(hdr, nil, "hello")
	withOwner := rawRecord(hdr, &owner, "hello")
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"short header", alignedCopy(plain[:headerSize-1])},
		{"data longer than sample", alignedCopy(plain[:headerSize+2])},
		{"owner cut short", alignedCopy(withOwner[:headerSize+ownerSize-1])},
		{"data after owner cut short", alignedCopy(withOwner[:headerSize+ownerSize+4])},
	} {
		var rec Record
		if err := DecodeRecord(tc.raw, &rec); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("%s: error %v, want ErrMalformedRecord", tc.name, err)
		}
	}
}

// FuzzDecodeRecord: any sample either fails to decode or yields data that
// lies inside the sample, right after the header (and the owner, when the
// header flags one), with exactly the length the header claims.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(make([]byte, headerSize))
	f.Add(rawRecord(captureRecord{}, nil, "HTTP/1.1 200 OK\r\n"))
	f.Add(rawRecord(captureRecord{}, &captureOwner{Tid: 1}, "GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw := alignedCopy(b)
		var rec Record
		if err := DecodeRecord(raw, &rec); err != nil {
			return
		}
		if len(b) < headerSize {
			t.Fatalf("decoded a %d-byte sample", len(b))
		}
		start := headerSize
		if raw[unsafe.Offsetof(hdrProbe.Rflags)]&FlagOwner != 0 {
			if rec.Owner == nil || unsafe.Pointer(rec.Owner) != unsafe.Pointer(&raw[headerSize]) {
				t.Fatal("flagged owner not decoded from right after the header")
			}
			start += ownerSize
		} else if rec.Owner != nil {
			t.Fatal("owner decoded without the flag")
		}
		claimed := int(binary.LittleEndian.Uint16(raw[unsafe.Offsetof(hdrProbe.DataLen):]))
		if len(rec.Data) != claimed || start+claimed > len(raw) {
			t.Fatalf("data %d bytes, header claims %d, sample %d", len(rec.Data), claimed, len(raw))
		}
		if claimed > 0 && &rec.Data[0] != &raw[start] {
			t.Fatal("data does not alias the sample where it starts")
		}
	})
}

var hdrProbe captureRecord

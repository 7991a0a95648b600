package output

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// identityBytes is what an Identity encoded from e holds, head and tail
// joined (the argsNum value left out).
func identityBytes(e *Event) []byte {
	return appendIdentityTail(appendIdentityHead(nil, e), e)
}

// encodeBoth encodes e without and with a freshly encoded Identity and
// fails unless the bytes are identical.
func encodeBoth(t testing.TB, e *Event, id *Identity, r *Redactor) []byte {
	t.Helper()
	saved := e.Identity
	defer func() { e.Identity = saved }()
	e.Identity = nil
	want := e.AppendJSONWith(nil, r)
	e.Identity = id
	got := e.AppendJSONWith(nil, r)
	if !bytes.Equal(got, want) {
		t.Fatalf("with Identity:\n%s\nwithout:\n%s", got, want)
	}
	return got
}

// perEventVariants yields e with every combination of the fields argsNum
// depends on, restoring e afterwards.
func perEventVariants(e *Event, f func()) {
	saved := *e
	defer func() { *e = saved }()
	req := e.Request
	if req == nil {
		req = &Request{Method: "GET", Protocol: "HTTP/1.1", URIPath: "/"}
	}
	for mask := 0; mask < 32; mask++ {
		e.Request = nil
		if mask&1 != 0 {
			e.Request = req
		}
		e.LatencyKnown = mask&2 != 0
		e.Direction = Direction(mask >> 2 & 1 * 2) // unknown or ingress
		e.ContainerRuntime = ""
		if mask&8 != 0 {
			e.ContainerRuntime = "containerd"
		}
		e.LostRecords = uint64(mask >> 4)
		f()
	}
}

func FuzzIdentityEquivalent(f *testing.F) {
	f.Add("inform-161", "/usr/local/bin/inform", "95e88e281c4b", "95e88e281c4b47994e", "web", "nginx:1.25", "sha256:0d17", "web-0", "default", "2c1b3f1e", true, true, uint32(21), uint32(691018), uint64(18465), uint32(123456789))
	f.Add("", "", "", "", "", "", "", "", "", "", false, false, uint32(0), uint32(0), uint64(0), uint32(0))
	f.Add("", "", "", "", "", "", "", "", "", "", true, false, uint32(1), uint32(1), uint64(1), uint32(1))
	f.Add(`quote" back\slash`, "ctl\x00\x1f\x7f", "\n\r\t", "\u2028\u2029", "bad\xffutf8\xc3", "é 漢字 🙂", "<&>", "", "surrogate \xed\xa0\x80", "cut \xe2\x82", true, false, ^uint32(0), ^uint32(0), ^uint64(0), ^uint32(0))
	f.Add("p", "", "h", "", "", "img", "", "", "ns", "", false, true, uint32(7), uint32(8), uint64(9), uint32(10))
	f.Fuzz(func(t *testing.T, procName, exe, host, ctrID, ctrName, image, digest, pod, podNS, podUID string,
		sandbox, started bool, pid, hostPID uint32, cgroup uint64, entity uint32) {
		e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1"))
		e.ProcessName, e.ExecutablePath, e.HostName = procName, exe, host
		e.Container = Container{ID: ctrID, Name: ctrName, Image: image, ImageDigest: digest}
		e.Kubernetes = Kubernetes{PodName: pod, PodNamespace: podNS, PodUID: podUID, PodSandbox: sandbox}
		e.ContainerStarted = started
		e.ProcessID, e.ThreadID, e.ParentProcessID = pid, pid+1, pid/2
		e.HostProcessID, e.HostThreadID, e.HostParentProcessID = hostPID, hostPID^1, hostPID>>1
		e.UserID, e.MountNS, e.PIDNS = pid*3, hostPID*5, entity*7
		e.CgroupID = cgroup
		e.ThreadEntityID, e.ProcessEntityID, e.ParentEntityID = entity, entity^0xffff, entity>>3

		var id Identity
		id.Encode(e)
		if !id.Matches(e) {
			t.Fatal("Identity does not match the event it was encoded from")
		}
		// Byte-identical whatever the per-event fields and the redactor.
		perEventVariants(e, func() {
			for _, r := range []*Redactor{nil, NewRedactor(nil, true)} {
				encodeBoth(t, e, &id, r)
			}
		})
		out := encodeBoth(t, e, &id, nil)
		ev := decodeTrace(t, out)
		if ev.ProcessName != sanitizeUTF8(procName) || ev.Container.ImageName != sanitizeUTF8(image) ||
			ev.Kubernetes.PodUID != sanitizeUTF8(podUID) || ev.Kubernetes.PodSandbox != sandbox ||
			ev.ContextFlags.ContainerStarted != started || ev.ThreadEntityId != entity {
			t.Errorf("identity fields did not round-trip through tracee's types:\n%s", out)
		}

		// An Identity reused from an event with longer or shorter values
		// holds nothing of it after Encode.
		other := fullEvent(netip.Addr{}, netip.Addr{})
		other.ProcessName = strings.Repeat("long-process-name ", 8)
		other.Kubernetes.PodSandbox = !sandbox
		reused := new(Identity)
		reused.Encode(other)
		reused.Encode(e)
		if !reused.Matches(e) || (reused.Matches(other) && !bytes.Equal(identityBytes(other), identityBytes(e))) {
			t.Error("Matches after re-encoding reports the old event")
		}
		encodeBoth(t, e, reused, nil)
	})
}

func TestIdentityReuseLeavesNoStaleBytes(t *testing.T) {
	long := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	long.ProcessName = strings.Repeat("a-very-long-process-name/", 10)
	long.Container.Name = "stale-marker"
	short := &Event{ProcessName: "sh", Response: Response{Status: "200 OK", StatusCode: 200, Protocol: "HTTP/1.1"}}

	var id Identity
	for i, e := range []*Event{short, long, short, long} {
		id.Encode(e)
		if !id.Matches(e) {
			t.Fatalf("step %d: Matches false for the event just encoded", i)
		}
		out := encodeBoth(t, e, &id, nil)
		if e == short && (bytes.Contains(out, []byte("stale-marker")) || bytes.Contains(out, []byte("a-very-long"))) {
			t.Fatalf("step %d: bytes of an earlier Encode leaked:\n%s", i, out)
		}
	}
	if id.Matches(short) {
		t.Error("Matches reports the event encoded before the last Encode")
	}
}

func TestIdentityZeroValueIsIgnored(t *testing.T) {
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	var id Identity
	if id.Matches(e) || (*Identity)(nil).Matches(e) {
		t.Error("an Identity never encoded must not match")
	}
	// A zero Identity writes the fields, not nothing.
	out := encodeBoth(t, e, &id, nil)
	if !json.Valid(out) {
		t.Fatalf("invalid JSON:\n%s", out)
	}
}

// mutateLeaves calls f once per settable leaf field of v (recursing into
// nested structs of this package), after changing that field; the field is
// restored before the next call. Pointers, slices and structs with
// unexported fields (netip.Addr) are skipped.
func mutateLeaves(v reflect.Value, path string, f func(path string)) {
	for i := 0; i < v.NumField(); i++ {
		fv, name := v.Field(i), path+v.Type().Field(i).Name
		if !fv.CanSet() {
			continue
		}
		old := reflect.New(fv.Type()).Elem()
		old.Set(fv)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(fv.String() + "x")
		case reflect.Bool:
			fv.SetBool(!fv.Bool())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			fv.SetInt(fv.Int() + 1)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			fv.SetUint(fv.Uint() + 1)
		case reflect.Struct:
			if fv.Type().PkgPath() == v.Type().PkgPath() {
				mutateLeaves(fv, name+".", f)
			}
			continue
		default:
			continue
		}
		f(name)
		fv.Set(old)
	}
}

// TestIdentityMatchesExactlyTheEncodedFields changes each Event field in
// turn: Matches must turn false exactly when the identity bytes change, so
// it neither misses a field the identity encodes nor rejects events that
// differ only in per-event fields.
func TestIdentityMatchesExactlyTheEncodedFields(t *testing.T) {
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	e.Latency = time.Millisecond
	var id Identity
	id.Encode(e)
	base := identityBytes(e)
	var identityFields []string
	mutateLeaves(reflect.ValueOf(e).Elem(), "", func(path string) {
		changed := !bytes.Equal(identityBytes(e), base)
		if changed {
			identityFields = append(identityFields, path)
		}
		if got := id.Matches(e); got == changed {
			t.Errorf("after changing %s: Matches = %v, identity bytes changed = %v", path, got, changed)
		}
	})
	if len(identityFields) < 20 {
		t.Errorf("only %d fields change the identity bytes (%q); the mutation walk is broken", len(identityFields), identityFields)
	}
}

func TestIdentityNoAllocs(t *testing.T) {
	a := benchEvent()
	b := fullEvent(netip.MustParseAddr("::1"), netip.MustParseAddr("::2"))
	b.ProcessName, b.Container.Name = "other \"quoted\"", "é"
	r := NewRedactor(nil, false)
	var id Identity
	a.Identity, b.Identity = &id, &id
	buf := make([]byte, 0, 8192)
	run := func() {
		id.Encode(a)
		buf = a.AppendJSONWith(buf[:0], r)
		id.Encode(b)
		buf = b.AppendJSONWith(buf[:0], r)
	}
	run() // warm the Identity's buffer
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Errorf("Encode + AppendJSONWith with a warm Identity allocate %.1f times, want 0", allocs)
	}
}

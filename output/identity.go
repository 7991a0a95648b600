package output

import "strconv"

// Identity is the pre-encoded JSON of the fields of an event that describe
// the task and container it belongs to: processId through the "argsNum" key,
// and returnValue through parentEntityId (process ids, namespaces, names,
// executable path, hostName, containerId, container, kubernetes, eventId,
// eventName, matchedPolicies, contextFlags and the entity ids). These fields
// are the same for every response of a connection while its owning task does
// not change, so encoding them once and copying the bytes afterwards saves
// most of the encoder's work.
//
// Typical use, one Identity per connection (or per task):
//
//	if !id.Matches(e) {
//		id.Encode(e)
//	}
//	e.Identity = id
//
// The zero value is ready to use and encodes nothing until Encode is called;
// an Event whose Identity was never encoded is written as if it had none.
// An Identity is not safe for concurrent use while it is being encoded.
type Identity struct {
	// buf is head followed by tail: head runs from `,"processId":` through
	// `"argsNum":`, tail from `,"returnValue":` through the parentEntityId
	// value. The per-event argsNum value goes between them.
	buf   []byte
	split int
	key   identityKey
	valid bool
}

// identityKey is every Event field the identity bytes are encoded from.
type identityKey struct {
	ProcessID, ThreadID, ParentProcessID             uint32
	HostProcessID, HostThreadID, HostParentProcessID uint32
	UserID, MountNS, PIDNS                           uint32
	CgroupID                                         uint64

	ProcessName, ExecutablePath, HostName string

	Container        Container
	Kubernetes       Kubernetes
	ContainerStarted bool

	ThreadEntityID, ProcessEntityID, ParentEntityID uint32
}

func identityKeyOf(e *Event) identityKey {
	return identityKey{
		ProcessID: e.ProcessID, ThreadID: e.ThreadID, ParentProcessID: e.ParentProcessID,
		HostProcessID: e.HostProcessID, HostThreadID: e.HostThreadID, HostParentProcessID: e.HostParentProcessID,
		UserID: e.UserID, MountNS: e.MountNS, PIDNS: e.PIDNS,
		CgroupID:    e.CgroupID,
		ProcessName: e.ProcessName, ExecutablePath: e.ExecutablePath, HostName: e.HostName,
		Container: e.Container, Kubernetes: e.Kubernetes, ContainerStarted: e.ContainerStarted,
		ThreadEntityID: e.ThreadEntityID, ProcessEntityID: e.ProcessEntityID, ParentEntityID: e.ParentEntityID,
	}
}

// Encode encodes the identity fields of e (the fields listed on Identity;
// e.Identity itself is ignored), replacing what id held before. It reuses
// id's buffer, so once the buffer has grown to fit it does not allocate. The
// strings of e are referenced, not copied, to let Matches compare them.
func (id *Identity) Encode(e *Event) {
	id.buf = appendIdentityHead(id.buf[:0], e)
	id.split = len(id.buf)
	id.buf = appendIdentityTail(id.buf, e)
	id.key = identityKeyOf(e)
	id.valid = true
}

// Matches reports whether id was encoded from an event whose identity
// fields equal e's, i.e. whether e.Identity = id writes the same bytes as
// encoding e's fields. It is false for an Identity never encoded.
func (id *Identity) Matches(e *Event) bool {
	return id != nil && id.valid && id.key == identityKeyOf(e)
}

// appendIdentityHead writes the identity fields from processId through the
// "argsNum" key (its value varies per event and is written by the caller).
func appendIdentityHead(dst []byte, e *Event) []byte {
	dst = appendUintField(dst, `,"processId":`, uint64(e.ProcessID))
	dst = appendUintField(dst, `,"cgroupId":`, e.CgroupID)
	dst = appendUintField(dst, `,"threadId":`, uint64(e.ThreadID))
	dst = appendUintField(dst, `,"parentProcessId":`, uint64(e.ParentProcessID))
	dst = appendUintField(dst, `,"hostProcessId":`, uint64(e.HostProcessID))
	dst = appendUintField(dst, `,"hostThreadId":`, uint64(e.HostThreadID))
	dst = appendUintField(dst, `,"hostParentProcessId":`, uint64(e.HostParentProcessID))
	dst = appendUintField(dst, `,"userId":`, uint64(e.UserID))
	dst = appendUintField(dst, `,"mountNamespace":`, uint64(e.MountNS))
	dst = appendUintField(dst, `,"pidNamespace":`, uint64(e.PIDNS))
	dst = appendStringField(dst, `,"processName":`, e.ProcessName)
	dst = appendStringField(dst, `,"executable":{"path":`, e.ExecutablePath)
	dst = appendStringField(dst, `},"hostName":`, e.HostName)
	dst = appendStringField(dst, `,"containerId":`, e.Container.ID)

	dst = append(dst, `,"container":{`...)
	n := 0
	dst, n = appendOptString(dst, n, `"id":`, e.Container.ID)
	dst, n = appendOptString(dst, n, `"name":`, e.Container.Name)
	dst, n = appendOptString(dst, n, `"image":`, e.Container.Image)
	dst, _ = appendOptString(dst, n, `"imageDigest":`, e.Container.ImageDigest)

	dst = append(dst, `},"kubernetes":{`...)
	n = 0
	dst, n = appendOptString(dst, n, `"podName":`, e.Kubernetes.PodName)
	dst, n = appendOptString(dst, n, `"podNamespace":`, e.Kubernetes.PodNamespace)
	dst, n = appendOptString(dst, n, `"podUID":`, e.Kubernetes.PodUID)
	if e.Kubernetes.PodSandbox {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"podSandbox":true`...)
	}

	dst = append(dst, `},"eventId":"`...)
	dst = strconv.AppendInt(dst, EventID, 10)
	return append(dst, `","eventName":"`+EventName+`","matchedPolicies":[""],"argsNum":`...)
}

// appendIdentityTail writes the identity fields from returnValue through
// parentEntityId.
func appendIdentityTail(dst []byte, e *Event) []byte {
	dst = append(dst, `,"returnValue":0,"syscall":"","stackAddresses":[0],"contextFlags":{"containerStarted":`...)
	dst = strconv.AppendBool(dst, e.ContainerStarted)
	dst = append(dst, `,"isCompat":false},"threadEntityId":`...)
	dst = strconv.AppendUint(dst, uint64(e.ThreadEntityID), 10)
	dst = appendUintField(dst, `,"processEntityId":`, uint64(e.ProcessEntityID))
	return appendUintField(dst, `,"parentEntityId":`, uint64(e.ParentEntityID))
}

package container

import (
	"errors"
	"strings"
	"testing"
)

func TestShortID(t *testing.T) {
	tests := []struct{ id, want string }{
		{"", ""},
		{"abc", "abc"},
		{"0123456789ab", "0123456789ab"},
		{"0123456789abcdef0123", "0123456789ab"},
		{strings.Repeat("f00d", 16), "f00df00df00d"},
		// Chosen names stay whole: their first 12 characters need not tell them apart.
		{"boxtap-ctr-d0a1b2c3", "boxtap-ctr-d0a1b2c3"},
		{"web-frontend-1", "web-frontend-1"},
		{"0123456789ABCDEF", "0123456789ABCDEF"},
	}
	for _, tt := range tests {
		if got := (Info{ID: tt.id}).ShortID(); got != tt.want {
			t.Errorf("ShortID(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestPodFromLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   Pod
	}{
		{"nil labels", nil, Pod{}},
		{"unrelated labels", map[string]string{"app": "web"}, Pod{}},
		{
			"containerd CRI container",
			map[string]string{
				LabelPodName: "web-0", LabelPodNamespace: "shop", LabelPodUID: "u-1",
				LabelContainerName: "nginx", "io.cri-containerd.kind": "container",
			},
			Pod{Name: "web-0", Namespace: "shop", UID: "u-1"},
		},
		{
			"containerd CRI sandbox",
			map[string]string{LabelPodName: "web-0", LabelPodNamespace: "shop", LabelPodUID: "u-1", "io.cri-containerd.kind": "sandbox"},
			Pod{Name: "web-0", Namespace: "shop", UID: "u-1", Sandbox: true},
		},
		{
			"dockershim sandbox",
			map[string]string{LabelPodName: "p", LabelPodNamespace: "default", LabelPodUID: "u-2", "io.kubernetes.docker.type": "podsandbox"},
			Pod{Name: "p", Namespace: "default", UID: "u-2", Sandbox: true},
		},
		{
			"dockershim container",
			map[string]string{LabelPodName: "p", "io.kubernetes.docker.type": "container"},
			Pod{Name: "p"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodFromLabels(tt.labels); got != tt.want {
				t.Errorf("PodFromLabels() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	web := Info{ID: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", Name: "web"}
	db := Info{ID: "a1ffee0000000000000000000000000000000000000000000000000000000000", Name: "db"}
	cache := Info{ID: "c0ffee0000000000000000000000000000000000000000000000000000000000", Name: "/cache"}
	// A container whose name looks like another container's ID prefix: the
	// name must win.
	tricky := Info{ID: "ddd0000000000000000000000000000000000000000000000000000000000000", Name: "c0ffee"}
	all := []Info{web, db, cache, tricky}

	tests := []struct {
		name      string
		query     string
		cands     []Info
		want      Info
		notFound  bool
		ambiguous []string // expected "name (shortid)" entries
	}{
		{name: "exact name", query: "web", cands: all, want: web},
		{name: "name with leading slash", query: "/web", cands: all, want: web},
		{name: "candidate name with leading slash", query: "cache", cands: all, want: cache},
		{name: "full ID", query: db.ID, cands: all, want: db},
		{name: "unique prefix", query: "a1b", cands: all, want: web},
		{name: "unique prefix upper case", query: "A1B2", cands: all, want: web},
		{name: "short ID", query: db.ShortID(), cands: all, want: db},
		{name: "name beats ID prefix", query: "c0ffee", cands: all, want: tricky},
		{name: "ambiguous prefix", query: "a1", cands: all, ambiguous: []string{"db (a1ffee000000)", "web (a1b2c3d4e5f6)"}},
		{name: "duplicate names", query: "web", cands: []Info{web, {ID: "ff", Name: "web"}}, ambiguous: []string{"web (a1b2c3d4e5f6)", "web (ff)"}},
		{name: "unknown", query: "nope", cands: all, notFound: true},
		{name: "empty query", query: "", cands: all, notFound: true},
		{name: "only slash", query: "/", cands: all, notFound: true},
		{name: "no candidates", query: "web", cands: nil, notFound: true},
		{name: "prefix longer than ID", query: db.ID + "0", cands: all, notFound: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Match(tt.query, tt.cands)
			switch {
			case tt.notFound:
				var nf *NotFoundError
				if !errors.As(err, &nf) {
					t.Fatalf("Match(%q) error = %v, want *NotFoundError", tt.query, err)
				}
				if nf.Query != tt.query || !strings.Contains(err.Error(), "docker ps") || !strings.Contains(err.Error(), `"`+tt.query+`"`) {
					t.Errorf("NotFoundError %q should name the query and suggest docker ps", err)
				}
			case tt.ambiguous != nil:
				var amb *AmbiguousError
				if !errors.As(err, &amb) {
					t.Fatalf("Match(%q) error = %v, want *AmbiguousError", tt.query, err)
				}
				if len(amb.Matches) != len(tt.ambiguous) {
					t.Errorf("got %d matches, want %d", len(amb.Matches), len(tt.ambiguous))
				}
				for _, entry := range tt.ambiguous {
					if !strings.Contains(err.Error(), entry) {
						t.Errorf("AmbiguousError %q does not list %q", err, entry)
					}
				}
			default:
				if err != nil {
					t.Fatalf("Match(%q) unexpected error: %v", tt.query, err)
				}
				if got.ID != tt.want.ID || got.Name != tt.want.Name {
					t.Errorf("Match(%q) = %s/%s, want %s/%s", tt.query, got.Name, got.ShortID(), tt.want.Name, tt.want.ShortID())
				}
			}
		})
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("web", "web", "a1b2", "db", "a1ff")
	f.Add("a1", "web", "a1b2", "db", "a1ff")
	f.Add("/x", "x", "", "/x", "00")
	f.Fuzz(func(t *testing.T, query, name1, id1, name2, id2 string) {
		cands := []Info{{Name: name1, ID: id1}, {Name: name2, ID: id2}}
		got, err := Match(query, cands)
		if err != nil {
			var nf *NotFoundError
			var amb *AmbiguousError
			if !errors.As(err, &nf) && !errors.As(err, &amb) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if amb != nil && len(amb.Matches) < 2 {
				t.Fatalf("ambiguous with %d matches", len(amb.Matches))
			}
			return
		}
		// Property: the result is one of the candidates and is designated by
		// the query as name, full ID, or ID prefix.
		if (got.Name != name1 || got.ID != id1) && (got.Name != name2 || got.ID != id2) {
			t.Fatalf("result %+v is not a candidate", got)
		}
		q := strings.TrimPrefix(query, "/")
		if strings.TrimPrefix(got.Name, "/") != q && got.ID != query &&
			!strings.HasPrefix(strings.ToLower(got.ID), strings.ToLower(query)) {
			t.Fatalf("Match(%q) = %+v, which the query does not designate", query, got)
		}
	})
}

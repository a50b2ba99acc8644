package views

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Authenticate, which the console uses, accepts the API's keys with their
// scopes and answers bad keys as the API does, the failed-auth limit
// included.
func TestAuthenticate(t *testing.T) {
	const scoped = "scoped-test-key-0123456789abcd"
	keys, err := NewKeys(map[string]Scope{testKey: {All: true}, scoped: {Devices: []uint64{7}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Source: newFakeSource(), Keys: keys, Logger: slog.New(slog.DiscardHandler), AuthFailureBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	try := func(key string) (Access, bool, *httptest.ResponseRecorder) {
		r := httptest.NewRequest(http.MethodGet, "/console/api/session", nil)
		r.RemoteAddr = "192.0.2.1:4000"
		if key != "" {
			r.Header.Set("Authorization", "Bearer "+key)
		}
		w := httptest.NewRecorder()
		a, ok := s.Authenticate(w, r)
		return a, ok, w
	}
	if a, ok, w := try(testKey); !ok || !a.All() || !a.Sees(1) || w.Body.Len() != 0 {
		t.Errorf("full key: %v %v %v %q", ok, a.All(), a.Sees(1), w.Body.String())
	}
	if a, ok, _ := try(scoped); !ok || a.All() || !a.Sees(7) || a.Sees(8) {
		t.Errorf("scoped key: %v %v %v %v", ok, a.All(), a.Sees(7), a.Sees(8))
	}
	for i, want := range []int{401, 401, 429} {
		a, ok, w := try("wrong-key-wrong-key-wrong-key")
		if ok || a.All() || a.Sees(7) || w.Code != want {
			t.Errorf("bad key %d: %v %d %s, want %d", i, ok, w.Code, w.Body.String(), want)
		}
		if want == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("bad key %d: no WWW-Authenticate", i)
		}
	}
	// A good key passes from a limited address.
	if _, ok, _ := try(testKey); !ok {
		t.Error("a good key from a limited address is refused")
	}
	var zero Access
	if zero.All() || zero.Sees(1) {
		t.Error("the zero Access sees devices")
	}
}

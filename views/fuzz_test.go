package views

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/watershed-io/watershed/codecs/records"
)

func FuzzParseDeviceID(f *testing.F) {
	for _, s := range []string{"0", "1", "18446744073709551615", "18446744073709551616", "-1", "+1", "1e3", " 1", "0x10", "01", "", "１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseDeviceID(s)
		if err != nil {
			// Every canonical decimal uint64 must parse.
			if u, perr := strconv.ParseUint(s, 10, 64); perr == nil && strconv.FormatUint(u, 10) == s {
				t.Fatalf("ParseDeviceID(%q) rejected a canonical id: %v", s, err)
			}
			return
		}
		if strconv.FormatUint(id, 10) != s {
			t.Fatalf("ParseDeviceID(%q) = %d: not canonical", s, id)
		}
	})
}

// contractCodes are the answers FuzzHandler may see.
var contractCodes = map[int]bool{200: true, 400: true, 401: true, 404: true, 405: true, 429: true, 503: true}

func FuzzHandler(f *testing.F) {
	for _, c := range []struct {
		method, target, auth string
		ready                bool
	}{
		{"GET", "/v1/devices/1001", "Bearer " + testKey, true},
		{"GET", "/v1/devices/18446744073709551615", "Bearer north-key-0123456789abcdef", true},
		{"GET", "/v1/devices/2001", "Bearer north-key-0123456789abcdef", true},
		{"GET", "/v1/devices/1001", "Bearer " + testKey, false},
		{"GET", "/v1/devices/%31", "bearer " + testKey, true},
		{"GET", "/v1/devices/1?x", "Bearer " + testKey, true},
		{"GET", "/v1/devices/", "", true},
		{"POST", "/v1/devices/1", "Basic x", true},
		{"GET", "http://host/v1/devices/1001", "Bearer " + testKey, true},
		{"GET", "*", "", true},
	} {
		f.Add(c.method, c.target, c.auth, c.ready)
	}
	keys := scopedKeys(f)
	f.Fuzz(func(t *testing.T, method, target, auth string, ready bool) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // the server answers 400 before any handler
		}
		hs := newHarness(t, keys, stateV1(), stateV2(), records.DeviceState{DeviceID: 2001, Version: 1})
		if !ready {
			hs.src.setReady(errors.New("catching up"))
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method, r.URL = method, u
		r.Header["Authorization"] = []string{auth}
		w := httptest.NewRecorder()
		hs.h.ServeHTTP(w, r)
		if !contractCodes[w.Code] {
			t.Fatalf("%s %q (auth %q): code %d", method, target, auth, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
		if w.Code == http.StatusOK {
			if method != http.MethodGet {
				t.Fatalf("%s answered 200", method)
			}
			if _, ok := body["device_id"].(string); !ok {
				t.Fatalf("200 without device_id: %s", w.Body)
			}
		} else if e, _ := body["error"].(string); e == "" {
			t.Fatalf("%d without error: %s", w.Code, w.Body)
		}
	})
}

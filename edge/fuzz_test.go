package edge

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs/protocol"
)

// contractCodes are the only answers POST /v1/packages may give.
var contractCodes = map[int]bool{
	http.StatusAccepted:              true,
	http.StatusBadRequest:            true,
	http.StatusUnauthorized:          true,
	http.StatusRequestEntityTooLarge: true,
	http.StatusUnprocessableEntity:   true,
	http.StatusTooManyRequests:       true,
	http.StatusServiceUnavailable:    true,
}

// FuzzHandler feeds arbitrary bodies and Authorization headers to the
// handler, with a producer on an embedded broker started once. With sign
// set, the token is made for the device id at the header's offset, so that
// the fuzzer reaches the checks after authentication. The handler must not
// panic, must answer only the contract's codes with a JSON body, and must
// have given back every budget byte once it answered 2xx or 4xx.
func FuzzHandler(f *testing.F) {
	_, k := startKafka(f)
	e, err := New(Options{
		Kafka: k, RawTopic: testRaw, DeadLetterTopic: testDLQ,
		Secret: testSecret, PreviousSecret: testPrevSecret, EdgeID: testEdgeID,
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	h := e.Handler()

	good := testPackage(f, 1234, true)
	f.Add(good, "", true, false)
	f.Add(good, "", true, true)
	f.Add(good, "Bearer "+Token(testSecret, 1234), false, false)
	f.Add(good, "Bearer "+Token(testPrevSecret, 1234), false, true)
	f.Add(good, "Bearer nope", false, false)
	f.Add(append(bytes.Clone(good), 0), "", true, false)
	f.Add(good[:len(good)-3], "", true, false)
	f.Add(good[:20], "", true, false)
	f.Add(append(tooLargeHeader(9), 1, 2, 3), "", true, false)
	f.Add(protocol.AssemblePackage(nil, protocol.Header{Version: 1, Flags: 0xfe, DeviceID: 5, MessageCount: 1}, testRecord(f)), "", true, false)
	f.Add(protocol.AssemblePackage(nil, protocol.Header{Version: 2, DeviceID: 0, MessageCount: 0}, nil), "", true, false)
	f.Add([]byte("WS"), "Bearer x", false, false)
	f.Add([]byte{}, "", false, false)

	f.Fuzz(func(t *testing.T, body []byte, auth string, sign, chunked bool) {
		if sign && len(body) >= 12 {
			auth = "Bearer " + Token(testSecret, binary.BigEndian.Uint64(body[4:12]))
		}
		var rd io.Reader = bytes.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // hides the length: ContentLength -1
		}
		req := httptest.NewRequest(http.MethodPost, Path, rd)
		if chunked {
			req.ContentLength = -1
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !contractCodes[rec.Code] {
			t.Fatalf("answered %d %q", rec.Code, rec.Body.String())
		}
		var resp struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer %d with body %q: %v", rec.Code, rec.Body.String(), err)
		}
		if (rec.Code == http.StatusAccepted) != (resp.Status == "accepted") || (resp.Error == "") == (rec.Code != http.StatusAccepted) {
			t.Fatalf("answer %d with body %q", rec.Code, rec.Body.String())
		}
		if (rec.Code == http.StatusTooManyRequests || rec.Code == http.StatusServiceUnavailable) && rec.Header().Get("Retry-After") == "" {
			t.Fatalf("answer %d without Retry-After", rec.Code)
		}
		if rec.Code != http.StatusServiceUnavailable {
			// Every record of a 202 or 422 was answered by Kafka before
			// the response; nothing else holds bytes after answering.
			if n := e.budget.inUse(); n != 0 && rec.Code != http.StatusTooManyRequests {
				t.Fatalf("answer %d leaves %d budget bytes held", rec.Code, n)
			}
		}
		if len(body) > MaxPackageBytes && rec.Code != http.StatusRequestEntityTooLarge && rec.Code != http.StatusUnauthorized {
			t.Fatalf("body of %d bytes answered %d", len(body), rec.Code)
		}
	})
}

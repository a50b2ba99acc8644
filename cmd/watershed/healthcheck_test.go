package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	var errb bytes.Buffer
	if code := runHealthcheck(context.Background(), []string{srv.URL}, nil, nil, &errb); code != 1 {
		t.Errorf("not ready: exit %d", code)
	}
	ready = true
	if code := runHealthcheck(context.Background(), []string{srv.URL}, nil, nil, &errb); code != 0 {
		t.Errorf("ready: exit %d: %s", code, errb.String())
	}
	if code := runHealthcheck(context.Background(), nil, nil, nil, &errb); code != 2 {
		t.Errorf("no URL: exit %d", code)
	}
	if code := runHealthcheck(context.Background(), []string{"http://127.0.0.1:1/"}, nil, nil, &errb); code != 1 {
		t.Errorf("refused: exit %d", code)
	}
}

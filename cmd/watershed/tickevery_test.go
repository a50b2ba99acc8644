package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// --tick-every is taken by the commands that run groups and refused out of
// its bounds before anything starts; in them it is accepted.
func TestTickEveryFlag(t *testing.T) {
	for _, cmd := range []string{"run", "demo"} {
		for _, v := range []string{"0s", "-1s", "1ms", "2h", "forever"} {
			var out, errb bytes.Buffer
			args := []string{cmd, "--tick-every", v, "--table-storage", "memory"}
			if cmd == "run" {
				args = append(args, "--brokers", "127.0.0.1:1")
			}
			code := dispatch(context.Background(), args, strings.NewReader(""), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), "tick-every") {
				t.Errorf("%s --tick-every %s: exit %d, stderr %q; want 2 naming --tick-every", cmd, v, code, errb.String())
			}
		}
		for _, v := range []string{"10ms", "250ms", "1h"} {
			// A valid value passes the check: the next flag's error is reported.
			var out, errb bytes.Buffer
			args := []string{cmd, "--tick-every", v, "--table-storage", "memory"}
			if cmd == "run" {
				args = append(args, "--brokers", "127.0.0.1:1")
			}
			code := dispatch(context.Background(), args, strings.NewReader(""), &out, &errb)
			if code != 2 || strings.Contains(errb.String(), "tick-every") || !strings.Contains(errb.String(), `"memory"`) {
				t.Errorf("%s --tick-every %s: exit %d, stderr %q; want only --table-storage refused", cmd, v, code, errb.String())
			}
		}
	}
	if err := checkTickEvery(time.Second); err != nil {
		t.Errorf("the default refused: %v", err)
	}
}
